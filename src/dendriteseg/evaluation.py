"""Evaluate a predicted label volume against the truth, from files or arrays.

Reads both volumes in z-slabs, checks that they are binary and of one shape,
and scores them with :mod:`dendriteseg.metrics` (per z-slice, or in 3D).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from dendriteseg.errors import InputError
from dendriteseg.io import as_volume, write_text_atomic
from dendriteseg.io.labels import as_binary_labels
from dendriteseg.metrics import Evaluation, SliceScores, score_slices, score_volume_3d, summarize

SLAB_DEPTH = 32


def evaluate(
    pred: Any,
    gt: Any,
    *,
    tolerance: float = 4.0,
    mode: str = "2d",
    spacing: Any = None,
    slab_depth: int = SLAB_DEPTH,
    workers: int | None = None,
) -> Evaluation:
    """Score a predicted segmentation against the ground truth.

    Parameters
    ----------
    pred, gt : path, Volume or array_like
        Binary label volumes ``(z, y, x)`` (or one 2D slice): 0/1 or 0/255.
    tolerance : float
        BF1 tolerance in pixels (``spacing`` units in 3D mode).
    mode : {"2d", "3d"}
        ``"2d"``: per z-slice, then the NaN-mean over slices (the paper's
        way). ``"3d"``: 6-neighbour boundaries and 3D distances.
    spacing : sequence of 3 float, optional
        Voxel size for 3D mode; ``None`` uses the truth file's voxel size
        if it has one, else 1.
    slab_depth : int
        Slices read at a time in 2D mode (memory stays bounded).

    Returns
    -------
    Evaluation

    Raises
    ------
    InputError
        Different shapes, non-binary labels, NaN, unreadable files.
    """
    if mode not in ("2d", "3d"):
        raise InputError(f"mode must be '2d' or '3d', got {mode!r}")
    if not tolerance > 0:
        raise InputError(f"tolerance must be > 0, got {tolerance}")
    with as_volume(pred, "pred") as pv, as_volume(gt, "gt") as gv:
        if pv.shape != gv.shape:
            raise InputError(f"{pv.source}: shape {pv.shape} differs from {gv.source} shape {gv.shape}")
        if mode == "3d":
            if pv.ndim != 3:
                raise InputError(f"{pv.source}: 3D mode needs a (z, y, x) volume")
            p = as_binary_labels(pv.read(), pv.source)
            g = as_binary_labels(gv.read(), gv.source)
            return score_volume_3d(p, g, tolerance=tolerance, spacing=spacing or gv.voxel_size or None)
        scores: list[SliceScores] = []
        if pv.ndim == 2:
            p = as_binary_labels(pv.read(), pv.source)[None]
            g = as_binary_labels(gv.read(), gv.source)[None]
            scores = score_slices(p, g, tolerance=tolerance, workers=workers)
        else:
            for z0 in range(0, pv.shape[0], slab_depth):
                z1 = min(z0 + slab_depth, pv.shape[0])
                p = as_binary_labels(pv.read(z0, z1), pv.source)
                g = as_binary_labels(gv.read(z0, z1), gv.source)
                scores += score_slices(p, g, tolerance=tolerance, z0=z0, workers=workers)
        return summarize(scores, tolerance=tolerance)


def write_json(result: Evaluation, path: str | Path, **extra: Any) -> None:
    """Write the evaluation as JSON (fractions; BDE in pixels; NaN as null)."""
    payload = {**result.to_dict(), **extra}
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


def write_per_slice_csv(result: Evaluation, path: str | Path) -> None:
    """One row per z-slice; empty cells where a metric was skipped (2D mode only)."""
    import io

    if result.mode != "2d":
        raise InputError(f"{path}: --per-slice needs --mode 2d (3D scores have no slices)")
    buffer = io.StringIO()
    names = [f.name for f in fields(SliceScores)]
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in result.per_slice:
        writer.writerow(
            {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(row).items()}
        )
    write_text_atomic(path, buffer.getvalue())


def format_table(result: Evaluation) -> list[tuple[str, str]]:
    """Rows (name, value) for a small human-readable table."""

    def pct(v: float) -> str:
        return "n/a" if math.isnan(v) else f"{100 * v:.2f}"

    unit = "px" if result.mode == "2d" else "units"
    c = result.counts
    rows = [
        ("Accuracy %", pct(result.accuracy)),
        ("IoU %", pct(result.iou)),
        (f"BF1 % (t={result.tolerance:g})", pct(result.bf1)),
        (f"BDE {unit}", "n/a" if math.isnan(result.bde) else f"{result.bde:.3f}"),
    ]
    if result.mode == "2d":
        rows.append(
            (
                "slices used/skipped",
                f"{c['bde_used']}/{c['bde_skipped']} (BDE), {c['bf1_used']}/{c['bf1_skipped']} "
                f"(BF1), IoU skipped {c['iou_skipped']}",
            )
        )
    return rows
