"""Many volumes (a 4D experiment, a folder of scans) into one output folder.

Each input ``scans/t012.h5:/exchange/data`` becomes ``OUT/t012.<format>``.
An output that exists is finished (outputs are written under a temporary
name and renamed when complete), so a rerun skips it: kill a run at any
moment, start it again, and it picks up where it stopped, after removing
the half-written temporary file of the volume it was on. A summary CSV
(time per volume, voxels/s, dendrite fraction) is rewritten atomically
after every volume.
"""

from __future__ import annotations

import csv
import glob
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dendriteseg.errors import InputError
from dendriteseg.infer.settings import InferenceSettings, settings_from
from dendriteseg.io import parse_location, write_text_atomic
from dendriteseg.io.location import split_key
from dendriteseg.io.outputs import check_distinct, remove_stale_partials
from dendriteseg.io.readers import natural_key

OUTPUT_FORMATS = {"tif": ".tif", "zarr": ".zarr", "h5": ".h5", "npy": ".npy"}
SUMMARY_FIELDS = [
    "input",
    "output",
    "status",
    "shape",
    "seconds",
    "voxels_per_second",
    "dendrite_fraction",
    "scale",
    "flips",
    "trust",
    "reasons",
    "label_next",
]


def expand_inputs(specs: list[str]) -> list[str]:
    """Expand glob patterns in the file part of each spec (``scans/*.h5:/exchange/data``).

    Specs without wildcards are kept as given; each pattern must match something.
    """
    expanded: list[str] = []
    for spec in specs:
        text, key = split_key(spec)
        if glob.has_magic(text):
            paths = sorted(glob.glob(text), key=natural_key)
            if not paths:
                raise InputError(f"{spec}: no files match")
            expanded += [f"{p}:{key}" if key else p for p in paths]
        else:
            expanded.append(str(spec))
    return expanded


def output_for(spec: str, out_dir: Path, fmt: str) -> Path:
    """``OUT/<input name without suffix>.<fmt>``."""
    if fmt not in OUTPUT_FORMATS:
        raise InputError(f"format: expected one of {', '.join(OUTPUT_FORMATS)}, got {fmt!r}")
    path = parse_location(spec).path
    name = path.name[: -len(path.suffix)] if path.suffix else path.name
    return out_dir / f"{name}{OUTPUT_FORMATS[fmt]}"


