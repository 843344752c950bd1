"""The streaming core: tiles of a volume through a predictor, blended, slab by slab.

Data flow (one way): lazy volume -> z-rows of tiles (read and normalised in
a background thread) -> predictor in batches -> Gaussian-weighted sum into
a rolling accumulator one tile deep -> finished slices divided by the weight
sum -> labels (and probabilities) written slab by slab. Memory holds one
z-row of input, one of accumulated logits and one batch of network
activations, whatever the depth of the volume.

Tiles: 3D models see tiles as deep as their training patches (4 slices for
the shipped model; deeper tiles feed its z-pooled layers context they never
saw in training), consecutive in z without overlap by default; 2D models see
slabs of whole slices. In-plane, a slice up to ``MAX_PLANE`` voxels a side is
one tile (no in-plane seams and no repeated work); a longer side is cut into
the fewest tiles of at most ``MAX_PLANE`` that overlap by ``overlap``, with
starts on the network's pooling grid (the largest plane tile whose
activations keep the shipped model within a 2 GB budget;
``benchmarks/inference.py`` measures the peak memory). A binned predictor's
network sees ``factor`` times fewer pixels a side: its tiles may be that
many times larger.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from dendriteseg.errors import InputError
from dendriteseg.infer.predictor import BinnedPredictor, Predictor
from dendriteseg.infer.settings import DEFAULT_OVERLAP_Z
from dendriteseg.infer.tiling import Tiling, tile_starts
from dendriteseg.io import Volume

log = logging.getLogger(__name__)

MAX_PLANE = 896  # in-plane tile sides are at most this (memory; see the module notes)
SLAB_2D = 8  # slices per z-row for 2D models


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def _plane_tile(length: int, overlap: float, multiple: int = 1, largest: int = MAX_PLANE) -> int:
    """The smallest tile side (a multiple of ``multiple``) that covers ``length`` with the fewest tiles
    of at most ``largest``, once their starts are aligned to ``multiple`` (aligning can add a tile where
    the side leaves no room for it: the side then grows by a multiple or two instead)."""
    count = 1
    while True:
        side = _round_up(math.ceil(length / (count - (count - 1) * overlap)), multiple)
        while side <= largest and len(tile_starts(length, side, overlap, multiple)) > count:
            side += multiple
        if side <= largest:
            return side
        count += 1


def choose_tile(
    shape: tuple[int, int, int],
    predictor: Predictor,
    tile: tuple[int, ...] | None = None,
    overlap: float = 0.25,
) -> tuple[int, int, int]:
    """The (z, y, x) tile size for a volume; see the module notes for the defaults.

    ``tile`` may give (y, x) or (z, y, x); a 3D model's z is its tile depth
    unless given. Sizes are rounded up to the network's alignment and
    capped at the volume (rounded up the same way).
    """
    nz, ny, nx = shape
    depth = predictor.tile_depth
    tz = depth if depth else SLAB_2D
    if tile is not None:
        tile = tuple(int(t) for t in tile)
        if len(tile) == 3:
            tz, ty, tx = tile
        elif len(tile) == 2:
            ty, tx = tile
        else:
            raise InputError(f"tile: give Y,X or Z,Y,X, got {tile}")
        if min(tz, ty, tx) < 1:
            raise InputError(f"tile: sizes must be >= 1, got {tile}")
        if depth and tz != depth:
            log.warning(
                "tile: %d slices deep, where this 3D model was trained for %d; its deepest layers then see "
                "other depths than in training and its labels change (benchmarks/tile_depth.py)",
                tz,
                depth,
            )
    else:
        # a binned predictor's network sees 1/factor of each side: its tiles may be factor times larger
        largest = MAX_PLANE * (predictor.factor if isinstance(predictor, BinnedPredictor) else 1)
        multiples = predictor.size_multiple[1:]
        ty, tx = (_plane_tile(n, overlap, m, largest) for n, m in zip((ny, nx), multiples, strict=True))
    size = []
    for t, n, m in zip((tz, ty, tx), shape, predictor.size_multiple, strict=True):
        size.append(min(_round_up(t, m), _round_up(n, m)))
    return tuple(size)  # type: ignore[return-value]


def plan_tiling(
    shape: tuple[int, int, int],
    predictor: Predictor,
    tile: tuple[int, ...] | None,
    overlap: float,
    overlap_z: float | None,
) -> Tiling:
    """The tile grid :func:`segment` (and the Dask path) uses for a volume."""
    overlaps = (DEFAULT_OVERLAP_Z if overlap_z is None else overlap_z, overlap, overlap)
    return Tiling.build(
        shape, choose_tile(shape, predictor, tile, overlap), overlaps, predictor.size_multiple
    )


def _pad_to(block: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Pad a tile cut at the volume's end to full size (reflect, like the networks' own padding)."""
    pads = [(0, t - b) for b, t in zip(block.shape, shape, strict=True)]
    if not any(p for _, p in pads):
        return block
    mode = "reflect" if all(p < b for (_, p), b in zip(pads, block.shape, strict=True)) else "edge"
    return np.pad(block, pads, mode=mode)


