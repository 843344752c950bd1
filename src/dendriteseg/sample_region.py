"""Where the sample is in a slice: a safety net that keeps dendrites inside it.

Real reconstructions have things around the sample that a model may take
for dendrites: a container wall, packing material, oxide skin, or an
exterior masked to a constant grey. :func:`detect_sample` finds the sample
in a few evenly spaced slices (averaged, about 256 pixels a side):

1. an exterior masked to one constant value (any grey): the pixels of the
   most frequent exact value that touch the border, if they are at least
   ``MIN_EXTERIOR`` of the slice; the sample is everything else;
2. otherwise the bright region: a Gaussian-smoothed slice thresholded by
   Otsu (the melt is the brightest large phase), its connected part that
   reaches the slice's central disc, closed by a disc of ``CLOSE`` of the
   slice side and holes filled (dendrites are darker: those cut by the
   sample's edge leave narrow notches, which this fills, while the broad
   shallow dents of an irregular sample edge stay outside; a convex hull
   took those in, and models call the dark gap there dendrite), if it
   covers at least ``MIN_COVER`` of the slice and is brighter than the rest
   by ``MIN_CONTRAST``;
3. the region is grown by ``MARGIN`` of the slice side, and refused (no
   mask) when it covers more than ``MAX_COVER`` of the slice or its edge
   runs along the slice's border: a scan cropped inside the sample has no
   outside.

The result is a 2D mask applied to every slice (samples are cylinders
along z). It is a net under a model that should not need it, not a
substitute: it is logged, and ``--sample-mask none`` turns it off or a
file gives one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from dendriteseg.errors import InputError
from dendriteseg.preprocess import sample_slices

log = logging.getLogger(__name__)

SIDE = 256  # detection runs on about this many pixels a side
MIN_EXTERIOR = 0.05  # a constant exterior covers at least this share of the slice
MAX_COVER = 0.9  # a region larger than this share of the slice is no sample boundary
MIN_COVER = 0.1  # a bright region smaller than this share is no sample (noise, a bright grain)
MIN_CONTRAST = 0.15  # the bright region's mean above the rest's, in units of the 1st-99th percentile range
CLOSE = 0.05  # notches narrower than twice this share of the slice side are filled
MARGIN = 0.01  # the region grows by this share of the slice side
BORDER_TOUCH = 0.05  # a region whose edge runs along more than this share of the border is a crop


@dataclass
class SampleRegion:
    """A detected (or given) sample region: ``mask`` (y, x), and how it was found."""

    mask: np.ndarray
    how: str

    @property
    def share(self) -> float:
        return float(self.mask.mean())

    def describe(self) -> str:
        return (
            f"sample region ({self.how}): {100 * self.share:.1f} % of the slice, nothing dendrite outside it"
        )


def _mean_slice(volume: Any, count: int = 8) -> np.ndarray:
    stack = sample_slices(volume, count)
    return np.nanmean(np.where(np.isfinite(stack), stack, np.nan), axis=0)


def _constant_exterior(image: np.ndarray) -> np.ndarray | None:
    """Pixels of the most frequent exact value that touch the border, when they are many."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return None
    values, counts = np.unique(finite, return_counts=True)
    value = values[np.argmax(counts)]
    same = image == value
    if same.mean() < MIN_EXTERIOR:
        return None
    labels, _ = ndimage.label(same)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    exterior = np.isin(labels, border[border > 0])
    return exterior if exterior.mean() >= MIN_EXTERIOR else None


def _bright_region(image: np.ndarray) -> np.ndarray | None:
    from skimage.filters import threshold_otsu
    from skimage.morphology import disk

    finite = np.isfinite(image)
    if not finite.any():
        return None
    lo, hi = np.percentile(image[finite], (1, 99))
    norm = np.clip((np.where(finite, image, lo) - lo) / max(hi - lo, 1e-12), 0, 1)
    smooth = ndimage.gaussian_filter(norm, 1.0)
    bright = ndimage.binary_opening(smooth > threshold_otsu(smooth), disk(1))
    labels, count = ndimage.label(bright)
    if count == 0:
        return None
    ny, nx = image.shape
    yy, xx = np.ogrid[:ny, :nx]
    central = (yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2 <= (0.1 * min(ny, nx)) ** 2
    touching = np.unique(labels[central & bright])
    if touching.size == 0:
        return None
    sizes = ndimage.sum(bright, labels, touching)
    region = _close(labels == touching[int(np.argmax(sizes))], max(1, int(round(CLOSE * min(ny, nx)))))
    if (
        region.mean() < MIN_COVER
        or region.all()
        or smooth[region].mean() - smooth[~region].mean() < MIN_CONTRAST
    ):
        return None
    return region


def _close(region: np.ndarray, radius: int) -> np.ndarray:
    """``region`` closed by a disc of ``radius`` (padded: the slice edge cuts nothing), holes filled."""
    from skimage.morphology import disk

    pad = radius + 1
    closed = ndimage.binary_closing(np.pad(region, pad), disk(radius))[pad:-pad, pad:-pad]
    return ndimage.binary_fill_holes(closed)


def _along_border(region: np.ndarray) -> float:
    edge = np.concatenate([region[0], region[-1], region[:, 0], region[:, -1]])
    return float(edge.mean())


def detect_sample(volume: Any) -> SampleRegion | None:
    """The sample's region in ``volume`` (a Volume or array, 2D or 3D); None where none is found.

    See the module notes for the rules.
    """
    image = _mean_slice(volume)
    ny, nx = image.shape
    step = max(1, int(round(max(ny, nx) / SIDE)))
    small = image[step // 2 :: step, step // 2 :: step] if step > 1 else image
    exterior = _constant_exterior(small)
    how = "constant exterior"
    if exterior is not None:
        region = ndimage.binary_fill_holes(~exterior)
    else:
        region, how = _bright_region(small), "bright region around the centre"
    if region is None or not region.any():
        return None
    if region.mean() > MAX_COVER or _along_border(region) > BORDER_TOUCH:
        return None  # no outside to exclude: cropped inside the sample, or no sample boundary in view
    grow = max(1, int(round(MARGIN * min(small.shape))))
    region = ndimage.binary_dilation(region, iterations=grow)
    full = np.repeat(np.repeat(region, step, axis=0), step, axis=1)
    full = np.pad(full, ((0, max(0, ny - full.shape[0])), (0, max(0, nx - full.shape[1]))), mode="edge")
    return SampleRegion(full[:ny, :nx], how)


def sample_region_for(volume: Any, spec: Any) -> SampleRegion | None:
    """The region a ``--sample-mask`` setting asks for: "auto" (detect), "none", a file or an array."""
    if spec is None or (isinstance(spec, str) and spec == "none"):
        return None
    if isinstance(spec, str) and spec == "auto":
        return detect_sample(volume)
    from dendriteseg.io import as_volume
    from dendriteseg.io.labels import as_binary_labels

    with as_volume(spec, "sample mask") as given:
        mask = as_binary_labels(given.read(), given.source).astype(bool)
    shape = tuple(volume.shape[-2:])
    if mask.ndim == 3:
        if mask.shape[0] != 1 and tuple(mask.shape) != tuple(volume.shape):
            raise InputError(f"{spec}: sample mask of shape {mask.shape} does not fit volume {volume.shape}")
        mask = mask.any(axis=0) if mask.shape[0] == 1 else mask
    if mask.shape[-2:] != shape:
        raise InputError(f"{spec}: sample mask of shape {mask.shape} does not fit slices of {shape}")
    return SampleRegion(mask, f"from {spec}")
