"""``dendriteseg segment`` (whole volumes, series, Dask) and ``dendriteseg models``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from typer import Argument as Arg
from typer import Option as Opt

from dendriteseg.cli.common import _fail, _int_list, _progress, _say, _table, command


def _segment_progress(bar: Any, task: Any) -> Callable[[int, int], None]:
    state = {"start": time.perf_counter(), "base": 0}

    def update(done: int, total: int) -> None:
        if done < state["base"]:  # a new volume started
            state.update(start=time.perf_counter(), base=0)
        state["base"] = done
        rate = done / max(time.perf_counter() - state["start"], 1e-9)
        bar.update(task, completed=done, total=total, rate=f"{rate / 1e6:.2f} Mvox/s")

    return update


@command()
def segment(
    inputs: list[str] = Arg(..., help="Volumes: files, TIFF folders, file.h5:/dataset; globs allowed."),
    output: str = Opt(..., "--out", "-o", help="Output volume; a folder for several inputs."),
    model: str | None = Opt(None, help="Model file or shipped name; A+B averages models."),
    device: str = Opt("auto", help="auto, cpu, cuda or cuda:N."),
    precision: str = Opt("auto", help="auto, fp32, bf16 or fp16."),
    tile: str | None = Opt(None, help="Tile size Y,X or Z,Y,X (3D models: Z as trained)."),
    overlap: float = Opt(0.25, help="In-plane overlap of tiles, fraction of a tile."),
    overlap_z: float | None = Opt(None, help="Overlap of tiles along z (default 0)."),
    batch_size: int = Opt(1, help="Tiles per network call."),
    tta: bool | None = Opt(
        None,
        "--tta/--no-tta",
        help="Average over four in-plane flips (four network passes; calls far less noise dendrite where "
        "there is little to find: docs/inference.md). Default: on for volumes up to 2^25 voxels.",
        show_default=False,
    ),
    compile: str = Opt("auto", help="torch.compile: auto (CPU, volumes >= 64 M voxels), on, off."),
    probabilities: str | None = Opt(None, help="Also write float16 probabilities here."),
    format: str = Opt("tif", help="Output format for several inputs: tif, zarr, h5, npy."),
    summary: str = Opt("summary.csv", help="Summary CSV name inside the output folder."),
    dask: str | None = Opt(None, help="Run on Dask: scheduler address or local:N (output .zarr)."),
    threads: int | None = Opt(None, help="Torch threads (per Dask worker with --dask)."),
    sample_mask: str = Opt(
        "auto", help="Where dendrites may be: auto (detect the sample), none, or a 0/1 file."
    ),
    scale: str = Opt("auto", help="Bin N x N pixels before the network; auto: where it is surest."),
    window: tuple[float, float] | None = Opt(None, help="Grey window LOW HIGH (default: percentiles)."),
    hysteresis: float = Opt(
        0.9, help="Label a piece of dendrite only where some of it is this probable (0.5: every p > 0.5)."
    ),
    edge_rim: bool = Opt(
        True,
        "--drop-edge-rim/--keep-edge-rim",
        help="Drop a thin rim of dendrite along the sample's edge (dendrites cut by the edge stay).",
    ),
    report: str | None = Opt(
        None, help="Write the trust report (JSON): trust, reasons, slices to label next, the finetune line."
    ),
    adapt: float = Opt(
        0.0, help="Minutes to adapt the model to the scan first, without labels (one input; 0: off)."
    ),
) -> None:
    """Segment whole volumes with a network: tiled, blended, streamed to disk with bounded memory."""
    from rich.progress import TextColumn

    from dendriteseg.infer.run import segment_inputs
    from dendriteseg.infer.settings import InferenceSettings

    tile_size = _int_list(tile, "tile")
    settings = InferenceSettings(
        tile=tuple(tile_size) if tile_size else None,
        overlap=overlap,
        overlap_z=overlap_z,
        batch_size=batch_size,
        tta="auto" if tta is None else tta,
        device=device,
        precision=precision,
        compile=compile,
        sample_mask=sample_mask,
        scale=scale,
        window=window,
        hysteresis=hysteresis,
        edge_rim=edge_rim,
    )  # every value checked here, before any work
    with _progress(TextColumn("{task.description}")) as bar:
        volumes = bar.add_task("volumes", total=None, rate="", visible=False)
        voxels = bar.add_task("segment", total=None, rate="")

        def on_volume(index: int, count: int, spec: str, status: str) -> None:
            bar.update(volumes, completed=index, total=count, description=f"volume {index + 1}/{count}")
            bar.update(volumes, visible=True)
            if status == "skipped":
                _say(f"skip {spec} (already done)", err=True)

        if adapt:
            run = _segment_adapted(inputs, output, model, adapt, settings, probabilities, report, voxels, bar)
        else:
            run = segment_inputs(
                inputs,
                output,
                model,
                settings=settings,
                probabilities=probabilities,
                fmt=format,
                summary=summary,
                dask=dask,
                threads=threads,
                on_volume=on_volume,
                progress=_segment_progress(bar, voxels),
                report=report,
            )
    _say(run.describe())


def _segment_adapted(inputs, output, model, minutes, settings, probabilities, report, task, bar):  # noqa: ANN001, ANN202
    import math

    from dendriteseg.tune.adapt import segment_adapted

    if len(inputs) != 1 or not math.isfinite(minutes) or minutes < 0:
        _fail("--adapt: give one input volume and a number of minutes >= 0")
    run, adaptation = segment_adapted(
        inputs[0],
        output,
        model,
        minutes=minutes,
        settings=settings,
        probabilities=probabilities,
        report=report,
        progress=_segment_progress(bar, task),
    )
    _say(adaptation.describe(), err=True)
    return run


@command()
def models(files: list[Path] | None = Arg(None, help="Model files to describe.")) -> None:
    """List the built-in architectures, the shipped models (with their test scores) and model files."""
    from dendriteseg.models import architectures
    from dendriteseg.models.files import shipped_models, summarize_model

    counts = [(name, f"{count:,}") for name, count in architectures().items()]
    _table("architectures (default arguments)", ("name", "parameters"), counts)
    rows = [m.row() for m in shipped_models()]
    caption = (
        "* used when no --model is given (unet2d_default for a 2D image); "
        "scores: exact test groups of the synthetic benchmark"
    )
    columns = ("name", "parameters", "MB", "IoU", "BF1", "BDE px")
    _table("shipped models (--model NAME)", columns, rows, caption)
    for path in files or []:
        _say(f"{path}: {summarize_model(path).describe()}")


@command()
def view(
    image: str | None = Arg(None, help="A volume to open (any supported format); none: an empty viewer."),
    labels: list[str] | None = Opt(None, help="Label volumes to open over it."),
) -> None:
    """Open napari with the image, its labels and the dendriteseg widgets docked (needs the napari extra)."""
    from dendriteseg.errors import require

    require("napari", "napari", "dendriteseg view")
    import napari

    from dendriteseg.napari.viewer import open_viewer

    open_viewer(image, labels or [])
    napari.run()
