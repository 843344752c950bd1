"""Choosing between the search's best trial and its plain first trial: the one-standard-error rule.

A few held-out labels judge settings noisily: the best of several trials
on them is partly the luckiest. So a fine-tune keeps the plain settings
(its first trial) unless the best trial beats them by more than one
standard error of the difference (the "one-standard-error rule", Hastie,
Tibshirani and Friedman, *The Elements of Statistical Learning*, 7.10).
The error is bootstrapped, paired, over tiles of the validation slices
(a 4 x 4 grid on each, the tiles that hold labels): nearby pixels are not
independent evidence, tiles more nearly are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dendriteseg.data import UNLABELLED, LabelledVolume
from dendriteseg.tune.labels import grid_tiles

GRID = 4  # tiles per side of a validation slice
RESAMPLES = 2000


@dataclass
class Comparison:
    """Validation IoU of two models over the same tiles: the difference and its standard error."""

    difference: float
    standard_error: float
    tiles: int

    @property
    def clear(self) -> bool:
        """Whether the first model is ahead by more than one standard error."""
        return self.difference > self.standard_error

    def record(self) -> dict[str, float | int]:
        return {"difference": self.difference, "standard_error": self.standard_error, "tiles": self.tiles}


def tile_counts(predicted: list[np.ndarray], volumes: list[LabelledVolume]) -> np.ndarray:
    """Intersection and union of dendrite over the labelled voxels of each tile: shape (tiles, 2)."""
    rows = []
    for pred, volume in zip(predicted, volumes, strict=True):
        known = volume.label != UNLABELLED
        truth = volume.label == 1
        pred = pred.astype(bool)
        tiles = grid_tiles(known.shape[1:], GRID)
        for z in np.flatnonzero(known.any(axis=(1, 2))):
            k, t, p = known[z], truth[z], pred[z]
            for tile in np.unique(tiles[k]):
                inside = k & (tiles == tile)
                rows.append(((p & t & inside).sum(), ((p | t) & inside).sum()))
    return np.asarray(rows, np.float64).reshape(-1, 2)


def compare(a: np.ndarray, b: np.ndarray, *, seed: int = 0) -> Comparison:
    """Pooled IoU of ``a`` minus that of ``b`` (tile counts from :func:`tile_counts`, same tiles), and
    the standard error of that difference over paired bootstrap resamples of the tiles."""
    if a.shape != b.shape or not len(a):
        raise ValueError("compare: two sets of counts over the same, non-empty tiles")

    def iou(counts: np.ndarray) -> np.ndarray:
        inter, union = counts[..., 0].sum(-1), counts[..., 1].sum(-1)
        return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)

    picks = np.random.default_rng(seed).integers(0, len(a), (RESAMPLES, len(a)))
    spread = iou(a[picks]) - iou(b[picks])
    return Comparison(float(iou(a) - iou(b)), float(spread.std()), len(a))
