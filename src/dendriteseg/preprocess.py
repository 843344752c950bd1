"""Intensity normalisation shared by training and inference.

A model sees intensities mapped from a grey window ``(low, high)`` to 0..1.
The window is measured per volume (:func:`normalisation_window`) from a few
evenly spaced slices (:func:`evenly_spaced`), so the same rule applies to a
training scan, a validation scan and a user's volume. Nothing here imports
the training or inference packages.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from dendriteseg.errors import InputError
from dendriteseg.io import Volume, as_volume

NORMALISATION = {"kind": "percentile", "low": 1.0, "high": 99.0}


def evenly_spaced(length: int, count: int) -> np.ndarray:
    """Up to ``count`` distinct indices spread evenly over ``0..length-1`` (both ends included).

    >>> evenly_spaced(10, 4).tolist()
    [0, 3, 6, 9]
    """
    if length < 1 or count < 1:
        return np.zeros(0, int)
    return np.unique(np.linspace(0, length - 1, min(count, length)).round().astype(int))


def sample_slices(image: Any, count: int = 16) -> np.ndarray:
    """Up to ``count`` evenly spaced z-slices of a volume (a 2D image: itself), float32, ``(n, y, x)``;
    refused when none of their voxels is finite."""
    if image.ndim == 2:
        sample = np.asarray(image[:], np.float32)[None]
    else:
        sample = np.stack(
            [np.asarray(image[int(i)], np.float32) for i in evenly_spaced(image.shape[0], count)]
        )
    if not np.isfinite(sample).any():
        name = getattr(image, "source", None) or "volume"
        raise InputError(f"{name}: no finite voxels in {len(sample)} sampled slices (all NaN or infinite)")
    return sample


def percentile_window(values: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The ``low``/``high`` percentiles of the finite values; (0, 1) if none, never hi <= lo."""
    values = np.asarray(values).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, (low, high))
    return float(lo), float(hi if hi > lo else lo + 1.0)


def normalisation_window(
    image: Any,
    *,
    low: float = 1.0,
    high: float = 99.0,
    max_slices: int = 16,
    inside: np.ndarray | None = None,
    **widening: Any,
) -> tuple[float, float]:
    """Intensities at the ``low``/``high`` percentiles of up to ``max_slices`` evenly spaced slices.

    Mapping them to 0 and 1 makes models indifferent to a scanner's gain and
    offset (and to the intensity drift between scans). The low end is the
    air around the sample; in a scan cropped to the sample it reaches lower,
    where the air would be (:func:`widen_without_air`, which takes the
    keyword arguments in ``widening``). With ``inside`` (where the sample
    is: a (y, x) mask, or one per slice) the high end is measured there
    only: bright grains of a container wall or packing, a bright masked
    exterior or dense inclusions outside the sample do not push the melt
    down the window.
    """
    sample = sample_slices(image, max_slices)
    lo, hi = percentile_window(sample, low, high)
    if inside is not None:
        mask = np.asarray(inside, bool)
        if mask.ndim == 3:  # one mask per slice: those of the sampled slices
            mask = mask[evenly_spaced(mask.shape[0], max_slices)] if image.ndim == 3 else mask.any(axis=0)
        values = sample[:, mask] if mask.ndim == 2 else sample[mask]
        values = values[np.isfinite(values)]
        if values.size:
            top = float(np.percentile(values, high))
            hi = top if top > lo else hi
    return widen_without_air(sample, (lo, hi), **widening)


