"""Classical segmenters of the paper's Figure 1: Otsu, k-means, EMMPM and a
pixel classifier (random forest on a filter bank).

All of them work inside the sample only: ``sample_mask`` finds the
cylindrical sample's cross-section from the dark air around it, and voxels
outside are background. Each method is a small class with ``fit`` (on a
volume: estimate thresholds, mixtures or a classifier from a sample of
slices) and ``predict`` (one z-slab at a time), so that volumes larger than
memory stream through ``segment_with_baseline``.

Convention: the solid (dendrite) is darker than the melt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from dendriteseg.errors import InputError
from dendriteseg.io import SliceStack, Volume, VolumeWriter, as_stack, as_volume
from dendriteseg.io.labels import as_binary_labels
from dendriteseg.preprocess import evenly_spaced, finite_volume, nonfinite_warning, sample_slices
from dendriteseg.rng import Rng
from dendriteseg.rng import as_generator as _rng

log = logging.getLogger(__name__)


def _sample_slices(volume: Volume, count: int) -> np.ndarray:
    """Up to ``count`` evenly spaced z-slices as float32."""
    return sample_slices(volume, count)


def sample_mask(volume: Any, *, margin: int = 2, max_slices: int = 16) -> np.ndarray:
    """Cross-section (y, x) of the sample, excluding the air around it.

    The mean of up to ``max_slices`` smoothed slices separates the air
    (darkest everywhere) from the sample (melt and solid average out).
    Dark regions touching the image border are air; the rest, holes
    filled, is the sample, shrunk by ``margin`` pixels to drop the blurred
    rim. If there is no air (the sample fills the field of view: the dark
    part is not much darker than the rest), the whole slice is returned.
    """

    return _mask_from_slices(_sample_slices(as_stack(volume), max_slices), margin=margin)


def _mask_from_slices(slices: np.ndarray, *, margin: int = 2) -> np.ndarray:
    """``sample_mask`` on slices already read."""
    from skimage.filters import threshold_otsu

    proj = ndimage.gaussian_filter(slices.mean(0), 2.0)
    if not np.ptp(proj) > 0:
        return np.ones(proj.shape, bool)
    dark = proj < threshold_otsu(proj)
    labels, _ = ndimage.label(dark)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    air = np.isin(labels, border[border > 0])
    if air.mean() < 0.02 or air.all():
        return np.ones(proj.shape, bool)
    # Real air is far darker than the sample; a split of mere noise is not.
    spread = np.sqrt((proj[air].var() + proj[~air].var()) / 2) + 1e-12
    if (proj[~air].mean() - proj[air].mean()) / spread < 6.0:
        return np.ones(proj.shape, bool)
    sample = ndimage.binary_fill_holes(~air)
    labels, n = ndimage.label(sample)
    if n > 1:
        sizes = ndimage.sum_labels(sample, labels, range(1, n + 1))
        sample = labels == (int(np.argmax(sizes)) + 1)
    if margin > 0:
        sample = ndimage.binary_erosion(sample, iterations=margin)
    return sample


def _inside(slices: np.ndarray, mask: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    values = slices[:, mask].ravel()
    values = values[np.isfinite(values)]
    if values.size > limit:
        values = rng.choice(values, limit, replace=False)
    return values


@dataclass
class Otsu:
    """Otsu's threshold on the voxels inside the sample; darker = dendrite."""

    max_slices: int = 16
    threshold: float = field(default=np.nan, init=False)
    mask: np.ndarray | None = field(default=None, init=False, repr=False)

    def fit(self, volume: Any) -> Otsu:
        from skimage.filters import threshold_otsu

        slices = _sample_slices(as_stack(volume), self.max_slices)
        self.mask = _mask_from_slices(slices)
        self.threshold = float(threshold_otsu(slices[:, self.mask]))
        return self

    def predict(self, slab: np.ndarray) -> np.ndarray:
        return ((slab < self.threshold) & self.mask).astype(np.uint8)


