"""Whether to trust a segmentation, what to label next, and the command that learns from it.

A model run on a scan unlike its training data can be wrong without any
error; the user should be told. :class:`TrustMeter` watches the logits as
they stream out (inside the sample region where there is one) and
:func:`trust_report` turns what it saw into a :class:`TrustReport`:

* ``edge band``: the share of dendrite in a band along the sample region's
  edge (``EDGE_BAND`` of its radius) against the share further in. A model
  that takes the grains of a container wall, packing or oxide skin for
  dendrite calls a ring along the edge; real dendrites are not denser there.
  It is measured on the labels as written, after
  :mod:`dendriteseg.infer.edge_rim` has dropped a thin rim along the edge:
  what it counts is a band wider than that rim.
* ``uncertainty``: the mean binary entropy (bits) of the dendrite
  probability inside the region. A model that knows what it sees is sure
  of most voxels; on scans unlike its training data it is not.
* ``small blobs``: the share of called dendrite (per slice) in pieces
  smaller than ``SMALL_BLOB`` pixels (at the network's binning): noise in the
  melt called dendrite comes as such specks; the training data's dendrites
  are larger.
* ``unsure``: the share of what the network put above 0.5 that labels by
  hysteresis (:mod:`dendriteseg.infer.hysteresis`) dropped as unsure. A
  model sure of the dendrite it finds drops little; one that half sees faint
  dendrites, or noise, drops much of it, and may then label nothing at all.
* ``rings``: the share of called dendrite (on the slices the specks are
  counted on) lying on whole circles about the slice's centre, the
  rotation axis of a reconstruction: circles of at least ``RING_MIN_RADIUS``
  of the region's radius, called all the way round (``RING_FULL``). Broad
  ring artefacts as dark as the solid come out as such; dendrites do not
  close circles about the axis, unless the sample is mostly solid (then
  every circle is full, and the measure says nothing: ``RING_MAX_SHARE``).
* ``histogram``: the share of dark phase the grey levels inside the sample
  suggest (Otsu's split where the histogram has two clear modes, none where
  it has one) against the share called. Calling far more than the dark
  phase counts only where the dark phase is what the network calls: a
  small dark mode it leaves alone is another phase (pores, common in
  castings, are darker than any solid) and says nothing about how much
  dendrite there is.

Each measure has a limit (module constants); past any of them, ``trust`` is
"low" and ``reasons`` says which and by how much. The limits were set on
scans with known answers where the model is right and wrong
(``benchmarks/trust_calibration.py`` prints how often the verdict matches
IoU < 0.70). ``label_next`` names up to three slices, the most uncertain
ones spread over the depth, and ``finetune_command`` the line that
fine-tunes on them once corrected.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from scipy import ndimage

from dendriteseg.preprocess import evenly_spaced

EDGE_BAND = 0.06  # of the region's radius: the band along its edge
EDGE_RATIO = 2.0  # dendrite share in the edge band over the share further in
EDGE_MIN_SHARE = 0.25  # ... and at least this share of the band called dendrite
UNCERTAINTY = 0.22  # bits per voxel inside the region, mean
SMALL_BLOB = 12  # pixels: pieces smaller than this (at the network's binning) are specks
SMALL_SHARE = 0.25  # share of the called dendrite in specks
SMALL_MIN_PIECES = 20  # ... counted only where there are at least this many pieces
UNSURE_SHARE = 0.15  # share of the voxels above 0.5 that hysteresis dropped ...
UNSURE_MIN = 0.0005  # ... where they are at least this share of the region
RING_SHARE = 0.1  # share of the called dendrite on whole circles about the axis ...
RING_MAX_SHARE = 0.8  # ... counted where less than this share of the region is called
RING_FULL = 0.9  # share of a circle (inside the region) called: a whole circle
RING_MIN_RADIUS = 0.15  # of the region's radius: smaller circles are closed by any dendrite there
HISTOGRAM_BIMODAL = 0.75  # Otsu's between-class share of the variance above which there are two phases
HISTOGRAM_RATIO = 3.0  # called / suggested (either way) beyond this ...
HISTOGRAM_MIN_GAP = 0.05  # ... and apart by at least this share of the region
HISTOGRAM_DARK_CALLED = 0.5  # calling more than the dark phase counts where this share of it is called
LABEL_NEXT = 3
ENTROPY_SIDE = 256  # the entropy is measured on about this many pixels a side of each slice
SPECK_SLICES = 16  # slices whose pieces are counted
HISTOGRAM_SLICES = 16  # slices the histogram is measured on: those segment reads for its window


@dataclass
class TrustReport:
    """The verdict on one segmentation (``to_dict`` is what ``segment --report`` writes)."""

    trust: str  # "ok" or "low"
    reasons: list[str]
    label_next: list[int]
    finetune_command: str
    measures: dict[str, float] = field(default_factory=dict)
    region: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for the screen."""
        slices = ", ".join(str(z) for z in self.label_next)
        if self.trust == "ok":
            return f"trust: ok; to check it, look at slice(s) {slices}"
        return (
            f"trust: low ({'; '.join(self.reasons)}); correct slice(s) {slices} of the labels, "
            f"then: {self.finetune_command}"
        )


