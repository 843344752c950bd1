"""Where tiles go and how their predictions are blended.

Tiles along one axis are spread evenly from the first voxel to the last, as
few as the overlap allows. Each tile's prediction is weighted by a separable
Gaussian window (peak 1 in the middle, small but positive at the edges), so
voxels near a tile border, where the network saw zero padding, count least.
Because the tile grid is a Cartesian product of per-axis starts, the sum of
the weights at a voxel is the product of three 1D sums: blending needs one
accumulator, not two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

WEIGHT_FLOOR = 0.01  # relative weight at a tile's edge, per axis; keeps every weight sum > 0


def alignment(predictor: Any) -> tuple[int, int, int]:
    """The (z, y, x) multiples a predictor's tiles should start at and measure."""
    multiple = tuple(int(m) for m in getattr(predictor, "size_multiple", ()) or ())
    if len(multiple) == 3:
        return multiple  # type: ignore[return-value]
    if len(multiple) == 2:
        return (1, *multiple)  # type: ignore[return-value]
    return (1, 1, 1)


def tile_starts(length: int, tile: int, overlap: float, multiple: int = 1) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``0:length``.

    Neighbouring tiles overlap by about ``overlap`` x ``tile`` voxels (at
    least that where the alignment allows). Starts are multiples of
    ``multiple``: a network that pools by 2 ``k`` times is only
    shift-equivariant for shifts by multiples of 2**k, so aligned tiles see
    the same pooling grid as a whole-volume pass. The last tile may reach
    past the end by less than ``multiple`` (its input is padded there).

    >>> tile_starts(10, 4, 0.0)
    [0, 3, 6]
    >>> tile_starts(852, 256, 0.25, multiple=8)
    [0, 152, 304, 448, 600]
    """
    if length < 1 or tile < 1 or multiple < 1:
        raise ValueError(f"length, tile and multiple must be >= 1, got {length}, {tile}, {multiple}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if tile >= length:
        return [0]
    end = math.ceil((length - tile) / multiple) * multiple  # start of the last tile
    stride = max(1.0, tile * (1.0 - overlap))
    count = math.ceil(end / stride) + 1
    while True:
        starts = sorted({int(round(s / multiple)) * multiple for s in np.linspace(0, end, count)})
        if all(b - a <= min(tile, stride + multiple) for a, b in zip(starts, starts[1:], strict=False)):
            return starts
        count += 1


def gaussian_window(size: int, sigma_scale: float = 0.125) -> np.ndarray:
    """A 1D Gaussian of ``size`` samples, peak 1, sigma = ``sigma_scale`` x size, floored."""
    centre = (size - 1) / 2.0
    sigma = max(size * sigma_scale, 1e-6)
    window = np.exp(-0.5 * ((np.arange(size) - centre) / sigma) ** 2)
    return np.maximum(window, WEIGHT_FLOOR).astype(np.float32)


@dataclass(frozen=True)
class AxisTiling:
    """Tiles along one axis: their starts, size, weight window and weight sum."""

    length: int
    size: int
    starts: tuple[int, ...]
    window: np.ndarray  # (size,) weight of each position inside a tile
    total: np.ndarray  # (length,) sum of the windows of all tiles at each voxel

    @classmethod
    def build(cls, length: int, size: int, overlap: float, multiple: int = 1) -> AxisTiling:
        size = min(size, math.ceil(length / multiple) * multiple)
        starts = tile_starts(length, size, overlap, multiple)
        if len(starts) > 1 and any(b - a < size for a, b in zip(starts, starts[1:], strict=False)):
            window = gaussian_window(size)
        else:  # tiles do not overlap: nothing to blend along this axis
            window = np.ones(size, np.float32)
        total = np.zeros(length, np.float32)
        for s in starts:
            total[s : s + size] += window[: length - s]
        return cls(length, size, tuple(starts), window, total)


@dataclass(frozen=True)
class Tiling:
    """The tile grid over a (z, y, x) volume."""

    z: AxisTiling
    y: AxisTiling
    x: AxisTiling

    @classmethod
    def build(
        cls,
        shape: tuple[int, int, int],
        tile: tuple[int, int, int],
        overlap: float | tuple[float, float, float],
        multiple: tuple[int, int, int] = (1, 1, 1),
    ) -> Tiling:
        """``overlap``: one fraction for every axis, or a (z, y, x) triple;
        ``multiple``: the network's alignment per axis (see :func:`tile_starts`)."""
        overlaps = tuple(overlap) if isinstance(overlap, (tuple, list)) else (overlap,) * 3
        axes = zip(shape, tile, overlaps, multiple, strict=True)
        return cls(*(AxisTiling.build(n, t, o, m) for n, t, o, m in axes))

    @property
    def tile(self) -> tuple[int, int, int]:
        return self.z.size, self.y.size, self.x.size

    @property
    def count(self) -> int:
        return len(self.z.starts) * len(self.y.starts) * len(self.x.starts)

    def plane_starts(self) -> list[tuple[int, int]]:
        """In-plane ``(y, x)`` starts, row by row."""
        return [(y, x) for y in self.y.starts for x in self.x.starts]

    def tile_weights(self) -> np.ndarray:
        """(z, y, x) weight of one tile."""
        return self.z.window[:, None, None] * self.y.window[None, :, None] * self.x.window[None, None, :]

    def plane_total(self) -> np.ndarray:
        """(y, x) in-plane part of the weight sum."""
        return self.y.total[:, None] * self.x.total[None, :]

    def padded(self) -> bool:
        """Whether some tile reaches past the end of the volume."""
        return any(a.starts[-1] + a.size > a.length for a in (self.z, self.y, self.x))

    def work_ratio(self) -> float:
        """Voxels the network computes per voxel of the volume (1.0 = no overlap)."""
        volume = self.z.length * self.y.length * self.x.length
        return self.count * self.z.size * self.y.size * self.x.size / volume