@dataclass
class KMeans:
    """k-means on intensity inside the sample; the darkest cluster is dendrite."""

    n_clusters: int = 2
    max_slices: int = 16
    max_samples: int = 200_000
    rng: Rng = None
    centres: np.ndarray | None = field(default=None, init=False)
    mask: np.ndarray | None = field(default=None, init=False, repr=False)

    def fit(self, volume: Any) -> KMeans:
        from sklearn.cluster import KMeans as SkKMeans

        if self.n_clusters < 2:
            raise InputError(f"kmeans needs at least 2 clusters, got {self.n_clusters}")
        gen = _rng(self.rng)
        slices = _sample_slices(as_stack(volume), self.max_slices)
        self.mask = _mask_from_slices(slices)
        values = _inside(slices, self.mask, self.max_samples, gen)
        model = SkKMeans(self.n_clusters, n_init=4, random_state=int(gen.integers(2**31)))
        model.fit(values[:, None])
        self.centres = np.sort(model.cluster_centers_.ravel())
        return self

    def predict(self, slab: np.ndarray) -> np.ndarray:
        distance = np.abs(slab[..., None].astype(np.float32) - self.centres.astype(np.float32))
        nearest_darkest = distance[..., 0] <= distance[..., 1:].min(-1)
        return (nearest_darkest & self.mask).astype(np.uint8)


@dataclass
class EMMPM:
    """Expectation-maximisation / maximisation of posterior marginals.

    Comer and Delp's EM/MPM: a two-class Gaussian mixture for intensities
    and a Potts Markov random field prior (4-neighbour, per z-slice) on the
    labels. Each EM iteration runs a Gibbs sampler (checkerboard updates)
    whose label frequencies after burn-in estimate the posterior marginals;
    the M-step re-estimates the class means and variances from them. The
    final label maximises the marginal.

    Parameters
    ----------
    beta : float
        Potts coupling: the energy of each neighbour with another label.
    em_iterations : int
    sweeps, burn_in : int
        Gibbs sweeps per MPM estimate and how many are discarded first.
    """

    beta: float = 1.0
    em_iterations: int = 6
    sweeps: int = 8
    burn_in: int = 2
    max_slices: int = 8
    rng: Rng = None
    means: np.ndarray | None = field(default=None, init=False)
    variances: np.ndarray | None = field(default=None, init=False)
    mask: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.burn_in < self.sweeps:
            raise InputError(f"emmpm: need 0 <= burn_in < sweeps, got {self.burn_in}, {self.sweeps}")
        self._gen = _rng(self.rng)

    def _marginals(self, y: np.ndarray) -> np.ndarray:
        """Posterior probability of class 1 (dendrite) per pixel, by Gibbs sampling."""
        gen, mask = self._gen, self.mask
        mu, var = self.means.astype(np.float32), self.variances.astype(np.float32)
        u0 = (y - mu[0]) ** 2 / (2 * var[0]) + 0.5 * np.log(var[0])
        u1 = (y - mu[1]) ** 2 / (2 * var[1]) + 0.5 * np.log(var[1])
        du = (u1 - u0).astype(np.float32)  # unary energy of "1" minus "0"
        x = (du < 0) & mask
        ny, nx = y.shape[1:]
        parity = (np.add.outer(np.arange(ny), np.arange(nx)) % 2).astype(bool)
        neighbours = np.full((ny, nx), 4, np.float32)
        neighbours[0] -= 1
        neighbours[-1] -= 1
        neighbours[:, 0] -= 1
        neighbours[:, -1] -= 1
        counts = np.zeros(y.shape, np.float32)
        beta = np.float32(self.beta)
        for sweep in range(self.sweeps):
            for colour in (parity, ~parity):
                padded = np.pad(x, ((0, 0), (1, 1), (1, 1))).astype(np.float32)
                n1 = padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]
                # E1 - E0 = du + beta * ((neighbours - n1) - n1)
                delta = du + beta * (neighbours - 2 * n1)
                p1 = 1.0 / (1.0 + np.exp(np.clip(delta, -50, 50)))
                draw = gen.random(y.shape, dtype=np.float32) < p1
                update = colour & mask
                x = np.where(update, draw, x)
            if sweep >= self.burn_in:
                counts += x
        return counts / (self.sweeps - self.burn_in)

    def fit(self, volume: Any) -> EMMPM:
        from skimage.filters import threshold_otsu

        y = _sample_slices(as_stack(volume), self.max_slices)
        self.mask = _mask_from_slices(y)
        inside = y[:, self.mask]
        t = threshold_otsu(inside)
        dark, bright = inside[inside < t], inside[inside >= t]
        floor = max(float(inside.var()) * 1e-4, 1e-12)
        self.means = np.array([bright.mean(), dark.mean()], np.float64)  # 0 = melt, 1 = solid
        self.variances = np.maximum([bright.var(), dark.var()], floor)
        m = np.broadcast_to(self.mask, y.shape)
        for _ in range(self.em_iterations):
            p1 = self._marginals(y)[m]
            values = y[m]
            for k, w in ((0, 1.0 - p1), (1, p1)):
                total = float(w.sum())
                if total < 1.0:
                    continue
                self.means[k] = float((w * values).sum() / total)
                self.variances[k] = max(float((w * (values - self.means[k]) ** 2).sum() / total), floor)
        if self.means[1] > self.means[0]:
            log.warning("emmpm: the 'solid' class came out brighter than the melt")
        return self

    def predict(self, slab: np.ndarray) -> np.ndarray:
        p1 = self._marginals(np.asarray(slab, np.float32))
        return ((p1 > 0.5) & self.mask).astype(np.uint8)


