"""Segmentation metrics of the paper: accuracy, IoU, boundary F1 and boundary
displacement error, per z-slice (2D) and per volume (3D).

Definitions (``shared/DESIGN.md``):

* ``boundary(M) = M & ~erosion(M)`` with the 4-neighbour cross in 2D (the
  6-neighbour cross in 3D) and everything outside the image taken as 0: the
  inner boundary of MATLAB ``bfscore``, MONAI ``get_mask_edges`` and medpy.
* ``d``: exact Euclidean distance from each boundary pixel of one mask to
  the nearest boundary pixel of the other (pixels, or ``spacing`` units).
* BF1 at tolerance ``t``: ``P`` = share of predicted boundary pixels with
  ``d < t``, ``R`` = share of true boundary pixels with ``d < t``;
  ``BF1 = 2PR / (P + R)``, 0 when ``P + R = 0``.
* BDE: mean of the two directed mean distances.
* Accuracy: share of equal pixels; IoU of the dendrite (1) class.
* Both boundaries empty: BF1 and BDE skipped (NaN). One empty: BF1 = 0 and
  BDE skipped. IoU of two empty masks skipped. Volume scores are NaN-means
  of the slice scores, with counts of what was skipped.

This module depends on NumPy and SciPy only, so that anyone can import it.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "SliceScores",
    "Evaluation",
    "boundary",
    "directed_boundary_distances",
    "accuracy",
    "iou",
    "boundary_f1",
    "boundary_displacement_error",
    "score_slice",
    "score_slices",
    "score_volume_3d",
    "summarize",
]


UNLABELLED = 2  # a label value: not labelled here (sparse slices, scribbles); training and scoring skip it


def _as_bool(mask: Any, name: str = "mask") -> np.ndarray:
    array = np.asarray(mask)
    if array.dtype == bool:
        return array
    if array.dtype.kind == "f" and np.isnan(array).any():
        raise ValueError(f"{name} contains NaN")
    return array != 0


def _check_pair(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    pred_b, gt_b = _as_bool(pred, "pred"), _as_bool(gt, "gt")
    if pred_b.shape != gt_b.shape:
        raise ValueError(f"pred shape {pred_b.shape} differs from gt shape {gt_b.shape}")
    return pred_b, gt_b


def boundary(mask: Any, *, axes: tuple[int, ...] | None = None) -> np.ndarray:
    """Inner boundary: pixels of ``mask`` with a cross-neighbour outside it.

    Parameters
    ----------
    mask : array_like of bool
        2D or 3D mask.
    axes : tuple of int, optional
        The axes whose two neighbours count (the cross). Default: all axes.
        ``axes=(1, 2)`` on a ``(z, y, x)`` stack gives every slice's 2D
        boundary at once.

    Returns
    -------
    numpy.ndarray of bool
        Same as ``mask & ~scipy.ndimage.binary_erosion(mask, cross,
        border_value=0)`` along ``axes``.

    Examples
    --------
    >>> m = np.zeros((5, 5), bool); m[1:4, 1:4] = True
    >>> boundary(m).sum()  # the ring of 8 around the centre
    8
    """
    mask = _as_bool(mask)
    axes = tuple(range(mask.ndim)) if axes is None else tuple(a % mask.ndim for a in axes)
    eroded = mask.copy()
    for axis in axes:
        n = mask.shape[axis]
        lo = [slice(None)] * mask.ndim
        hi = [slice(None)] * mask.ndim
        lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
        eroded[tuple(hi)] &= mask[tuple(lo)]  # neighbour before
        eroded[tuple(lo)] &= mask[tuple(hi)]  # neighbour after
        edge = [slice(None)] * mask.ndim
        for index in (0, n - 1):  # outside the image counts as background
            edge[axis] = index
            eroded[tuple(edge)] = False
    return mask & ~eroded


def _bbox(*masks: np.ndarray) -> tuple[slice, ...]:
    union = masks[0]
    for m in masks[1:]:
        union = union | m
    slices = []
    for axis in range(union.ndim):
        other = tuple(a for a in range(union.ndim) if a != axis)
        hit = np.flatnonzero(union.any(axis=other))
        slices.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(slices)


def directed_boundary_distances(
    boundary_from: np.ndarray, boundary_to: np.ndarray, *, spacing: Any = None
) -> np.ndarray:
    """Exact Euclidean distance from each pixel of ``boundary_from`` to the
    nearest pixel of ``boundary_to``, in raster order.

    Both boundaries must be non-empty. The distance transform runs only on
    the bounding box that holds both, which gives exact values because every
    candidate nearest pixel lies inside it.
    """
    if not boundary_to.any():
        raise ValueError("boundary_to is empty")
    box = _bbox(boundary_from, boundary_to)
    dist = ndimage.distance_transform_edt(~boundary_to[box], sampling=spacing)
    return dist[boundary_from[box]]


def accuracy(pred: Any, gt: Any) -> float:
    """Share of pixels where ``pred`` equals ``gt``."""
    pred_b, gt_b = _check_pair(pred, gt)
    if pred_b.size == 0:
        return math.nan
    return float(np.count_nonzero(pred_b == gt_b)) / pred_b.size


def iou(pred: Any, gt: Any) -> float:
    """Intersection over union of the dendrite class; NaN when both are empty."""
    pred_b, gt_b = _check_pair(pred, gt)
    union = np.count_nonzero(pred_b | gt_b)
    if union == 0:
        return math.nan
    return np.count_nonzero(pred_b & gt_b) / union


def _bf1_bde(
    pred_boundary: np.ndarray, gt_boundary: np.ndarray, tolerance: float, spacing: Any
) -> tuple[float, float, float, float]:
    """(bf1, bde, precision, recall) from two boundary masks, edge cases included."""
    n_pred, n_gt = int(np.count_nonzero(pred_boundary)), int(np.count_nonzero(gt_boundary))
    if n_pred == 0 and n_gt == 0:
        return math.nan, math.nan, math.nan, math.nan
    if n_pred == 0 or n_gt == 0:
        precision = 0.0 if n_pred else math.nan
        recall = 0.0 if n_gt else math.nan
        return 0.0, math.nan, precision, recall
    d_pred = directed_boundary_distances(pred_boundary, gt_boundary, spacing=spacing)
    d_gt = directed_boundary_distances(gt_boundary, pred_boundary, spacing=spacing)
    precision = np.count_nonzero(d_pred < tolerance) / n_pred
    recall = np.count_nonzero(d_gt < tolerance) / n_gt
    bf1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    bde = (float(d_pred.mean()) + float(d_gt.mean())) / 2
    return bf1, bde, precision, recall


def boundary_f1(pred: Any, gt: Any, *, tolerance: float = 4.0, spacing: Any = None) -> float:
    """Boundary F1 score (BF1) of two masks, 2D or 3D.

    Parameters
    ----------
    pred, gt : array_like of bool
    tolerance : float
        A boundary pixel matches when its distance is strictly below this.
    spacing : sequence of float, optional
        Pixel size per axis; distances and ``tolerance`` are then in its units.

    Returns
    -------
    float
        NaN when both boundaries are empty, 0 when only one is.

    Examples
    --------
    >>> a = np.zeros((20, 20), bool); a[5:15, 5:15] = True
    >>> boundary_f1(a, np.roll(a, 3, axis=1)) > 0.5
    True
    """
    if tolerance <= 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    pred_b, gt_b = _check_pair(pred, gt)
    return _bf1_bde(boundary(pred_b), boundary(gt_b), tolerance, spacing)[0]


def boundary_displacement_error(pred: Any, gt: Any, *, spacing: Any = None) -> float:
    """Boundary displacement error: mean of the two directed mean distances.

    NaN when either boundary is empty.
    """
    pred_b, gt_b = _check_pair(pred, gt)
    return _bf1_bde(boundary(pred_b), boundary(gt_b), 1.0, spacing)[1]


@dataclass(frozen=True)
class SliceScores:
    """Scores of one z-slice (NaN where skipped)."""

    z: int
    accuracy: float
    iou: float
    bf1: float
    bde: float
    precision: float
    recall: float
    boundary_pred: int
    boundary_gt: int


def score_slice(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    tolerance: float = 4.0,
    z: int = 0,
    pred_boundary: np.ndarray | None = None,
    gt_boundary: np.ndarray | None = None,
) -> SliceScores:
    """All metrics of one 2D slice pair."""
    pred_b, gt_b = _check_pair(pred, gt)
    if pred_b.ndim != 2:
        raise ValueError(f"score_slice takes 2D slices, got shape {pred_b.shape}")
    pb = boundary(pred_b) if pred_boundary is None else pred_boundary
    gb = boundary(gt_b) if gt_boundary is None else gt_boundary
    bf1, bde, precision, recall = _bf1_bde(pb, gb, tolerance, None)
    return SliceScores(
        z=z,
        accuracy=accuracy(pred_b, gt_b),
        iou=iou(pred_b, gt_b),
        bf1=bf1,
        bde=bde,
        precision=precision,
        recall=recall,
        boundary_pred=int(np.count_nonzero(pb)),
        boundary_gt=int(np.count_nonzero(gb)),
    )


def score_slices(
    pred: Any,
    gt: Any,
    *,
    tolerance: float = 4.0,
    z0: int = 0,
    workers: int | None = None,
) -> list[SliceScores]:
    """Score every z-slice of a ``(z, y, x)`` pair; slices run on threads."""
    pred_b, gt_b = _check_pair(pred, gt)
    if pred_b.ndim == 2:
        pred_b, gt_b = pred_b[None], gt_b[None]
    if pred_b.ndim != 3:
        raise ValueError(f"expected (z, y, x) stacks, got shape {pred_b.shape}")
    if tolerance <= 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    pb, gb = boundary(pred_b, axes=(1, 2)), boundary(gt_b, axes=(1, 2))

    def one(i: int) -> SliceScores:
        return score_slice(
            pred_b[i], gt_b[i], tolerance=tolerance, z=z0 + i, pred_boundary=pb[i], gt_boundary=gb[i]
        )

    workers = workers or min(len(pred_b), os.cpu_count() or 1)
    if workers <= 1 or len(pred_b) == 1:
        return [one(i) for i in range(len(pred_b))]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(len(pred_b))))


@dataclass(frozen=True)
class Evaluation:
    """Aggregated scores with the counts of skipped slices.

    ``accuracy``, ``iou`` and ``bf1`` are fractions, ``bde`` is in pixels
    (or ``spacing`` units in 3D mode). ``per_slice`` is empty in 3D mode.
    """

    accuracy: float
    iou: float
    bf1: float
    bde: float
    mode: str
    tolerance: float
    counts: dict[str, int]
    per_slice: list[SliceScores] = field(default_factory=list)

    def to_dict(self, *, per_slice: bool = True) -> dict[str, Any]:
        """JSON-ready dict; NaN becomes None."""

        def clean(value: Any) -> Any:
            if isinstance(value, float) and math.isnan(value):
                return None
            return value

        out: dict[str, Any] = {
            "accuracy": clean(self.accuracy),
            "iou": clean(self.iou),
            "bf1": clean(self.bf1),
            "bde": clean(self.bde),
            "mode": self.mode,
            "tolerance": self.tolerance,
            "counts": dict(self.counts),
        }
        if per_slice:
            out["per_slice"] = [{k: clean(v) for k, v in asdict(s).items()} for s in self.per_slice]
        return out


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def summarize(scores: list[SliceScores], *, tolerance: float = 4.0) -> Evaluation:
    """NaN-mean of slice scores, with counts of skipped slices."""
    counts = {
        "slices": len(scores),
        "iou_skipped": sum(math.isnan(s.iou) for s in scores),
        "bf1_skipped": sum(math.isnan(s.bf1) for s in scores),
        "bf1_one_empty": sum((s.boundary_pred == 0) != (s.boundary_gt == 0) for s in scores),
        "bde_skipped": sum(math.isnan(s.bde) for s in scores),
    }
    counts["bf1_used"] = counts["slices"] - counts["bf1_skipped"]
    counts["bde_used"] = counts["slices"] - counts["bde_skipped"]
    return Evaluation(
        accuracy=_nanmean([s.accuracy for s in scores]),
        iou=_nanmean([s.iou for s in scores]),
        bf1=_nanmean([s.bf1 for s in scores]),
        bde=_nanmean([s.bde for s in scores]),
        mode="2d",
        tolerance=float(tolerance),
        counts=counts,
        per_slice=list(scores),
    )


def score_volume_3d(pred: Any, gt: Any, *, tolerance: float = 4.0, spacing: Any = None) -> Evaluation:
    """3D scores: 6-neighbour boundaries and distances with voxel ``spacing``.

    Parameters
    ----------
    pred, gt : array_like of bool, shape (z, y, x)
    tolerance : float
        In the units of ``spacing`` (voxels when None).
    spacing : sequence of 3 float, optional
    """
    pred_b, gt_b = _check_pair(pred, gt)
    if pred_b.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {pred_b.shape}")
    if tolerance <= 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    if spacing is not None:
        spacing = tuple(float(s) for s in spacing)
        if len(spacing) != 3 or min(spacing) <= 0:
            raise ValueError(f"spacing must be three positive numbers, got {spacing}")
    pb, gb = boundary(pred_b), boundary(gt_b)
    bf1, bde, _, _ = _bf1_bde(pb, gb, tolerance, spacing)
    n_pred, n_gt = int(pb.any()), int(gb.any())
    counts = {
        "volumes": 1,
        "iou_skipped": int(not (pred_b.any() or gt_b.any())),
        "bf1_skipped": int(n_pred == 0 and n_gt == 0),
        "bf1_one_empty": int(n_pred != n_gt),
        "bde_skipped": int(n_pred == 0 or n_gt == 0),
    }
    return Evaluation(
        accuracy=accuracy(pred_b, gt_b),
        iou=iou(pred_b, gt_b),
        bf1=bf1,
        bde=bde,
        mode="3d",
        tolerance=float(tolerance),
        counts=counts,
    )


def score_labelled(pred: Any, truth: Any, *, tolerance: float = 4.0) -> Evaluation:
    """Scores of a prediction against a truth known only in part (:data:`UNLABELLED` elsewhere).

    Accuracy and IoU are pooled over the labelled voxels; BF1 and BDE are
    the NaN-mean over the slices labelled whole (NaN when there is none).
    ``counts`` gives the labelled voxels and the whole slices used.
    """
    pred = np.asarray(pred).astype(bool)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"pred shape {pred.shape} differs from truth shape {truth.shape}")
    if pred.ndim == 2:
        pred, truth = pred[None], truth[None]
    known = truth != UNLABELLED
    t, p = truth[known] == 1, pred[known]
    union = int((t | p).sum())
    whole = [z for z in range(truth.shape[0]) if known[z].all()]
    slices = score_slices(pred[whole], truth[whole] == 1, tolerance=tolerance) if whole else []
    return Evaluation(
        accuracy=float((t == p).mean()) if t.size else math.nan,
        iou=float((t & p).sum() / union) if union else math.nan,
        bf1=_nanmean([s.bf1 for s in slices]),
        bde=_nanmean([s.bde for s in slices]),
        mode="labelled",
        tolerance=float(tolerance),
        counts={"labelled_voxels": int(known.sum()), "whole_slices": len(whole)},
        per_slice=slices,
    )
