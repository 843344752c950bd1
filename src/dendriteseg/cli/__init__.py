"""``dendriteseg`` command line: each command parses, calls one library function, prints.

Every user error ends as one line ``error: <file>: <problem>`` on stderr and exit code 2.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer import Argument as Arg
from typer import Option as Opt

from dendriteseg import __version__
from dendriteseg.cli.common import _int_list, _progress, _say, _table, app, command, out_console, synth_app
from dendriteseg.errors import on_sigterm, parse_key_values


def _version(value: bool) -> None:
    if value:
        _say(f"dendriteseg {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    verbose: bool = Opt(False, "--verbose", "-v", help="Log progress details."),
    version: bool = Opt(False, "--version", is_eager=True, help="Show the version.", callback=_version),
) -> None:
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)


@command()
def evaluate(
    pred: str = Arg(..., help="Predicted labels (0/1), any supported format."),
    gt: str = Arg(..., help="True labels (0/1) of the same shape."),
    json_path: Path | None = Opt(None, "--json", help="Write all scores as JSON."),
    tolerance: float = Opt(4.0, help="BF1 tolerance in pixels (strict <)."),
    per_slice: Path | None = Opt(None, "--per-slice", help="Write per-slice CSV."),
    mode: str = Opt("2d", help="2d: per z-slice then mean (paper); 3d: volume."),
    spacing: tuple[float, float, float] | None = Opt(
        None, help="Voxel size Z Y X for --mode 3d (default: the GT file's, else 1)."
    ),
) -> None:
    """Score a segmentation: accuracy, IoU, boundary F1 and boundary displacement error."""
    from dendriteseg.evaluation import evaluate as run
    from dendriteseg.evaluation import format_table, write_json, write_per_slice_csv
    from dendriteseg.io.outputs import check_distinct

    check_distinct([pred, gt], {"--json": json_path, "--per-slice": per_slice})
    result = run(pred, gt, tolerance=tolerance, mode=mode, spacing=spacing)
    _table(f"{pred} vs {gt}", ("metric", "value"), format_table(result))
    if json_path:
        write_json(result, json_path, pred=str(pred), gt=str(gt))
    if per_slice:
        write_per_slice_csv(result, per_slice)


@command()
def overlay(
    image: str = Arg(..., help="CT image volume."),
    pred: str = Arg(..., help="Predicted labels (0/1)."),
    gt: str | None = Arg(None, help="True labels (0/1), optional."),
    out: Path = Opt(Path("overlays"), "--out", "-o", help="Folder for the PNG files."),
    z: str | None = Opt(None, help="z-slices, e.g. 10,50,90 (default: 3 evenly spaced)."),
    y: str | None = Opt(None, help="y rows for x-z sections (default: the middle)."),
    window: tuple[float, float] | None = Opt(None, help="Grey window LOW HIGH (default: percentiles)."),
) -> None:
    """Draw PNG overlays: TP white, TN black, FP green, FN pink (or the outline without GT)."""
    from dendriteseg.io.outputs import check_distinct
    from dendriteseg.report import write_overlay_files

    check_distinct([image, pred, gt], {"-o": out})
    written = write_overlay_files(
        image, pred, gt, out, z=_int_list(z, "z"), y=_int_list(y, "y"), window=window
    )
    _say("\n".join(str(path) for path in written))


@command()
def baseline(
    method: str = Arg(..., help="otsu, kmeans, emmpm or forest."),
    input: str = Arg(..., help="CT image volume."),
    output: str = Opt(..., "--out", "-o", help="Where to write the 0/1 labels."),
    train_image: str | None = Opt(None, help="forest: labelled training image."),
    train_label: str | None = Opt(None, help="forest: its labels (0/1)."),
    seed: int = Opt(0, help="Random seed (kmeans, emmpm, forest)."),
    option: list[str] | None = Opt(None, "--option", help="Method option KEY=VALUE, repeatable."),
) -> None:
    """Segment with a classical method (the paper's Figure 1 comparison)."""
    from rich.progress import TextColumn

    from dendriteseg.baselines import segment_with_baseline
    from dendriteseg.io import parse_location
    from dendriteseg.io.outputs import check_distinct

    parse_location(output, for_writing=True)  # fail on a bad suffix before any work
    check_distinct([input, train_image, train_label], {"-o": output})
    options = parse_key_values(option)
    with _progress(TextColumn("{task.description}")) as bar:
        task = bar.add_task(method, total=None, rate="")
        segment_with_baseline(
            method,
            input,
            output,
            train_image=train_image,
            train_label=train_label,
            rng=seed,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            **options,
        )
    _say(f"wrote {output}")


@command()
def info(path: str = Arg(..., help="A volume in any supported format.")) -> None:
    """Print a volume's shape, type and voxel size without reading its voxels."""
    from dendriteseg.io import read_metadata

    out_console.print_json(json.dumps(read_metadata(path)))


@command()
def convert(
    source: str = Arg(..., help="Input volume."),
    target: str = Arg(..., help="Output volume; the format follows the suffix."),
    compression: str | None = Opt(None, help="zlib or zstd."),
    slab: int = Opt(16, help="Slices per read/write."),
) -> None:
    """Convert between TIFF, TIFF folders, Zarr, HDF5 and .npy, slab by slab."""
    from dendriteseg.io import convert_volume

    convert_volume(source, target, compression=compression, slab=slab)
    _say(f"wrote {target}")


@command()
def demo(
    out: Path = Arg(Path("demo_out"), help="Folder for the demo's outputs."),
    seed: int = Opt(0, help="Random seed."),
) -> None:
    """Run the built-in demo on a synthetic scan: segment, evaluate, draw overlays."""
    from dendriteseg.demo import run_demo

    run_demo(out, seed=seed, on_step=lambda m: _say(f"- {m}", err=True))
    _say((out / "metrics.md").read_text() + f"\noutputs in {out}/")


SeedOpt = Annotated[int, Opt(help="Random seed (same seed, same data).")]
FormatOpt = Annotated[str, Opt("--format", help="tif, zarr, h5 or npy.")]
PresetOpt = Annotated[str, Opt(help="easy, moderate, realistic (moderate in a container) or hard.")]


@command(synth_app, "volume")
def synth_volume(
    out_dir: Path = Arg(..., help="Folder for image, label and meta.json."),
    preset: PresetOpt = "realistic",
    seed: SeedOpt = 0,
    shape: tuple[int, int, int] = Opt((64, 192, 192), help="Z Y X (Y = X)."),
    structure: str = Opt("procedural", help="procedural (fast) or phasefield."),
    fmt: FormatOpt = "tif",
    phase: bool = Opt(False, "--phase", help="Also write the soft phase field."),
) -> None:
    """Write one synthetic scan: OUT_DIR/image.tif, label.tif, meta.json."""
    from dendriteseg.synth.dataset import write_synthetic_scan

    meta = write_synthetic_scan(
        out_dir, shape, preset=preset, structure=structure, seed=seed, fmt=fmt, phase=phase
    )
    _say(f"wrote {out_dir}/ (dendrite fraction {meta['dendrite_fraction']:.3f}, CNR {meta['cnr']:.2f})")


@command(synth_app, "series")
def synth_series(
    out_dir: Path = Arg(..., help="Folder for t000/, t001/, ... and series.json."),
    scans: int = Opt(5, help="Number of scans in time."),
    preset: PresetOpt = "realistic",
    seed: SeedOpt = 0,
    shape: tuple[int, int, int] = Opt((32, 128, 128), help="Z Y X of each scan."),
    fmt: FormatOpt = "tif",
) -> None:
    """Write a 4D growth series (a phase-field dendrite scanned repeatedly)."""
    from dendriteseg.synth.dataset import write_series

    for row in write_series(out_dir, scans=scans, shape=shape, preset=preset, seed=seed, fmt=fmt):
        _say(f"{row['folder']}: dendrite fraction {row['dendrite_fraction']:.3f}")


@command(synth_app, "dataset")
def synth_dataset(
    out_dir: Path = Arg(..., help="Folder for the scans and manifest.json."),
    preset: str = Opt("small", help="tiny (seconds), small, or paper (large)."),
    seed: SeedOpt = 0,
    variety: str = Opt(
        "standard",
        help="standard (the benchmark), wide (air, sizes, noise), real (+ real-scan artefacts) or field"
        " (+ faint dendrites, skins, grainy bands, correlated noise, little to find).",
    ),
    holder: float = Opt(0.0, help="Share of scans with a holder tube around the sample (0 to 1)."),
    generator: str = Opt("ct", help="ct (projections, reconstruction) or image (image scans)."),
    min_visible: float = Opt(
        0.0, help="Raise the contrast of scans whose dendrites show less than this against the melt (0: off)."
    ),
    label_bias: int = Opt(
        0,
        help="Pixels every noisy label's boundary moves before its random errors: > 0 grows the "
        "dendrite, < 0 shrinks it (a consistently biased segmentation; 0: off).",
    ),
) -> None:
    """Write a paper-like dataset: noisy-label scans (70/20/10) and 14 exact groups of 8 slices."""
    from dendriteseg.synth.dataset import build_dataset
    from dendriteseg.synth.label_noise import LabelNoise

    on_entry = lambda name, done, total: _say(f"- {name} ({done}/{total})", err=True)  # noqa: E731
    options = {"preset": preset, "seed": seed, "variety": variety, "holder": holder, "generator": generator}
    options.update(min_visible=min_visible, noise=LabelNoise(bias=label_bias))
    _say(f"wrote {build_dataset(out_dir, on_entry=on_entry, **options)}")


def main() -> None:
    """Console-script entry point (SIGTERM, as batch schedulers send it, is handled like Ctrl-C)."""
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - during typer's own parsing
        sys.exit(130)


from dendriteseg.cli import morphology as _morphology  # noqa: E402,F401 - registers mesh and analyze
from dendriteseg.cli import segment as _segment  # noqa: E402,F401 - registers segment and models
from dendriteseg.cli import tune as _tune  # noqa: E402,F401 - registers finetune and hpo