def _normalise(image: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = window
    return ((image.astype(np.float32) - lo) / (hi - lo)).astype(np.float32)


@dataclass
class PixelClassifier:
    """A random forest on a per-slice filter bank, trained from labels.

    Features are scikit-image's ``multiscale_basic_features`` (Gaussian-
    smoothed intensity, edges and texture at several scales: the ilastik
    filter bank) of each z-slice, after normalising the intensities by
    robust percentiles inside the sample, so a model trained on one scan
    transfers to another with other gain or offset.
    """

    n_estimators: int = 40
    max_depth: int = 14
    max_samples: int = 40_000
    max_slices: int = 24
    sigma_max: float = 8.0
    rng: Rng = None
    forest: Any = field(default=None, init=False, repr=False)
    mask: np.ndarray | None = field(default=None, init=False, repr=False)

    def _features(self, image2d: np.ndarray) -> np.ndarray:
        from skimage.feature import multiscale_basic_features

        return multiscale_basic_features(
            image2d,
            intensity=True,
            edges=True,
            texture=True,
            sigma_min=0.7,
            sigma_max=self.sigma_max,
            num_sigma=5,
        ).astype(np.float32)

    @staticmethod
    def _mask_and_window(vol: Volume) -> tuple[np.ndarray, tuple[float, float]]:
        """Sample mask and robust intensity window from one read of 16 slices."""
        slices = _sample_slices(vol, 16)
        mask = _mask_from_slices(slices)
        lo, hi = np.percentile(slices[:, mask], (1, 99))
        return mask, (float(lo), float(max(hi, lo + 1e-6)))

    def fit_labelled(self, image: Any, labels: Any) -> PixelClassifier:
        """Train on a labelled volume (image and 0/1 labels of one shape)."""
        from sklearn.ensemble import RandomForestClassifier

        gen = _rng(self.rng)
        img, lab = as_stack(image, "train image"), as_stack(labels, "train labels")
        if img.shape != lab.shape:
            raise InputError(f"{lab.source}: shape {lab.shape} differs from {img.source} {img.shape}")
        mask, window = self._mask_and_window(img)
        idx = evenly_spaced(img.shape[0], self.max_slices)
        per_slice = max(1, self.max_samples // len(idx))
        xs, ys = [], []
        for z in idx:
            y = as_binary_labels(lab.read(int(z), int(z) + 1)[0], lab.source)
            feats = self._features(_normalise(img.read(int(z), int(z) + 1)[0], window))
            for cls in (0, 1):  # balance the classes: dendrite voxels are rare
                where = np.flatnonzero(((y == cls) & mask).ravel())
                if where.size:
                    pick = gen.choice(where, min(per_slice // 2, where.size), replace=False)
                    xs.append(feats.reshape(-1, feats.shape[-1])[pick])
                    ys.append(np.full(pick.size, cls, np.uint8))
        labels_all = np.concatenate(ys) if ys else np.zeros(0, np.uint8)
        if np.unique(labels_all).size < 2:
            raise InputError(f"{lab.source}: training labels need both dendrite and background voxels")
        self.forest = RandomForestClassifier(
            self.n_estimators,
            max_depth=self.max_depth,
            n_jobs=-1,
            random_state=int(gen.integers(2**31)),
            class_weight="balanced",
        ).fit(np.concatenate(xs), labels_all)
        return self

    def fit(self, volume: Any) -> PixelClassifier:
        """Prepare for ``volume``: its sample mask and intensity window."""
        if self.forest is None:
            raise InputError("forest: train it first with fit_labelled (--train-image/--train-label)")
        vol = as_stack(volume)
        self.mask, self._target_window = self._mask_and_window(vol)
        return self

    def predict(self, slab: np.ndarray) -> np.ndarray:
        out = np.zeros(slab.shape, np.uint8)
        for i, image in enumerate(slab):
            feats = self._features(_normalise(image, self._target_window))
            proba = self.forest.predict_proba(feats.reshape(-1, feats.shape[-1]))[:, 1]
            out[i] = (proba.reshape(image.shape) > 0.5) & self.mask
        return out


BASELINES: dict[str, Callable[..., Any]] = {
    "otsu": Otsu,
    "kmeans": KMeans,
    "emmpm": EMMPM,
    "forest": PixelClassifier,
}


def baseline_options(name: str) -> list[str]:
    """The options (constructor arguments) a baseline accepts."""
    from dataclasses import fields

    return [f.name for f in fields(BASELINES[name]) if f.init]


def build_baseline(name: str, *, rng: Rng = None, **options: Any) -> Any:
    """Make a baseline by name.

    Raises
    ------
    KeyError
        Unknown name (the message lists the valid ones).
    InputError
        An option the method does not have (the message lists those it has).
    """
    try:
        cls = BASELINES[name]
    except KeyError:
        raise KeyError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}") from None
    valid = baseline_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        shown = ", ".join(v for v in valid if v != "rng")
        raise InputError(f"{name}: unknown option(s) {', '.join(unknown)}; valid: {shown}")
    if "rng" in valid:
        options["rng"] = rng
    return cls(**options)


def segment_with_baseline(
    method: str,
    volume: Any,
    output: str | Path | None = None,
    *,
    train_image: Any = None,
    train_label: Any = None,
    slab_depth: int = 16,
    progress: Callable[[int, int], None] | None = None,
    rng: Rng = None,
    **options: Any,
) -> np.ndarray | None:
    """Segment ``volume`` with a classical method.

    Parameters
    ----------
    method : {"otsu", "kmeans", "emmpm", "forest"}
    volume : path, Volume or array (z, y, x)
    output : path, optional
        Write the uint8 labels there (atomically, slab by slab) and return
        None; without it the labels are returned as an array.
    train_image, train_label : path, Volume or array
        Required by ``forest``: a labelled volume to learn from.
    progress : callable(done, total), optional
        Called after each slab.
    rng : int or numpy.random.Generator
        For the methods that sample (kmeans, emmpm, forest).
    **options
        Passed to the method's class (e.g. ``beta=1.5`` for emmpm).

    Examples
    --------
    >>> from dendriteseg.synth import procedural_dendrites, paint_image_scan
    >>> label, phase = procedural_dendrites((5, 64, 64), rng=0)
    >>> image, _ = paint_image_scan(phase, rng=0)
    >>> segment_with_baseline("otsu", image).shape
    (5, 64, 64)
    """
    model = build_baseline(method, rng=rng, **options)
    if method == "forest":
        if train_image is None or train_label is None:
            raise InputError("forest: needs --train-image and --train-label (a labelled volume)")
        train_volume = finite_volume(as_stack(train_image, "train image"))
        model.fit_labelled(train_volume, train_label)
        if warning := nonfinite_warning(train_volume):
            log.warning(warning)
    vol = as_volume(volume, "input")
    image2d = vol.ndim == 2  # a 2D image: one slice in, a 2D image out
    vol = finite_volume(
        SliceStack(vol) if image2d else vol
    )  # NaN, infinities: counted, read as the window's ends
    model.fit(vol)
    nz = vol.shape[0]
    shape = vol.shape[1:] if image2d else vol.shape
    result = np.zeros(vol.shape, np.uint8) if output is None else None
    with VolumeWriter(output, shape, np.uint8, voxel_size=vol.voxel_size) if output else nullcontext() as out:
        for z0, z1, slab in vol.iter_slabs(slab_depth):
            labels = model.predict(slab.astype(np.float32))
            if out is None:
                result[z0:z1] = labels
            else:
                out.write(labels, z0)
            if progress:
                progress(z1, nz)
    if warning := nonfinite_warning(vol):
        log.warning(warning)
    return result[0] if image2d and result is not None else result