def read_summary(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with open(path, newline="") as fh:
        return {row["output"]: row for row in csv.DictReader(fh) if "output" in row}


def write_summary(path: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buffer.getvalue())


@dataclass
class SeriesPlan:
    """Inputs and the output each one gets."""

    inputs: list[str]
    outputs: list[Path]


def plan_series(specs: list[str], out_dir: str | Path, fmt: str = "tif") -> SeriesPlan:
    out_dir = Path(out_dir)
    inputs = expand_inputs(specs)
    if not inputs:
        raise InputError("no input volumes given")
    outputs = [output_for(spec, out_dir, fmt) for spec in inputs]
    seen: dict[Path, str] = {}
    for spec, out in zip(inputs, outputs, strict=True):
        if out in seen:
            raise InputError(f"{spec}: would write {out}, as {seen[out]} does; rename one of them")
        seen[out] = spec
    return SeriesPlan(inputs, outputs)


def segment_series(
    specs: list[str],
    out_dir: str | Path,
    model: Any = None,
    *,
    fmt: str = "tif",
    probabilities: str | Path | None = None,
    summary: str = "summary.csv",
    settings: InferenceSettings | None = None,
    on_volume: Callable[[int, int, str, str], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    **changes: Any,
) -> list[dict[str, Any]]:
    """Segment every input into ``out_dir``, skipping finished ones; return the summary rows.

    With ``probabilities`` (a folder) each volume's float16 probabilities
    go there under the same name as its labels.
    ``on_volume(index, count, input, status)`` is called as each volume
    starts (status "run") or is skipped ("skipped"); ``progress`` as in
    :func:`~dendriteseg.infer.segment`; ``settings`` and ``changes`` as there.
    The model is loaded once for all volumes. With ``scale="auto"`` (the
    default) the first volume segmented chooses the binning and the rest of
    the series uses it (a resumed run takes it from the summary), so a time
    series is segmented at one scale; test-time flips (``tta="auto"``) likewise follow the first
    volume's, so that no volume of a series is segmented otherwise than the rest.
    """
    from dendriteseg.infer.predictor import resolve_predictor
    from dendriteseg.infer.segment import segment

    settings = settings_from(settings, changes)
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        if out_dir.exists():
            raise InputError(f"{out_dir}: is a file; with several inputs -o must be a folder")
        out_dir.mkdir(parents=True)
    plan = plan_series(specs, out_dir, fmt)
    for target in plan.outputs:  # -o next to the inputs, in their format, would write over them
        check_distinct(plan.inputs, {"-o": target})
    prob_dir = Path(probabilities) if probabilities else None
    if prob_dir is not None:
        if prob_dir.resolve() == out_dir.resolve():
            raise InputError(f"{prob_dir}: probabilities need a folder of their own, not the labels' folder")
        prob_dir.mkdir(parents=True, exist_ok=True)
    summary_path = out_dir / summary
    previous = read_summary(summary_path)
    predictor = None
    rows: list[dict[str, Any]] = []
    count = len(plan.inputs)
    for index, (spec, target) in enumerate(zip(plan.inputs, plan.outputs, strict=True)):
        prob_target = prob_dir / target.name if prob_dir is not None else None
        finished = target.exists() and (prob_target is None or prob_target.exists())
        if finished:
            row = dict(previous.get(str(target), {}))
            row.update(input=spec, output=str(target), status="skipped")
            if settings.scale == "auto" and str(row.get("scale", "")).isdigit():
                settings = settings.replace(scale=int(row["scale"]))  # the binning the series was begun with
            if settings.tta == "auto" and row.get("flips") in ("on", "off"):
                settings = settings.replace(tta=row["flips"])  # and its flips
            rows.append(row)
            if on_volume:
                on_volume(index, count, spec, "skipped")
            continue
        for path in (target, prob_target):
            if path is not None:
                remove_stale_partials(path)
        if on_volume:
            on_volume(index, count, spec, "run")
        if predictor is None:
            predictor = resolve_predictor(model, **settings.predictor_options)
            predictor.prepare(_voxels(plan.inputs[index:]))  # compile "auto" weighs the whole series
        result = segment(
            spec, predictor, output=target, probabilities=prob_target, settings=settings, progress=progress
        )
        if result.scale is not None:
            settings = settings.replace(scale=result.scale.scale)  # the rest at the first volume's binning
        if settings.tta == "auto":
            settings = settings.replace(tta=result.flips)  # and with its flips, or without
        rows.append(
            {
                "input": spec,
                "output": str(target),
                "status": "done",
                "shape": "x".join(str(s) for s in result.shape),
                "seconds": f"{result.seconds:.3f}",
                "voxels_per_second": f"{result.voxels_per_second:.0f}",
                "dendrite_fraction": f"{result.dendrite_fraction:.6f}",
                "scale": settings.scale,
                "flips": "on" if result.flips else "off",
                "trust": result.trust.trust if result.trust else "",
                "reasons": "; ".join(result.trust.reasons) if result.trust else "",
                "label_next": " ".join(str(z) for z in result.trust.label_next) if result.trust else "",
            }
        )
        write_summary(summary_path, rows + _rest(plan, index, previous))
    write_summary(summary_path, rows)
    return rows


def _voxels(specs: list[str]) -> int:
    """Total voxels of the volumes (unreadable ones count 0; they fail when their turn comes)."""
    from dendriteseg.errors import DendritesegError
    from dendriteseg.io import read_metadata

    total = 0
    for spec in specs:
        try:
            total += int(np.prod(read_metadata(spec)["shape"]))
        except (DendritesegError, OSError, ValueError):
            pass
    return total


def _rest(plan: SeriesPlan, index: int, previous: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    """Rows of earlier runs for volumes this run has not reached yet (kept in the summary)."""
    return [previous[str(out)] for out in plan.outputs[index + 1 :] if str(out) in previous]
