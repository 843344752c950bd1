"""Labels by hysteresis: a piece of dendrite is kept only where the network is sure of some of it.

A network that meets little or nothing to find (the first scans of a
series, a slice of melt) calls blobs of noise dendrite; those blobs are
unsure all over (probabilities a little above 0.5), while a dendrite, even
a thin arm, has a core the network is sure of. So a voxel above 0.5 is
labelled dendrite only where its in-plane piece (8-connected) holds a voxel
at or above the ``hysteresis`` probability, in its own slice or at the same
(y, x) within ``REACH`` slices (hysteresis thresholding, done per slice so
that it streams: a slice's labels need the logits of ``REACH`` slices
beyond it, no more). ``benchmarks/real_like.py`` and
``benchmarks/trust_calibration.py`` measure it: scans under 1 % solid and
all-melt scans gain, the rest holds.

:func:`hysteresis_labels` turns a stream of ``(z0, z1, logits)`` slabs
(in order, contiguous) into ``(z0, z1, logits, labels)`` slabs; the
probabilities written beside the labels stay the network's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
from scipy import ndimage

REACH = 2  # slices either side whose sure voxels vouch for a piece
EIGHT = np.ones((3, 3), bool)  # in-plane connectivity of a piece


def logit(probability: float) -> float:
    return math.log(probability / (1 - probability))


def keep_sure_pieces(logits: np.ndarray, sure: np.ndarray) -> np.ndarray:
    """uint8 labels of (z, y, x) ``logits``: pieces above 0 in each slice that hold a ``sure`` voxel."""
    labels = np.zeros(logits.shape, np.uint8)
    for z, (plane, vouched) in enumerate(zip(logits, sure, strict=True)):
        found = plane > 0
        pieces, count = ndimage.label(found, structure=EIGHT)
        if not count:
            continue
        keep = np.zeros(count + 1, bool)
        keep[pieces[vouched & found]] = True  # never the background: vouched & found lies in pieces
        labels[z] = keep[pieces]
    return labels


def hysteresis_labels(
    slabs: Iterable[tuple[int, int, np.ndarray]], hysteresis: float, reach: int = REACH
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """``(z0, z1, logits)`` slabs as ``(z0, z1, logits, labels)``, labelled by hysteresis (module notes).

    ``hysteresis`` <= 0.5 labels every voxel above 0.5 (no delay). Otherwise a slab comes out once the
    ``reach`` slices after it are known (the last ones at the end), in slabs of the sizes that arrive.
    """
    if hysteresis <= 0.5:
        for z0, z1, logits in slabs:
            yield z0, z1, logits, (logits > 0).astype(np.uint8)
        return
    high = logit(hysteresis)
    held: np.ndarray | None = None  # logits of slices [start, start + len(held))
    start = emitted = 0
    for z0, _, logits in slabs:
        if held is None:
            held, start, emitted = logits, z0, z0
        elif z0 != start + len(held):
            raise ValueError(f"slabs must be contiguous: got z {z0} after {start + len(held)}")
        else:
            held = np.concatenate([held, logits])
        ready = start + len(held) - reach  # slices below this have every neighbour they need
        if ready > emitted:
            yield from _emit(held, start, emitted, ready, high, reach)
            emitted = ready
            keep_from = max(emitted - reach, start)
            held, start = held[keep_from - start :], keep_from
    if held is not None and start + len(held) > emitted:
        yield from _emit(held, start, emitted, start + len(held), high, reach)


def _emit(
    held: np.ndarray, start: int, z0: int, z1: int, high: float, reach: int
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Slices ``z0:z1`` of ``held`` (which begins at slice ``start``), labelled."""
    sure = held >= high
    if reach:
        sure = ndimage.maximum_filter1d(sure.view(np.uint8), 2 * reach + 1, axis=0, mode="constant") > 0
    a, b = z0 - start, z1 - start
    yield z0, z1, held[a:b], keep_sure_pieces(held[a:b], sure[a:b])