def iter_logits(
    volume: Volume,
    predictor: Predictor,
    tiling: Tiling,
    window: tuple[float, float],
    *,
    batch_size: int = 1,
    z_range: tuple[int, int] | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(z0, z1, logits)`` for consecutive finished slabs of the volume (whose voxels are
    finite: wrap it in a :class:`~dendriteseg.preprocess.FiniteVolume`).

    ``logits`` are the blended dendrite log-odds of slices ``z0:z1``. With
    ``z_range`` only the slabs inside that range are computed and yielded,
    bit-identical to the same slices of a run over the whole volume (the
    same tiles, batches and summation order), which is what lets blocks be
    computed on different machines.
    """
    nz, ny, nx = volume.shape
    tz, ty, tx = tiling.tile
    c0, c1 = z_range if z_range else (0, nz)
    rows = [s for s in tiling.z.starts if s < c1 and s + tz > c0]
    if not rows:
        return
    weights = tiling.tile_weights()
    plane_total = tiling.plane_total()
    plane_starts = tiling.plane_starts()
    lo, hi = window
    scale = 1.0 / (hi - lo)

    def read_row(z: int) -> np.ndarray:
        data = np.asarray(volume.read(z, min(z + tz, nz)), np.float32)  # finite: a FiniteVolume
        return (data - lo) * scale

    acc = np.zeros((tz, ny, nx), np.float32)
    base = rows[0]  # slice index of acc[0]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dendriteseg-read") as pool:
        pending = pool.submit(read_row, rows[0])
        for i, zs in enumerate(rows):
            slab = pending.result()
            if i + 1 < len(rows):
                pending = pool.submit(read_row, rows[i + 1])
            off = zs - base
            for b0 in range(0, len(plane_starts), batch_size):
                group = plane_starts[b0 : b0 + batch_size]
                batch = np.stack([_pad_to(slab[:, y : y + ty, x : x + tx], (tz, ty, tx)) for y, x in group])
                out = np.asarray(predictor(batch), np.float32)
                if out.shape != batch.shape:
                    raise InputError(f"predictor returned shape {out.shape} for a batch of {batch.shape}")
                for (y, x), logits in zip(group, out, strict=True):
                    dz, dy, dx = min(tz, nz - zs), min(ty, ny - y), min(tx, nx - x)
                    acc[off : off + dz, y : y + dy, x : x + dx] += (logits * weights)[:dz, :dy, :dx]
            done = rows[i + 1] if i + 1 < len(rows) else min(zs + tz, nz)
            k = done - base
            finished = acc[:k] / (tiling.z.total[base:done, None, None] * plane_total[None])
            e0, e1 = max(base, c0), min(done, c1)
            if e1 > e0:
                yield e0, e1, finished[e0 - base : e1 - base]
            acc[: tz - k] = acc[k:]
            acc[tz - k :] = 0.0
            base = done


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)