class TrustMeter:
    """What the logits of a run show, accumulated slab by slab (see the module notes)."""

    def __init__(self, depth: int, region: np.ndarray | None, scale: int = 1):
        self.depth = depth
        self.region = region
        self.scale = max(1, int(scale))
        self.entropy = np.zeros(depth)  # per slice: summed entropy (bits) over the sampled pixels inside
        self.inside = np.zeros(depth)  # per slice: sampled pixels inside the region
        self.voxels = np.zeros(depth)  # per slice: voxels inside the region
        self.dendrite = np.zeros(depth)
        self.dropped = 0  # voxels above 0.5 inside the region that hysteresis left unlabelled
        self.speck_slices = {int(z) for z in evenly_spaced(depth, SPECK_SLICES)}
        self.speck_dendrite = 0
        self.ring_dendrite = 0  # called voxels on whole circles about the axis (speck slices, strided)
        self.ring_called = 0  # called voxels on those slices, strided
        self._counts: dict[int, tuple[int, int, int]] = {}
        self.band = np.zeros(2)  # dendrite, voxels in the edge band
        self.interior = np.zeros(2)  # dendrite, voxels further in
        self.pieces = 0
        self.small_pieces = 0
        self.small_voxels = 0
        self._bands: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.histogram_slices = [int(z) for z in evenly_spaced(depth, HISTOGRAM_SLICES)]
        self._called_on: dict[int, np.ndarray] = {}  # what was called there, at the histogram's stride

    def _zones(self, z: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The region, its edge band and its interior for slice ``z``."""
        if self.region is None:
            if -1 not in self._bands:
                whole = np.ones(shape, bool)
                self._bands[-1] = (np.zeros(shape, bool), whole)
            band, whole = self._bands[-1]
            return whole, band, whole
        mask = self.region if self.region.ndim == 2 else self.region[z]
        key = 0 if self.region.ndim == 2 else z
        if key not in self._bands:
            radius = math.sqrt(max(mask.sum(), 1) / math.pi)
            width = max(2, int(round(EDGE_BAND * radius)))
            interior = ndimage.binary_erosion(mask, iterations=width)
            self._bands[key] = (mask & ~interior, interior)
        band, interior = self._bands[key]
        return mask, band, interior

    def add(self, z0: int, logits: np.ndarray, labels: np.ndarray, vouched: np.ndarray | None = None) -> None:
        """Slices ``z0 : z0 + len(logits)`` of the run: their logits and labels (already 0 outside);
        ``vouched``: the labels hysteresis kept, where a later rule (:mod:`.edge_rim`) dropped more of
        them (what hysteresis dropped is what the ``unsure`` measure counts).

        What costs per voxel is measured on a sample: the entropy on every ``stride``-th pixel in
        both directions (slices of about ``ENTROPY_SIDE`` pixels a side), the specks on up to
        ``SPECK_SLICES`` evenly spaced slices; the dendrite shares on every voxel.
        """
        side = max(labels.shape[1:])
        stride = max(1, int(round(side / ENTROPY_SIDE)))
        for i in range(len(logits)):
            z = z0 + i
            mask, band, interior = self._zones(z, labels.shape[1:])
            called = labels[i].astype(bool)
            sub = np.clip(logits[i, ::stride, ::stride], -30, 30)
            p = np.clip(0.5 * (1.0 + np.tanh(0.5 * sub)), 1e-7, 1 - 1e-7)
            h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
            inside = mask[::stride, ::stride]
            self.entropy[z] = float(h[inside].sum())
            self.inside[z] = float(inside.sum())
            zones = self._counts.get(id(mask))
            if zones is None:  # the zones' sizes, once per mask
                zones = self._counts[id(mask)] = (int(mask.sum()), int(band.sum()), int(interior.sum()))
            self.dendrite[z] = float(np.count_nonzero(called & mask))
            kept = called if vouched is None else vouched[i].astype(bool)
            self.dropped += int(np.count_nonzero((logits[i] > 0) & ~kept & mask))
            self.voxels[z] = float(zones[0])
            self.band += (np.count_nonzero(called & band), zones[1])
            self.interior += (np.count_nonzero(called & interior), zones[2])
            if z in self.histogram_slices:
                self._called_on[z] = called[::stride, ::stride].copy()
            if z in self.speck_slices:
                on_circles, strided = _on_whole_circles(called[::stride, ::stride], mask[::stride, ::stride])
                self.ring_dendrite += on_circles
                self.ring_called += strided
                pieces, count = ndimage.label(called)
                if count:
                    sizes = np.bincount(pieces.ravel())[1:]
                    small = sizes < SMALL_BLOB * self.scale**2
                    self.pieces += count
                    self.small_pieces += int(small.sum())
                    self.small_voxels += int(sizes[small].sum())
                    self.speck_dendrite += int(sizes.sum())

    def measures(self) -> dict[str, float]:
        called = float(self.dendrite.sum())
        band = self.band[0] / max(self.band[1], 1.0)
        interior = self.interior[0] / max(self.interior[1], 1.0)
        return {
            "dendrite_share": called / max(self.voxels.sum(), 1.0),
            "uncertainty_bits": float(self.entropy.sum() / max(self.inside.sum(), 1.0)),
            "edge_band_share": float(band),
            "interior_share": float(interior),
            "small_blob_share": self.small_voxels / self.speck_dendrite if self.speck_dendrite else 0.0,
            "ring_share": self.ring_dendrite / self.ring_called if self.ring_called else 0.0,
            "pieces": float(self.pieces),
            "hysteresis_dropped_share": self.dropped / max(called + self.dropped, 1.0),
            "unsure_share": self.dropped / max(self.voxels.sum(), 1.0),
        }

    def called_share_of(self, dark: np.ndarray | None) -> float:
        """The share of ``dark`` (one mask per slice of ``histogram_slices`` at the histogram's
        stride: :class:`GreyPhases`' dark phase) that was called dendrite; NaN where there is none."""
        if dark is None or len(dark) != len(self.histogram_slices) or not dark.any():
            return float("nan")
        called = [self._called_on.get(z) for z in self.histogram_slices]
        if any(c is None or c.shape != d.shape for c, d in zip(called, dark, strict=True)):
            return float("nan")
        return float(np.count_nonzero(np.stack(called) & dark) / np.count_nonzero(dark))

    def label_next(self, count: int = LABEL_NEXT) -> list[int]:
        """Up to ``count`` slices, most uncertain first, at least a ``count``-th of the depth apart."""
        per_slice = self.entropy / np.maximum(self.inside, 1.0)
        gap = max(1, self.depth // (count + 1))
        chosen: list[int] = []
        for z in np.argsort(-per_slice, kind="stable"):
            if all(abs(int(z) - c) >= gap for c in chosen):
                chosen.append(int(z))
            if len(chosen) == min(count, self.depth):
                break
        return sorted(chosen)


class GreyPhases(NamedTuple):
    """What the grey levels inside the sample say (:func:`suggested_share`)."""

    share: float  # of dark phase; 0 where there is one phase
    bimodality: float  # Otsu's between-class share of the variance, 0..1
    dark: np.ndarray | None = None  # where the dark phase is, per slice, at every stride-th pixel


def _on_whole_circles(called: np.ndarray, inside: np.ndarray) -> tuple[int, int]:
    """Of ``called`` inside ``inside`` (one slice): the pixels on whole circles about the slice's
    centre (see ``rings`` in the module notes), and all of them."""
    ny, nx = called.shape
    yy, xx = np.ogrid[:ny, :nx]
    radius = np.hypot(yy - (ny - 1) / 2, xx - (nx - 1) / 2).round().astype(np.intp)
    counted = called & inside
    total = int(np.count_nonzero(counted))
    if not total:
        return 0, 0
    per_circle = np.bincount(radius[inside], minlength=int(radius.max()) + 1)
    on_circle = np.bincount(radius[counted], minlength=len(per_circle))
    r = np.arange(len(per_circle))
    region_radius = math.sqrt(np.count_nonzero(inside) / math.pi)
    whole = (
        (r >= RING_MIN_RADIUS * region_radius)
        & (per_circle >= math.pi * r)  # at least half of the circle lies inside the region
        & (on_circle >= RING_FULL * np.maximum(per_circle, 1))
    )
    return int(on_circle[whole].sum()), total


def suggested_share(slices: np.ndarray, inside: np.ndarray | None) -> GreyPhases:
    """The dark-phase share the grey levels inside the sample suggest, how bimodal they are, and
    where that phase is (on ``slices``, every ``stride``-th pixel as :meth:`TrustMeter.add` samples
    them); the share is 0 and the place None where there is one phase."""
    from skimage.filters import threshold_otsu

    slices = np.asarray(slices, np.float32)
    stride = max(1, int(round(max(slices.shape[1:]) / ENTROPY_SIDE)))  # about 256 pixels a side suffice
    smooth = ndimage.gaussian_filter(np.nan_to_num(slices[:, ::stride, ::stride]), (0, 1.0, 1.0))
    within = np.ones(smooth.shape, bool)
    if inside is not None and inside.ndim == 2:
        within[:] = inside[::stride, ::stride]
    values = smooth[within]
    if values.size < 100 or values.std() == 0:
        return GreyPhases(0.0, 0.0)
    low, high = np.percentile(values, (0.5, 99.5))
    values = np.clip(values, low, high)
    t = threshold_otsu(values)
    dark, bright = values[values <= t], values[values > t]
    if dark.size == 0 or bright.size == 0:
        return GreyPhases(0.0, 0.0)
    w = dark.size / values.size
    between = w * (1 - w) * (bright.mean() - dark.mean()) ** 2
    bimodal = float(between / values.var())
    if bimodal < HISTOGRAM_BIMODAL:
        return GreyPhases(0.0, bimodal)
    return GreyPhases(w, bimodal, within & (np.clip(smooth, low, high) <= t))


def trust_report(
    meter: TrustMeter,
    *,
    suggested: GreyPhases,
    region: Any = None,
    source: str = "IMAGE",
    output: str | None = None,
    model: str | None = None,
) -> TrustReport:
    """The verdict on a run from what ``meter`` saw and the ``suggested`` share (see the module notes)."""
    m = meter.measures()
    m.update(histogram_share=suggested.share, histogram_bimodality=suggested.bimodality)
    dark_called = meter.called_share_of(suggested.dark)
    if not math.isnan(dark_called):  # JSON has no NaN: absent where there is no dark phase
        m["histogram_dark_called"] = dark_called
    reasons = reasons_for(m)
    slices = meter.label_next()
    return TrustReport(
        trust="low" if reasons else "ok",
        reasons=reasons,
        label_next=slices,
        finetune_command=finetune_command(source, output, slices, model),
        measures={k: round(float(v), 5) for k, v in m.items()},
        region=_describe_region(region),
    )


def reasons_for(m: dict[str, float]) -> list[str]:
    """Why a run with measures ``m`` (:meth:`TrustMeter.measures` and the histogram's) is not to be
    trusted; empty when it is (the limits are the module's constants)."""
    reasons = []
    band, interior = m["edge_band_share"], m["interior_share"]
    if band >= EDGE_MIN_SHARE and band > EDGE_RATIO * max(interior, 1e-3):
        reasons.append(
            f"dendrite called in a band along the sample's edge ({100 * band:.0f} % of it, "
            f"{100 * interior:.0f} % further in)"
        )
    if m["uncertainty_bits"] > UNCERTAINTY:
        reasons.append(f"high mean uncertainty ({m['uncertainty_bits']:.2f} bits per voxel)")
    if m["pieces"] >= SMALL_MIN_PIECES and m["small_blob_share"] > SMALL_SHARE:
        reasons.append(
            f"{100 * m['small_blob_share']:.0f} % of the dendrite in specks smaller than anything trained on"
        )
    dropped = m.get("hysteresis_dropped_share", 0.0)  # absent from measures saved before it existed
    if dropped > UNSURE_SHARE and m.get("unsure_share", 0.0) >= UNSURE_MIN:
        reasons.append(
            f"the network is unsure of {100 * dropped:.0f} % of what it put above 0.5 "
            f"({100 * m['unsure_share']:.2f} % of the sample; faint dendrites or noise)"
        )
    called, share = m["dendrite_share"], m["histogram_share"]
    ring = m.get("ring_share", 0.0)  # absent from measures saved before it existed
    if ring >= RING_SHARE and called < RING_MAX_SHARE:
        reasons.append(
            f"{100 * ring:.0f} % of the dendrite on whole circles about the rotation axis "
            "(ring artefacts taken for dendrite)"
        )
    dark_called = m.get("histogram_dark_called", 1.0)  # absent: no dark phase, or saved before it existed
    more = called > HISTOGRAM_RATIO * share and dark_called >= HISTOGRAM_DARK_CALLED
    if share > 0 and abs(called - share) >= HISTOGRAM_MIN_GAP and (more or share > HISTOGRAM_RATIO * called):
        reasons.append(
            f"{100 * called:.1f} % called dendrite where the grey levels suggest {100 * share:.1f} %"
        )
    return reasons


def finetune_command(source: str, output: str | None, slices: list[int], model: str | None) -> str:
    """The ``dendriteseg finetune`` line that learns from the labels of ``slices`` once corrected."""
    labels = output or "LABELS.tif"
    stem = Path(str(output or source).split(":")[0]).name.split(".")[0] or "model"
    parts = ["dendriteseg", "finetune", str(source), "--labels", str(labels)]
    parts += ["--slices", ",".join(str(z) for z in slices)]
    if model:
        parts += ["--from", str(model)]
    parts += ["-o", f"{stem}_finetuned.safetensors"]
    return " ".join(shlex.quote(p) for p in parts)


def _describe_region(region: Any) -> dict[str, Any] | None:
    if region is None:
        return None
    mask = region.mask if region.mask.ndim == 2 else region.mask.any(axis=0)
    return {
        "how": region.how,
        "share": round(float(mask.mean()), 5),
        "radius_px": round(math.sqrt(float(mask.sum()) / math.pi), 1),
    }
