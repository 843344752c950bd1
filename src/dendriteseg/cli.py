"""``dendriteseg`` command line: parse, call one library function, print.

Every user error ends as one line ``error: <file>: <problem>`` on stderr
and exit code 2; nothing here holds logic that notebooks could not reach
through the Python API.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from dendriteseg import __version__
from dendriteseg.errors import DendritesegError

app = typer.Typer(
    name="dendriteseg",
    help="Segment dendrites in 3D/4D x-ray CT, train the networks, score the results.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out_console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def friendly_errors(func: F) -> F:
    """Turn library and OS errors into one line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except DendritesegError as exc:
            _fail(str(exc))
        except KeyError as exc:
            _fail(str(exc.args[0]) if exc.args else "unknown key")
        except (OSError, ValueError) as exc:
            name = getattr(exc, "filename", None)
            reason = getattr(exc, "strerror", None) or str(exc)
            _fail(f"{name}: {reason}" if name else reason)
        except MemoryError:
            _fail("out of memory; use a lazy format (Zarr, HDF5, TIFF) and smaller slabs")
        except KeyboardInterrupt:
            _fail("interrupted; no partial output was left", code=130)
        except Exception as exc:  # noqa: BLE001 - last resort: one line, not a traceback
            if os.environ.get("DENDRITESEG_DEBUG"):
                raise
            _fail(
                f"internal error ({type(exc).__name__}: {exc}); set DENDRITESEG_DEBUG=1 for a traceback",
                code=1,
            )

    return wrapper  # type: ignore[return-value]


def _int_list(text: str | None, name: str) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        _fail(f"--{name}: expected integers separated by commas, got {text!r}")
    return None


