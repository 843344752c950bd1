"""``--scale auto``: the binning at which the network is surest of itself.

A network knows the feature sizes and pixel noise of its training scans.
A scan much finer than those (petals of 40-80 px, grain-sized pixel noise,
broad ring bands) makes it call texture dendrite, in unsure stripes; binned
to the scale it knows, the same scan comes out clean. Which binning that is
can be read off the network itself: :func:`choose_scale` segments a probe
(the volume's central ``PROBE_DEPTH`` slices, whole in-plane; less where that
would cost too much, below) at each
candidate binning and keeps the one whose dendrite probabilities have the
lowest mean binary entropy inside the sample region (test-time selection by
predictive entropy). A binning replaces 1 only where it lowers that entropy
by at least ``MIN_GAIN``, and only binnings that leave at least
``MIN_BINNED_SIDE`` pixels a side are tried: scans as small as the training
patches are never binned.

Binning must not lose what it was meant to see better: a binning ``s`` is
only allowed where the dendrite it finds (p > 0.5, specks left out) is at least
``WIDTH_PER_BIN`` x ``s`` pixels wide (the median of twice the distance to
its edge along its skeleton; measured binned, where the smoothing widens
it). Thin arms of a few pixels, binned 2 x, turn into blobs or vanish, and
so do small or faint dendrites only a little wider (``benchmarks/real_like.py``,
rows under 1 % solid and faint); arms tens of pixels wide, binned 4 x, keep
their shape but round their tips, which the next coarser binning that the
width allows (3 x) keeps sharper (``benchmarks/scale_auto_cost.py``).
The binned look alone can be fooled: around a thin arm the binned network
may call a blob wide enough to pass (one small thin dendrite in a large
melt: ``benchmarks/unseen_generator.py --early``). So the probes'
segmentations are compared too: of the dendrite a binning calls, the
unbinned look must call at least ``MIN_UNBINNED_SHARE`` in the same place
(:func:`unbinned_share`). A binning that sees a large dendrite better finds
it where the unbinned look finds it, holes and texture aside; one that
draws blobs around thin arms calls several times what is there.

The probe's cost is bounded (:func:`probe_plan`): the coarsest binning sees
the whole probe; where whole planes at every binning would cost more than
``PROBE_SHARE`` of a run at the coarsest binning (the cheapest run the probe
can choose: a single large slice, a deep volume of large planes), the finer
binnings see only a crop (at least ``MIN_CROP`` a side, with ``CONTEXT``
binned pixels of context) centred where the coarse look found the most
dendrite and doubt, and the binnings are compared on that crop, except
that the unbinned look (``s``^2 times the cost of binning ``s`` a pixel)
sees the crop's ``UNBINNED_SIDE`` centre only, and whether binning helps at
all is judged there; where even
the smallest crop would cost more, the probe is one tile deep instead of
``PROBE_DEPTH`` slices; where nothing fits (a single large slice, a shallow
volume) the finer binnings see a ``FALLBACK_CROP`` crop: a stable choice
matters more there than the bound.
Where the probe is the whole volume, its logits at the binning chosen are
the run's (:func:`dendriteseg.infer.segment.segment` reuses them when it
cuts the default tiles): no second pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from dendriteseg.infer.predictor import BinnedPredictor, Predictor
from dendriteseg.infer.settings import DEFAULT_OVERLAP, DEFAULT_OVERLAP_Z
from dendriteseg.infer.stream import iter_logits, plan_tiling, sigmoid
from dendriteseg.infer.tiling import tile_starts
from dendriteseg.io import Volume, as_volume
from dendriteseg.sample_region import SampleRegion

log = logging.getLogger(__name__)

CANDIDATES = (1, 2, 3, 4)
MIN_BINNED_SIDE = 96  # pixels a side left after binning: the shipped models' training patch width
PROBE_DEPTH = 8  # central slices segmented per candidate
MIN_GAIN = 0.05  # relative drop in mean entropy that a binning must bring over none
WIDTH_PER_BIN = 4.5  # a binning s needs dendrite at least this many times s pixels wide (measured binned)
MIN_UNBINNED_SHARE = 0.6  # and the unbinned look must call this share of what it calls, in the same place
SPECK = 12  # pixels (x binning^2): pieces this small are noise, not arms, and are not measured
PROBE_SHARE = 0.1  # the most of a run at the coarsest binning the probe may cost before it is cropped
MIN_CROP = 288  # pixels a side: the smallest crop the finer binnings are probed on within the bound (3 x 96)
FALLBACK_CROP = 384  # pixels a side: their crop where nothing fits the bound (smaller ones change the choice)
UNBINNED_SIDE = 192  # pixels a side: on a crop larger than this, the unbinned look sees its centre only
CONTEXT = 24  # binned pixels of context around the crop, not measured (the network's reach)
ALIGN = 12  # crops start on multiples of every candidate binning
REUSE_VOXELS = 64 * 2**20  # logits kept for the run when the probe is the whole volume, up to this size


@dataclass
class ScaleChoice:
    """The binning chosen, and what was measured at each candidate: the mean entropy (nats per voxel),
    the median width (px) of the confident dendrite (NaN where there is none) and, per binning, the
    share of its dendrite that the unbinned look finds too (:func:`unbinned_share`)."""

    scale: int
    entropies: dict[int, float] = field(default_factory=dict)
    widths: dict[int, float] = field(default_factory=dict)
    shares: dict[int, float] = field(default_factory=dict)
    crop: tuple[int, int, int, int] | None = None  # (y0, y1, x0, x1) the binnings were compared on
    logits: np.ndarray | None = field(default=None, repr=False)  # the probe's, at ``scale``, when
    # the probe was the whole volume (default tiles): a run with those tiles reuses them

    def describe(self) -> str:
        measured = ", ".join(f"{s}: {h:.4f}" for s, h in self.entropies.items())
        widths = ", ".join(f"{s}: {w:.0f} px" for s, w in self.widths.items() if np.isfinite(w))
        widths = widths or "none"
        shares = "".join(f", {s}: {v:.2f}" for s, v in self.shares.items() if np.isfinite(v))
        shares = f"; share of it found unbinned{shares[1:]}" if shares else ""
        where = "" if self.crop is None else " in y {}:{}, x {}:{}".format(*self.crop)
        if not self.entropies:
            return f"scale {self.scale} (auto; planes too small to bin, nothing probed)"
        return (
            f"scale {self.scale} (auto; mean entropy per binning{where} {measured}; dendrite widths {widths}"
            f"{shares})"
        )


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


def probe_logits(
    probe: np.ndarray, predictor: Predictor, window: tuple[float, float], scale: int
) -> np.ndarray:
    """Dendrite logits of ``probe`` (z, y, x; finite) with ``predictor`` seeing ``scale`` x ``scale``
    binned pixels, through the streaming core with its default tiles (those of a whole run over a
    volume of the probe's shape, which is what lets such a run reuse them)."""
    seen = BinnedPredictor(predictor, scale) if scale > 1 else predictor
    volume = as_volume(probe)
    tiling = plan_tiling(volume.shape, seen, None, DEFAULT_OVERLAP, None)
    out = np.empty(volume.shape, np.float32)
    for z0, z1, logits in iter_logits(volume, seen, tiling, window):
        out[z0:z1] = logits
    return out


def probe_probabilities(
    probe: np.ndarray, predictor: Predictor, window: tuple[float, float], scale: int
) -> np.ndarray:
    """Dendrite probabilities of ``probe`` (see :func:`probe_logits`)."""
    return sigmoid(probe_logits(probe, predictor, window, scale))


def probe_crop(coarse: np.ndarray, mask: np.ndarray | None, side: int) -> tuple[slice, slice]:
    """The ``side`` x ``side`` in-plane window (aligned to every candidate binning) where the coarse
    probe's (z, y, x) dendrite probabilities hold the most dendrite and doubt inside ``mask``: where
    the binnings can disagree. The whole plane where it is no larger."""
    from scipy import ndimage

    ny, nx = coarse.shape[-2:]
    if max(ny, nx) <= side:
        return slice(0, ny), slice(0, nx)
    p = np.clip(coarse.max(axis=0).astype(np.float64), 1e-6, 1 - 1e-6)
    interest = p - (p * np.log(p) + (1 - p) * np.log1p(-p))  # dendrite plus binary entropy
    if mask is not None:
        interest = interest * np.broadcast_to(mask, interest.shape)
    sy, sx = min(side, ny), min(side, nx)
    mean = ndimage.uniform_filter(interest, (sy, sx), mode="constant")
    half_y, half_x = sy // 2, sx // 2
    inner = mean[half_y : ny - (sy - half_y) + 1, half_x : nx - (sx - half_x) + 1]
    y0, x0 = (int(v) for v in np.unravel_index(int(np.argmax(inner)), inner.shape))
    held = interest[y0 : y0 + sy, x0 : x0 + sx]  # centred on what the best window holds
    if held.sum() > 0:
        cy, cx = ndimage.center_of_mass(held)
        y0 = int(np.clip(y0 + cy - sy / 2, 0, ny - sy))
        x0 = int(np.clip(x0 + cx - sx / 2, 0, nx - sx))
    y0, x0 = round(y0 / ALIGN) * ALIGN, round(x0 / ALIGN) * ALIGN
    y0, x0 = min(y0, (ny - sy) // ALIGN * ALIGN), min(x0, (nx - sx) // ALIGN * ALIGN)
    return slice(y0, min(y0 + sy, ny)), slice(x0, min(x0 + sx, nx))


def _centre(ys: slice, xs: slice, side: int) -> tuple[slice, slice]:
    """The central ``side`` x ``side`` part of a window (aligned to every candidate binning), or all of it."""
    out = []
    for sl in (ys, xs):
        length = sl.stop - sl.start
        if length <= side:
            out.append(sl)
            continue
        start = sl.start + (length - side) // 2 // ALIGN * ALIGN
        out.append(slice(start, start + side))
    return out[0], out[1]


def unbinned_share(unbinned: np.ndarray, binned: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Of the dendrite a binning calls (probabilities ``binned`` > 0.5, inside ``mask`` (y, x) where
    given), the share that the unbinned look (``unbinned``, the same window) calls too; NaN where the
    binning calls none."""
    called = binned > 0.5
    if mask is not None:
        called &= np.broadcast_to(mask, called.shape[-2:])
    if not called.any():
        return float("nan")
    return float((called & (unbinned > 0.5)).sum() / called.sum())


def _keeps_what_it_finds(widths: dict[int, float], shares: dict[int, float], scale: int) -> bool:
    """A binning keeps its dendrite wide enough to bin and does not inflate what the unbinned look
    finds (module notes); or there is none to keep (none at the binning nor at full resolution)."""
    if np.isnan(widths[scale]):
        return bool(np.isnan(widths[1]))
    inflates = np.isfinite(shares[scale]) and shares[scale] < MIN_UNBINNED_SHARE
    return widths[scale] >= WIDTH_PER_BIN * scale and not inflates


def choose_scale(
    volume: Volume, predictor: Predictor, window: tuple[float, float], region: SampleRegion | None = None
) -> ScaleChoice:
    """The binning for ``predictor`` (unbinned) on ``volume`` (z-y-x); see the module notes.

    ``window`` is the grey window of the whole volume, ``region`` where the sample is (or None).
    """
    scales = candidates_for(volume.shape)
    if len(scales) == 1:
        return ScaleChoice(1)
    depth, side = probe_plan(volume.shape, int(predictor.tile_depth or 1), scales)
    z0 = (int(volume.shape[0]) - depth) // 2
    probe = np.asarray(volume.read(z0, z0 + depth), np.float32)
    lo, hi = window  # non-finite voxels read as the window's ends, as the whole run reads them (quietly here)
    probe = np.nan_to_num(probe, nan=lo, posinf=hi, neginf=lo)
    mask = None if region is None else region.mask
    mask2d = None if mask is None else (mask if mask.ndim == 2 else mask[z0 : z0 + depth].any(axis=0))
    whole = depth == int(volume.shape[0])  # the probe is the volume: its logits can be the run's
    coarsest = max(scales)
    coarse = probe_logits(probe, predictor, window, coarsest)
    logits = {coarsest: coarse}
    ys, xs = probe_crop(sigmoid(coarse), mask2d, side)
    cropped = (ys.stop - ys.start, xs.stop - xs.start) != probe.shape[-2:]
    # the unbinned look costs s^2 times a binned one a pixel: on a large crop it sees the crop's centre,
    # and whether binning helps at all is judged there (every binning's probabilities cover it)
    centre = _centre(ys, xs, UNBINNED_SIDE) if cropped else (ys, xs)
    entropies, widths, seen = {}, {}, {}
    for s in scales:
        ws, wx = centre if s == 1 else (ys, xs)
        if s == coarsest:
            probabilities = sigmoid(coarse)[:, ws, wx]
        elif cropped:  # the window with a margin of context around it, measured without the margin
            m = CONTEXT * s // ALIGN * ALIGN
            y0, x0 = max(ws.start - m, 0), max(wx.start - m, 0)
            y1, x1 = min(ws.stop + m, probe.shape[1]), min(wx.stop + m, probe.shape[2])
            around = probe_logits(probe[:, y0:y1, x0:x1], predictor, window, s)
            probabilities = sigmoid(around[:, ws.start - y0 : ws.stop - y0, wx.start - x0 : wx.stop - x0])
        else:
            logits[s] = probe_logits(probe, predictor, window, s)
            probabilities = sigmoid(logits[s])
        inside = None if mask2d is None else mask2d[ws, wx]
        entropies[s] = mean_entropy(probabilities, inside)
        widths[s] = dendrite_width(probabilities, inside, s)
        seen[s] = probabilities
    cy, cx = (slice(c.start - w.start, c.stop - w.start) for c, w in zip(centre, (ys, xs), strict=True))
    centre_inside = None if mask2d is None else mask2d[centre]
    shares = {s: unbinned_share(seen[1], seen[s][:, cy, cx], centre_inside) for s in scales if s > 1}
    allowed = [s for s in scales if s == 1 or _keeps_what_it_finds(widths, shares, s)]
    best = min(allowed, key=lambda s: (entropies[s], s))
    # binning must beat the unbinned look where that look was: the centre (the whole crop where uncropped)
    if mean_entropy(seen[best][:, cy, cx], centre_inside) > (1 - MIN_GAIN) * entropies[1]:
        best = 1
    crop = None if not cropped else (ys.start, ys.stop, xs.start, xs.stop)
    reuse = logits.get(best) if whole and best in logits and logits[best].size <= REUSE_VOXELS else None
    choice = ScaleChoice(best, entropies, widths, shares, crop=crop, logits=reuse)
    log.info("%s: %s", volume.source, choice.describe())
    return choice


def probe_is_whole(shape: tuple[int, ...], tile_depth: int = 1) -> bool:
    """Whether the probe of a volume of ``shape`` sees all of it (every slice, whole planes, at most
    ``REUSE_VOXELS``): then its logits at the binning chosen are the run's, and it runs as the run does."""
    scales = candidates_for(shape)
    if len(scales) == 1:
        return False
    depth, side = probe_plan(shape, tile_depth, scales)
    nz, ny, nx = (int(v) for v in shape[-3:])
    return depth == nz and max(ny, nx) <= side and nz * ny * nx <= REUSE_VOXELS


def _slices_seen(depth: int, tile_depth: int) -> int:
    """Slices the network processes for ``depth`` slices in tiles ``tile_depth`` deep (consecutive in z,
    as a run's default tiles are; a volume shallower than one tile is padded to it)."""
    if tile_depth <= 1:
        return depth
    return len(tile_starts(depth, tile_depth, DEFAULT_OVERLAP_Z)) * tile_depth


def probe_work(
    shape: tuple[int, ...], depth: int, side: int, scales: list[int] | tuple[int, ...], tile_depth: int = 1
) -> float:
    """Network voxels a probe of ``depth`` slices costs: the coarsest binning on whole planes, the
    finer ones on a ``side`` x ``side`` crop (the unbinned look on its ``UNBINNED_SIDE`` centre where
    that is smaller) with their ``CONTEXT`` margin."""
    ny, nx = (int(s) for s in shape[-2:])
    coarsest = max(scales)
    cropped = side < max(ny, nx)
    per_pixel = 1 / coarsest**2 * ny * nx
    for s in scales:
        if s != coarsest:
            seen = min(side, UNBINNED_SIDE) if s == 1 and cropped else side
            margin = 2 * (CONTEXT * s // ALIGN * ALIGN)
            per_pixel += min(seen + margin, ny) * min(seen + margin, nx) / s**2
    return _slices_seen(depth, tile_depth) * per_pixel


def probe_plan(
    shape: tuple[int, ...], tile_depth: int = 1, scales: list[int] | tuple[int, ...] = CANDIDATES
) -> tuple[int, int]:
    """How much of a volume of ``shape`` the probe looks at: (slices, in-plane side of the finer
    binnings' crop). The probe may cost ``PROBE_SHARE`` of a run at the coarsest binning of ``scales``
    (the cheapest run it can choose; both counted in network voxels, tiles ``tile_depth`` deep).
    It takes ``PROBE_DEPTH`` central slices (at least one tile), on whole planes or on the largest
    crop that fits (at least ``MIN_CROP``, aligned to every binning); else one tile's depth, whole or
    cropped, where that fits; where nothing fits (a single slice, a shallow volume), ``PROBE_DEPTH``
    slices on a ``FALLBACK_CROP`` crop, or on whole planes where that crop would hold half the plane."""
    nz, ny, nx = (int(s) for s in shape[-3:])
    budget = PROBE_SHARE * _slices_seen(nz, tile_depth) * ny * nx / max(scales) ** 2
    deep, thin = min(nz, max(PROBE_DEPTH, tile_depth)), min(nz, max(1, tile_depth))
    for depth in (deep, thin):
        side = max(ny, nx)
        while side > MIN_CROP and probe_work(shape, depth, side, scales, tile_depth) > budget:
            side = (side - 1) // ALIGN * ALIGN
        if probe_work(shape, depth, side, scales, tile_depth) <= budget:
            return depth, side
    return deep, max(ny, nx) if FALLBACK_CROP * FALLBACK_CROP * 2 > ny * nx else FALLBACK_CROP
