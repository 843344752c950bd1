"""``--scale auto``: the binning at which the network is surest of itself.

A network knows the feature sizes and pixel noise of its training scans.
A scan much finer than those (petals of 40-80 px, grain-sized pixel noise,
broad ring bands) makes it call texture dendrite, in unsure stripes; binned
to the scale it knows, the same scan comes out clean. Which binning that is
can be read off the network itself: :func:`choose_scale` segments a probe
(the volume's central ``PROBE_DEPTH`` slices, whole in-plane) at each
candidate binning and keeps the one whose dendrite probabilities have the
lowest mean binary entropy inside the sample region (test-time selection by
predictive entropy). A binning replaces 1 only where it lowers that entropy
by at least ``MIN_GAIN``, and only binnings that leave at least
``MIN_BINNED_SIDE`` pixels a side are tried: scans as small as the training
patches are never binned.

Binning must not lose what it was meant to see better: a binning ``s`` is
only allowed where the dendrite it finds (p > 0.5, specks left out) is at least
``WIDTH_PER_BIN`` x ``s`` pixels wide (the median of twice the distance to
its edge along its skeleton). Thin arms of a few pixels, binned 2 x, turn
into blobs or vanish; arms tens of pixels wide, binned 4 x, keep their
shape but round their tips, which the next coarser binning that the width
allows (3 x) keeps sharper (``benchmarks/scale_auto_cost.py``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from dendriteseg.infer.predictor import BinnedPredictor, Predictor
from dendriteseg.infer.settings import DEFAULT_OVERLAP
from dendriteseg.infer.stream import iter_logits, plan_tiling, sigmoid
from dendriteseg.io import Volume, as_volume
from dendriteseg.sample_region import SampleRegion

log = logging.getLogger(__name__)

CANDIDATES = (1, 2, 3, 4)
MIN_BINNED_SIDE = 96  # pixels a side left after binning: the shipped models' training patch width
PROBE_DEPTH = 8  # central slices segmented per candidate
MIN_GAIN = 0.05  # relative drop in mean entropy that a binning must bring over none
WIDTH_PER_BIN = 3.5  # a binning s needs dendrite at least this many times s pixels wide
SPECK = 12  # pixels (x binning^2): pieces this small are noise, not arms, and are not measured


@dataclass
class ScaleChoice:
    """The binning chosen, and what was measured at each candidate: the mean entropy (nats per voxel)
    and the median width (px) of the confident dendrite (NaN where there is none)."""

    scale: int
    entropies: dict[int, float] = field(default_factory=dict)
    widths: dict[int, float] = field(default_factory=dict)

    def describe(self) -> str:
        measured = ", ".join(f"{s}: {h:.4f}" for s, h in self.entropies.items())
        widths = ", ".join(f"{s}: {w:.0f} px" for s, w in self.widths.items() if np.isfinite(w))
        widths = widths or "none"
        return f"scale {self.scale} (auto; mean entropy per binning {measured}; dendrite widths {widths})"


def candidates_for(shape: tuple[int, ...]) -> list[int]:
    """The binnings worth trying on slices of ``shape``'s last two sizes."""
    side = min(int(s) for s in shape[-2:])
    return [s for s in CANDIDATES if s == 1 or side // s >= MIN_BINNED_SIDE]


def mean_entropy(probabilities: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean binary entropy (nats) of dendrite probabilities, over ``mask`` (y, x) where given."""
    p = np.clip(np.asarray(probabilities, np.float64), 1e-6, 1 - 1e-6)
    h = -(p * np.log(p) + (1 - p) * np.log1p(-p))
    if mask is not None:
        h = h[..., np.broadcast_to(mask, h.shape[-2:])]
    return float(h.mean()) if h.size else 0.0


def dendrite_width(probabilities: np.ndarray, mask: np.ndarray | None = None, scale: int = 1) -> float:
    """The median width (px) of the dendrite in (z, y, x) ``probabilities``: twice the distance to
    its edge, along its in-plane skeleton, where the probabilities (smoothed over one binned pixel)
    exceed 0.5. Measured on the ``scale`` x ``scale`` binned grid (finer is below what the network
    resolves at that binning; also ``scale``^2 times cheaper), given in full-resolution pixels;
    pieces smaller than ``SPECK`` binned pixels are left out; NaN where there is none."""
    from scipy import ndimage
    from skimage.morphology import skeletonize

    p = np.asarray(probabilities, np.float32)
    z, y, x = p.shape
    y, x = y // scale * scale, x // scale * scale
    binned = p[:, :y, :x].reshape(z, y // scale, scale, x // scale, scale).mean(axis=(2, 4))
    inside = None if mask is None else mask[:y:scale, :x:scale]
    widths = []
    for plane in binned:
        found = ndimage.gaussian_filter(plane, 1.0) > 0.5  # smoothed over one binned pixel
        if inside is not None:
            found &= inside
        pieces, count = ndimage.label(found)
        if count:
            sizes = np.bincount(pieces.ravel())
            found &= (sizes >= SPECK)[pieces] & (pieces > 0)
        if found.any():
            widths.append(2 * ndimage.distance_transform_edt(found)[skeletonize(found)])
    values = np.concatenate(widths) if widths else np.zeros(0)
    return float(np.median(values)) * scale if values.size else float("nan")


def probe_probabilities(
    probe: np.ndarray, predictor: Predictor, window: tuple[float, float], scale: int
) -> np.ndarray:
    """Dendrite probabilities of ``probe`` (z, y, x; finite) with ``predictor`` seeing ``scale`` x
    ``scale`` binned pixels, through the streaming core with its default tiles."""
    seen = BinnedPredictor(predictor, scale) if scale > 1 else predictor
    volume = as_volume(probe)
    tiling = plan_tiling(volume.shape, seen, None, DEFAULT_OVERLAP, None)
    out = np.empty(volume.shape, np.float32)
    for z0, z1, logits in iter_logits(volume, seen, tiling, window):
        out[z0:z1] = sigmoid(logits)
    return out


def _keeps_what_it_finds(widths: dict[int, float], scale: int) -> bool:
    """A binning keeps its dendrite wide enough to bin (module notes), or there is none to keep
    (none at the binning nor at full resolution: nothing is lost)."""
    if np.isnan(widths[scale]):
        return bool(np.isnan(widths[1]))
    return widths[scale] >= WIDTH_PER_BIN * scale


def choose_scale(
    volume: Volume, predictor: Predictor, window: tuple[float, float], region: SampleRegion | None = None
) -> ScaleChoice:
    """The binning for ``predictor`` (unbinned) on ``volume`` (z-y-x); see the module notes.

    ``window`` is the grey window of the whole volume, ``region`` where the sample is (or None).
    """
    scales = candidates_for(volume.shape)
    if len(scales) == 1:
        return ScaleChoice(1)
    depth = min(int(volume.shape[0]), max(PROBE_DEPTH, int(predictor.tile_depth or 1)))
    z0 = (int(volume.shape[0]) - depth) // 2
    probe = np.asarray(volume.read(z0, z0 + depth), np.float32)
    lo, hi = window  # non-finite voxels read as the window's ends, as the whole run reads them (quietly here)
    probe = np.nan_to_num(probe, nan=lo, posinf=hi, neginf=lo)
    mask = None if region is None else region.mask
    mask2d = None if mask is None else (mask if mask.ndim == 2 else mask[z0 : z0 + depth].any(axis=0))
    entropies, widths = {}, {}
    for s in scales:
        probabilities = probe_probabilities(probe, predictor, window, s)
        entropies[s] = mean_entropy(probabilities, mask2d)
        widths[s] = dendrite_width(probabilities, mask2d, s)
    allowed = [s for s in scales if s == 1 or _keeps_what_it_finds(widths, s)]
    best = min(allowed, key=lambda s: (entropies[s], s))
    if entropies[best] > (1 - MIN_GAIN) * entropies[1]:
        best = 1
    choice = ScaleChoice(best, entropies, widths)
    log.info("%s: %s", volume.source, choice.describe())
    return choice