def _version(value: bool) -> None:
    if value:
        out_console.print(f"dendriteseg {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


@app.command()
@friendly_errors
def evaluate(
    pred: Annotated[str, typer.Argument(help="Predicted labels (0/1), any supported format.")],
    gt: Annotated[str, typer.Argument(help="True labels (0/1) of the same shape.")],
    json_path: Annotated[Path | None, typer.Option("--json", help="Write all scores as JSON.")] = None,
    tolerance: Annotated[float, typer.Option(help="BF1 tolerance in pixels (strict <).")] = 4.0,
    per_slice: Annotated[Path | None, typer.Option("--per-slice", help="Write per-slice CSV.")] = None,
    mode: Annotated[str, typer.Option(help="2d: per z-slice then mean (paper); 3d: volume.")] = "2d",
    spacing: Annotated[
        tuple[float, float, float] | None,
        typer.Option(help="Voxel size Z Y X for --mode 3d (default: the GT file's, else 1)."),
    ] = None,
) -> None:
    """Score a segmentation: accuracy, IoU, boundary F1 and boundary displacement error."""
    from dendriteseg.evaluation import evaluate as run
    from dendriteseg.evaluation import format_table, write_json, write_per_slice_csv

    result = run(pred, gt, tolerance=tolerance, mode=mode, spacing=spacing)
    table = Table(title=f"{pred} vs {gt}", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in format_table(result):
        table.add_row(name, value)
    out_console.print(table)
    if json_path:
        write_json(result, json_path, pred=str(pred), gt=str(gt))
    if per_slice:
        if mode != "2d":
            _fail("--per-slice needs --mode 2d")
        write_per_slice_csv(result, per_slice)


@app.command()
@friendly_errors
def overlay(
    image: Annotated[str, typer.Argument(help="CT image volume.")],
    pred: Annotated[str, typer.Argument(help="Predicted labels (0/1).")],
    gt: Annotated[str | None, typer.Argument(help="True labels (0/1), optional.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the PNG files.")] = Path("overlays"),
    z: Annotated[str | None, typer.Option(help="z-slices, e.g. 10,50,90 (default: 3 evenly spaced).")] = None,
    y: Annotated[str | None, typer.Option(help="y rows for x-z sections (default: the middle).")] = None,
    window: Annotated[
        tuple[float, float] | None, typer.Option(help="Grey window LOW HIGH (default: percentiles).")
    ] = None,
) -> None:
    """Draw PNG overlays: TP white, TN black, FP green, FN pink (or the outline without GT)."""
    from dendriteseg.io import open_volume
    from dendriteseg.report import write_overlays

    with open_volume(image) as img, open_volume(pred) as prd:
        gtv = open_volume(gt) if gt else None
        try:
            written = write_overlays(
                img,
                prd,
                gtv,
                out,
                z=_int_list(z, "z"),
                y=_int_list(y, "y"),
                window=window,
                voxel_size=img.voxel_size,
                names=(image, pred, gt or "gt"),
            )
        finally:
            if gtv is not None:
                gtv.close()
    for path in written:
        out_console.print(str(path), markup=False, highlight=False)


def _parse_options(pairs: list[str] | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _fail(f"--option: expected KEY=VALUE, got {pair!r}")
        try:
            options[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = value
    return options


@app.command()
@friendly_errors
def baseline(
    method: Annotated[str, typer.Argument(help="otsu, kmeans, emmpm or forest.")],
    input: Annotated[str, typer.Argument(help="CT image volume.")],
    output: Annotated[str, typer.Option("--out", "-o", help="Where to write the 0/1 labels.")],
    train_image: Annotated[str | None, typer.Option(help="forest: labelled training image.")] = None,
    train_label: Annotated[str | None, typer.Option(help="forest: its labels (0/1).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (kmeans, emmpm, forest).")] = 0,
    option: Annotated[
        list[str] | None, typer.Option("--option", help="Method option KEY=VALUE, repeatable.")
    ] = None,
) -> None:
    """Segment with a classical method (the paper's Figure 1 comparison)."""
    from rich.progress import Progress

    from dendriteseg.baselines import segment_with_baseline
    from dendriteseg.io import parse_location

    parse_location(output, for_writing=True)  # fail on a bad suffix before any work
    options = _parse_options(option)
    if not err_console.is_terminal:
        segment_with_baseline(
            method, input, output, train_image=train_image, train_label=train_label, rng=seed, **options
        )
    else:
        with Progress(console=err_console, transient=True) as bar:
            task = bar.add_task(f"{method}", total=None)
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
    out_console.print(f"wrote {output}", markup=False, highlight=False)


@app.command()
@friendly_errors
def info(path: Annotated[str, typer.Argument(help="A volume in any supported format.")]) -> None:
    """Print a volume's shape, type and voxel size without reading its voxels."""
    from dendriteseg.io import read_metadata

    meta = read_metadata(path)
    out_console.print_json(json.dumps(meta))


@app.command()
@friendly_errors
def convert(
    source: Annotated[str, typer.Argument(help="Input volume.")],
    target: Annotated[str, typer.Argument(help="Output volume; the format follows the suffix.")],
    compression: Annotated[str | None, typer.Option(help="zlib or zstd.")] = None,
    slab: Annotated[int, typer.Option(help="Slices per read/write.")] = 16,
) -> None:
    """Convert between TIFF, TIFF folders, Zarr, HDF5 and .npy, slab by slab."""
    from dendriteseg.io import VolumeWriter, open_volume

    with open_volume(source) as vol:
        if vol.ndim != 3:
            _fail(f"{source}: convert needs a (z, y, x) volume, got shape {vol.shape}")
        with VolumeWriter(
            target, vol.shape, vol.dtype, voxel_size=vol.voxel_size, compression=compression
        ) as out:
            for z0, _, data in vol.iter_slabs(slab):
                out.write(data, z0)
    out_console.print(f"wrote {target}", markup=False, highlight=False)


@app.command()
@friendly_errors
def demo(
    out: Annotated[Path, typer.Argument(help="Folder for the demo's outputs.")] = Path("demo_out"),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Run the built-in demo on a synthetic scan: segment, evaluate, draw overlays."""
    from dendriteseg.demo import run_demo

    run_demo(out, seed=seed, on_step=lambda m: err_console.print(f"- {m}", markup=False))
    out_console.print((out / "metrics.md").read_text(), markup=False, highlight=False)
    out_console.print(f"outputs in {out}/", markup=False, highlight=False)


def _run_training(config_path: Path | None, overrides: list[str] | None, parent: Path | None) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from dendriteseg.train import load_config, save_config, train

    config = load_config(config_path, overrides or [])
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.yaml")
    columns = (
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, disable=not err_console.is_terminal) as bar:
        task = bar.add_task("train", total=config.steps_per_epoch, epoch=1, rate="")

        def on_step(step: int, total: int, rate: float) -> None:
            bar.update(task, completed=step, rate=f"{rate:.1f} patches/s")

        def on_epoch(epoch: int, record: dict) -> None:
            v = record["val"]
            err_console.print(
                f"epoch {epoch}: loss {record['train_loss']:.4f}, val IoU {v['iou']:.4f}, "
                f"BF1 {v['bf1']:.4f}, BDE {v['bde']:.3f}{' (best)' if record.get('best') else ''}",
                markup=False,
                highlight=False,
            )
            bar.update(task, completed=0, epoch=epoch + 1)

        best = train(config, parent=parent, on_step=on_step, on_epoch=on_epoch)
    out_console.print(f"best model: {best}", markup=False, highlight=False)


@app.command("train")
@friendly_errors
def train_command(
    config: Annotated[Path | None, typer.Argument(help="YAML config (defaults if omitted).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override KEY=VALUE (dotted keys).")] = None,
) -> None:
    """Train a model on a dataset manifest (resumes if the run folder has a state)."""
    _run_training(config, set_, None)


@app.command()
@friendly_errors
def finetune(
    config: Annotated[Path | None, typer.Argument(help="YAML config (defaults if omitted).")] = None,
    parent: Annotated[Path | None, typer.Option("--from", help="Model file to start from (needed).")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override KEY=VALUE (dotted keys).")] = None,
) -> None:
    """Fine-tune a trained model on the exact labels (train_quality=exact by default)."""
    if parent is None:
        _fail("finetune needs --from MODEL.safetensors")
    _run_training(config, ["train_quality=exact", *(set_ or [])], parent)


def _segment_progress(bar: Any, task: Any) -> Callable[[int, int], None]:
    import time

    state = {"start": time.perf_counter(), "base": 0}

    def update(done: int, total: int) -> None:
        if done < state["base"]:  # a new volume started
            state.update(start=time.perf_counter(), base=0)
        state["base"] = done
        rate = done / max(time.perf_counter() - state["start"], 1e-9)
        bar.update(task, completed=done, total=total, rate=f"{rate / 1e6:.2f} Mvox/s")

    return update


@app.command()
@friendly_errors
def segment(
    inputs: Annotated[
        list[str],
        typer.Argument(help="Volume(s): file, folder of TIFF slices, file.h5:/dataset; globs allowed."),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--out", "-o", help="Output volume; with several inputs (or a folder ending in /) a folder."
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            help="Model file (.safetensors) or shipped name; A+B averages several models "
            "(e.g. unet3d_default+unet2d_default); default: shipped model."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16.")] = "auto",
    tile: Annotated[
        str | None,
        typer.Option(
            help="Tile size Y,X or Z,Y,X (default: see docs; a 3D model keeps Z at its training depth)."
        ),
    ] = None,
    overlap: Annotated[float, typer.Option(help="In-plane overlap of tiles, fraction of a tile.")] = 0.25,
    overlap_z: Annotated[float | None, typer.Option(help="Overlap of tiles along z (default 0).")] = None,
    batch_size: Annotated[int, typer.Option(help="Tiles per network call.")] = 1,
    tta: Annotated[bool, typer.Option(help="Average over four in-plane flips (4x slower).")] = False,
    compile: Annotated[
        str, typer.Option(help="torch.compile the network: auto (CPU, volumes >= 64 M voxels), on, off.")
    ] = "auto",
    probabilities: Annotated[
        str | None,
        typer.Option(help="Also write float16 probabilities here (a folder, with several inputs)."),
    ] = None,
    format: Annotated[
        str, typer.Option(help="Output format for several inputs: tif, zarr, h5, npy.")
    ] = "tif",
    summary: Annotated[str, typer.Option(help="Summary CSV name inside the output folder.")] = "summary.csv",
    dask: Annotated[
        str | None, typer.Option(help="Run on Dask: a scheduler address or local:N (output must be .zarr).")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="Torch threads (per Dask worker with --dask).")] = None,
) -> None:
    """Segment whole volumes with a network: tiled, blended, streamed to disk with bounded memory."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from dendriteseg.infer import segment as run_segment
    from dendriteseg.infer import segment_series
    from dendriteseg.infer.series import expand_inputs
    from dendriteseg.io import parse_location

    if batch_size < 1:
        _fail(f"--batch-size: must be >= 1, got {batch_size}")
    if not 0 <= overlap < 1 or (overlap_z is not None and not 0 <= overlap_z < 1):
        _fail("--overlap: must be in [0, 1)")
    if threads:
        import torch

        torch.set_num_threads(threads)
    tile_size = _int_list(tile, "tile")
    compile_modes = {"auto": "auto", "on": True, "off": False}
    if compile not in compile_modes:
        _fail(f"--compile: expected auto, on or off, got {compile!r}")
    options: dict[str, Any] = {
        "tile": tuple(tile_size) if tile_size else None,
        "overlap": overlap,
        "overlap_z": overlap_z,
        "batch_size": batch_size,
    }
    predictor_options = {"device": device, "precision": precision, "tta": tta}
    expanded = expand_inputs(inputs)
    as_folder = output.endswith(("/", os.sep)) or (
        Path(output).is_dir() and parse_location(output, for_writing=True).format == "tiff-dir"
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    if len(expanded) > 1 or as_folder or any(s != e for s, e in zip(inputs, expanded, strict=False)):
        if dask:
            _fail("--dask takes one input volume at a time")
        with Progress(*columns, console=err_console, disable=not err_console.is_terminal) as bar:
            volumes = bar.add_task("volumes", total=len(expanded), rate="")
            voxels = bar.add_task("voxels", total=None, rate="")

            def on_volume(index: int, count: int, spec: str, status: str) -> None:
                bar.update(volumes, completed=index, description=f"volume {index + 1}/{count}")
                if status == "skipped":
                    err_console.print(f"skip {spec} (already done)", markup=False, highlight=False)

            rows = segment_series(
                expanded,
                output,
                model,
                fmt=format,
                probabilities=probabilities,
                summary=summary,
                on_volume=on_volume,
                progress=_segment_progress(bar, voxels),
                compile=compile_modes[compile],
                **predictor_options,
                **options,
            )
            bar.update(volumes, completed=len(expanded))
        done = sum(r["status"] == "done" for r in rows)
        out_console.print(
            f"{done} segmented, {len(rows) - done} already done; summary {Path(output) / summary}",
            markup=False,
            highlight=False,
        )
        return
    parse_location(output, for_writing=True)  # fail on a bad suffix before any work
    if probabilities:
        parse_location(probabilities, for_writing=True)
    with Progress(*columns, console=err_console, disable=not err_console.is_terminal) as bar:
        task = bar.add_task("segment", total=None, rate="")
        if dask:
            from dendriteseg.infer.distributed import segment_dask

            if probabilities:
                _fail("--probabilities is not available with --dask")
            result = segment_dask(
                expanded[0],
                output,
                model,
                scheduler=dask,
                threads=threads,
                progress=_segment_progress(bar, task),
                **predictor_options,
                **options,
            )
        else:
            result = run_segment(
                expanded[0],
                model,
                output=output,
                probabilities=probabilities,
                compile=compile_modes[compile],
                progress=_segment_progress(bar, task),
                **predictor_options,
                **options,
            )
    shape = "x".join(str(s) for s in result.shape)
    out_console.print(
        f"wrote {output}: {shape}, dendrite {100 * result.dendrite_fraction:.2f} %, "
        f"grey window {result.window[0]:.4g} to {result.window[1]:.4g}, "
        f"{result.seconds:.1f} s ({result.voxels_per_second / 1e6:.2f} Mvoxels/s)",
        markup=False,
        highlight=False,
    )


@app.command()
@friendly_errors
def models(
    files: Annotated[list[Path] | None, typer.Argument(help="Model files to describe.")] = None,
) -> None:
    """List the built-in architectures, the shipped models (with their test scores) and model files."""
    from dendriteseg.infer.predictor import DEFAULT_MODEL, WEIGHTS
    from dendriteseg.models import MODELS, build_model, count_parameters
    from dendriteseg.models.files import read_model_info

    table = Table(title="architectures (default arguments)")
    table.add_column("name")
    table.add_column("parameters", justify="right")
    for name in MODELS:
        table.add_row(name, f"{count_parameters(build_model(name)):,}")
    out_console.print(table)
    shipped = Table(
        title="shipped models (--model NAME)",
        caption="* used when no --model is given; scores: exact test groups of the synthetic benchmark",
    )
    for column in ("name", "parameters", "MB", "IoU", "BF1", "BDE px"):
        shipped.add_column(column, justify="left" if column == "name" else "right")
    for path in sorted(WEIGHTS.glob("*.safetensors")):
        info = read_model_info(path)
        scores = info.provenance.get("test_scores", {})
        params = count_parameters(build_model(info.architecture, **info.arguments))
        shipped.add_row(
            path.stem + (" *" if path.stem == DEFAULT_MODEL else ""),
            f"{params:,}",
            f"{path.stat().st_size / 1e6:.1f}",
            *(f"{scores[k]:.3f}" if k in scores else "-" for k in ("iou", "bf1", "bde")),
        )
    out_console.print(shipped)
    for path in files or []:
        info = read_model_info(path)
        history = info.provenance.get("history") or [{}]
        last = history[-1].get("val", {})
        out_console.print(
            f"{path}: {info.architecture} {info.arguments}, trained on "
            f"{info.provenance.get('train_quality', '?')} labels of {info.provenance.get('data', '?')}, "
            f"{len(history)} epochs, last val IoU {last.get('iou', float('nan')):.4f}",
            markup=False,
            highlight=False,
        )


synth_app = typer.Typer(
    help="Make synthetic XCT scans with exact labels, series and datasets.", no_args_is_help=True
)
app.add_typer(synth_app, name="synth")


@synth_app.command("volume")
@friendly_errors
def synth_volume(
    out_dir: Annotated[Path, typer.Argument(help="Folder for image, label and meta.json.")],
    preset: Annotated[str, typer.Option(help="easy, realistic or hard.")] = "realistic",
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same scan).")] = 0,
    shape: Annotated[tuple[int, int, int], typer.Option(help="Z Y X (Y = X).")] = (64, 192, 192),
    structure: Annotated[str, typer.Option(help="procedural (fast) or phasefield.")] = "procedural",
    fmt: Annotated[str, typer.Option("--format", help="tif, zarr, h5 or npy.")] = "tif",
    phase: Annotated[bool, typer.Option("--phase", help="Also write the soft phase field.")] = False,
) -> None:
    """Write one synthetic scan: OUT_DIR/image.tif, label.tif, meta.json."""
    from dendriteseg.synth.dataset import write_scan
    from dendriteseg.synth.scan import make_scan

    scan = make_scan(shape, preset=preset, structure=structure, rng=seed)
    write_scan(out_dir, scan, fmt=fmt, with_phase=phase)
    meta = scan["meta"]
    out_console.print(
        f"wrote {out_dir}/ (dendrite fraction {meta['dendrite_fraction']:.3f}, CNR {meta['cnr']:.2f})",
        markup=False,
        highlight=False,
    )


@synth_app.command("series")
@friendly_errors
def synth_series(
    out_dir: Annotated[Path, typer.Argument(help="Folder for t000/, t001/, ... and series.json.")],
    scans: Annotated[int, typer.Option(help="Number of scans in time.")] = 5,
    preset: Annotated[str, typer.Option(help="easy, realistic or hard.")] = "realistic",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    shape: Annotated[tuple[int, int, int], typer.Option(help="Z Y X of each scan.")] = (32, 128, 128),
    fmt: Annotated[str, typer.Option("--format", help="tif, zarr, h5 or npy.")] = "tif",
) -> None:
    """Write a 4D growth series (a phase-field dendrite scanned repeatedly)."""
    from dendriteseg.io import write_text_atomic
    from dendriteseg.synth.dataset import write_scan
    from dendriteseg.synth.scan import make_series

    if not out_dir.parent.is_dir():
        _fail(f"{out_dir}: folder {out_dir.parent} does not exist")
    series = make_series(shape, n_scans=scans, preset=preset, rng=seed)
    out_dir.mkdir(exist_ok=True)
    rows = []
    for t, scan in enumerate(series):
        write_scan(out_dir / f"t{t:03d}", scan, fmt=fmt)
        rows.append(
            {"time_index": t, "folder": f"t{t:03d}", "dendrite_fraction": scan["meta"]["dendrite_fraction"]}
        )
    write_text_atomic(out_dir / "series.json", json.dumps(rows, indent=2) + "\n")
    for row in rows:
        out_console.print(
            f"{row['folder']}: dendrite fraction {row['dendrite_fraction']:.3f}",
            markup=False,
            highlight=False,
        )


@synth_app.command("dataset")
@friendly_errors
def synth_dataset(
    out_dir: Annotated[Path, typer.Argument(help="Folder for the scans and manifest.json.")],
    preset: Annotated[str, typer.Option(help="tiny (seconds), small, or paper (large).")] = "small",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    variety: Annotated[
        str, typer.Option(help="standard (the benchmark) or wide (more air, sizes, noise: for training).")
    ] = "standard",
    holder: Annotated[
        float, typer.Option(help="Share of scans with a holder tube around the sample (0 to 1).")
    ] = 0.0,
    generator: Annotated[
        str, typer.Option(help="ct (projections and reconstruction) or image (painted in the image domain).")
    ] = "ct",
) -> None:
    """Write a paper-like dataset: noisy-label scans (70/20/10) and 14 exact groups of 8 slices."""
    from dendriteseg.synth.dataset import build_dataset

    path = build_dataset(
        out_dir,
        preset=preset,
        seed=seed,
        variety=variety,
        holder=holder,
        generator=generator,
        on_entry=lambda name, done, total: err_console.print(
            f"- {name} ({done}/{total})", markup=False, highlight=False
        ),
    )
    out_console.print(f"wrote {path}", markup=False, highlight=False)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - during typer's own parsing
        sys.exit(130)


if __name__ == "__main__":
    main()
