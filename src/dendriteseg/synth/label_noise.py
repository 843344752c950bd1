"""Labels that are wrong the way an older 2D CNN's are.

The paper pretrains on 1750 slices labelled by an earlier 2D network and
fine-tunes on few exact ones. ``corrupt_labels`` turns an exact label into
such a noisy one, slice by slice: boundaries shifted by a pixel or two in
smooth random patches, neighbouring arms merged, thin arms missed, and
speckle; optionally (``bias``) every boundary moved the same way first, as a
segmentation that consistently over- or under-segments (a threshold set a
little off, an older network trained on such labels) leaves it: an error
that training on many noisy labels learns rather than averages away.
``label_agreement`` says how far the result is from the truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from dendriteseg.rng import Rng, as_generator
from dendriteseg.synth.structure import _smooth_field


@dataclass(frozen=True)
class LabelNoise:
    """Strength of each kind of label error (0 turns it off)."""

    shift: int = 1  # max boundary shift in pixels
    shift_fraction: float = 0.6  # share of the area where boundaries shift
    merge: int = 2  # closing radius that joins near neighbours
    merge_fraction: float = 0.3
    miss_thin: int = 2  # opening radius that loses thin arms
    miss_fraction: float = 0.3
    speckle: float = 2e-4  # speckles per pixel
    patch_scale: float = 24.0  # size (pixels) of the random patches
    bias: int = 0  # pixels every boundary moves first: > 0 grows the dendrite, < 0 shrinks it


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return yy * yy + xx * xx <= radius * radius


def _patches(shape: tuple[int, ...], fraction: float, scale: float, gen: np.random.Generator) -> np.ndarray:
    """Random smooth patches covering about ``fraction`` of the slice."""
    if fraction <= 0:
        return np.zeros(shape, bool)
    field = _smooth_field(shape, scale, gen)
    return field > np.quantile(field, 1 - fraction)


def corrupt_labels(label: np.ndarray, *, noise: LabelNoise | None = None, rng: Rng = None) -> np.ndarray:
    """A noisy copy of a uint8 label volume (z, y, x), corrupted per z-slice.

    Examples
    --------
    >>> lab = np.zeros((2, 40, 40), np.uint8); lab[:, 10:30, 10:30] = 1
    >>> noisy = corrupt_labels(lab, rng=0)
    >>> noisy.shape, noisy.dtype, bool((noisy != lab).any())
    ((2, 40, 40), dtype('uint8'), True)
    """
    gen = as_generator(rng)
    noise = noise or LabelNoise()
    lab = np.asarray(label) > 0
    squeeze = lab.ndim == 2
    if squeeze:
        lab = lab[None]
    out = np.empty(lab.shape, np.uint8)
    for z, m in enumerate(lab):
        shape = m.shape

        cur = m.copy()
        if noise.bias > 0:
            cur = ndimage.binary_dilation(cur, iterations=noise.bias)
        elif noise.bias < 0:
            cur = ndimage.binary_erosion(cur, iterations=-noise.bias, border_value=1)
        if noise.shift > 0 and noise.shift_fraction > 0:
            field = _smooth_field(shape, noise.patch_scale, gen)
            for r in range(1, noise.shift + 1):
                grow = field > 1 - noise.shift_fraction * r / noise.shift
                shrink = field < -1 + noise.shift_fraction * r / noise.shift
                cur = np.where(grow, ndimage.binary_dilation(cur), cur)
                cur = np.where(shrink, ndimage.binary_erosion(cur, border_value=1), cur)
        if noise.merge > 0:
            closed = ndimage.binary_closing(cur, _disk(noise.merge))
            cur = np.where(_patches(shape, noise.merge_fraction, noise.patch_scale, gen), closed, cur)
        if noise.miss_thin > 0:
            opened = ndimage.binary_opening(cur, _disk(noise.miss_thin))
            cur = np.where(_patches(shape, noise.miss_fraction, noise.patch_scale, gen), opened, cur)
        if noise.speckle > 0:
            n = gen.poisson(noise.speckle * m.size)
            if n:
                ys, xs = gen.integers(0, shape[0], n), gen.integers(0, shape[1], n)
                seeds = np.zeros(shape, bool)
                seeds[ys, xs] = True
                # 1-pixel or cross-shaped specks (iterations=0 would mean "until stable")
                blobs = ndimage.binary_dilation(seeds) if gen.random() < 0.5 else seeds
                cur = cur ^ blobs
        out[z] = cur
    return out[0] if squeeze else out


def label_agreement(noisy: np.ndarray, exact: np.ndarray) -> dict[str, Any]:
    """IoU and boundary scores of noisy labels against the exact ones."""
    from dendriteseg.metrics import score_slices, summarize

    result = summarize(score_slices(noisy, exact))
    return {"iou": result.iou, "bf1": result.bf1, "bde": result.bde}