def widen_without_air(
    slices: np.ndarray,
    window: tuple[float, float],
    *,
    air_contrast: float = 0.2,
    widening: float = 0.5,
    air_level: float = 0.1,
    dark_border: tuple[float, float] = (0.12, 0.2),
) -> tuple[float, float]:
    """``window`` with its low end moved lower where little or no air borders ``slices``.

    A scan with air around the sample has air at the low end of its window;
    cropped to the sample, the low end falls on the darkest solid instead,
    or inside the melt's noise, and a model would see noise as dendrites.
    The slices' outer frame (3 % of each side), once smoothed (Gaussian,
    1.5 px), tells the cases apart, in units of the contrast: the way from
    the 1st percentile up to the median of the brighter half of the values.

    * If the frame's median lies below ``air_contrast`` of the contrast, the
      frame is air and the window stays.
    * Otherwise the share of the frame that is dark (within ``air_level`` of
      the contrast above the 1st percentile) grades the widening: the low
      end moves down by ``widening`` of the window's width while at most
      ``dark_border[0]`` of the frame is dark, not at all from
      ``dark_border[1]``, linearly between.

    The thresholds are calibrated on synthetic crops;
    ``benchmarks/crop_window.py`` measures the rule against always widening
    and against the uncropped scan's window.
    """
    lo, hi = window
    full, none = dark_border
    if not none > full:
        raise ValueError(f"dark_border: expected (full, none) with none > full, got {dark_border}")
    if slices.ndim != 3 or min(slices.shape[1:]) < 8:
        return window
    step = -(-max(slices.shape[1:]) // 512)  # about 512 pixels a side suffice, and bound the memory
    slices = slices[:, ::step, ::step]
    finite = np.isfinite(slices)
    if not finite.any():
        return window
    smooth = ndimage.gaussian_filter(np.where(finite, slices, np.median(slices[finite])), (0, 1.5, 1.5))
    s_lo, s_hi = percentile_window(smooth, 1.0, 99.0)
    b = max(2, int(0.03 * min(slices.shape[1:])))
    edge = np.ones(slices.shape[1:], bool)
    edge[b:-b, b:-b] = False
    frame = smooth[:, edge]
    bright = smooth[smooth > (s_lo + s_hi) / 2]
    if bright.size == 0:
        return window
    contrast = np.median(bright) - s_lo
    if np.median(frame) - s_lo < air_contrast * contrast:
        return window
    dark = float(np.mean(frame < s_lo + air_level * contrast))
    share = widening * float(np.clip((none - dark) / (none - full), 0.0, 1.0))
    return lo - share * (hi - lo), hi


def normalise(data: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """``data`` mapped from ``window`` to 0..1 as float32 (values outside stay outside)."""
    lo, hi = window
    return ((np.asarray(data, np.float32) - lo) / (hi - lo)).astype(np.float32)


def window_for(
    volume: Any, normalisation: dict[str, Any] | None = None, inside: np.ndarray | None = None
) -> tuple[float, float]:
    """The grey window a model file's ``normalisation`` asks for on ``volume`` (``inside``: where the
    sample is, see :func:`normalisation_window`)."""
    norm = {**NORMALISATION, **(normalisation or {})}
    if norm["kind"] != "percentile":
        raise InputError(f"model normalisation {norm['kind']!r} is not supported")
    return normalisation_window(volume, low=float(norm["low"]), high=float(norm["high"]), inside=inside)


class FiniteVolume(Volume):
    """A volume read with its NaN and infinite voxels replaced, and counted.

    The one rule for non-finite voxels in every command that computes from
    intensities (segment, baseline, overlay): NaN and -inf read as the low
    end of ``window`` (where air is), +inf as its high end; ``nonfinite``
    counts the voxels replaced so far (each slice once), for a warning.
    """

    def __init__(self, volume: Volume, window: tuple[float, float]):
        self.volume = volume
        self.window = (float(window[0]), float(window[1]))
        self.shape, self.dtype = volume.shape, volume.dtype
        self.voxel_size, self.source = volume.voxel_size, volume.source
        self.nonfinite = 0
        self._counted = np.zeros(volume.shape[0] if volume.ndim == 3 else 1, bool)

    def _read(self, z0: int, z1: int) -> np.ndarray:
        data = self.volume.read(z0, z1) if self.ndim == 3 else self.volume.read()
        if data.dtype.kind != "f":
            return data
        bad = ~np.isfinite(data)
        if not bad.any():
            return data
        per_slice = bad.reshape(len(data), -1).sum(1) if self.ndim == 3 else np.array([bad.sum()])
        fresh = ~self._counted[z0 : z0 + len(per_slice)]
        self.nonfinite += int(per_slice[fresh].sum())
        self._counted[z0 : z0 + len(per_slice)] = True
        lo, hi = self.window
        return np.nan_to_num(data, nan=lo, posinf=hi, neginf=lo)

    def close(self) -> None:
        self.volume.close()


def finite_volume(data: Any, window: tuple[float, float] | None = None) -> FiniteVolume:
    """``data`` (a path, Volume or array) as a :class:`FiniteVolume`; ``window`` defaults to
    the 1st/99th percentiles of its sampled slices (which must hold some finite voxels)."""
    volume = data if isinstance(data, Volume) else as_volume(data)
    if window is None:
        window = percentile_window(sample_slices(volume), 1.0, 99.0)
    return FiniteVolume(volume, window)


def nonfinite_warning(volume: FiniteVolume) -> str | None:
    """The warning to give when ``volume`` had non-finite voxels (None when it had none)."""
    if not volume.nonfinite:
        return None
    return (
        f"{volume.source}: {volume.nonfinite:,} voxels were NaN or infinite; NaN and -inf were read as "
        f"{volume.window[0]:.4g}, +inf as {volume.window[1]:.4g} (the grey window's ends)"
    )
