"""Training sampling: labelled volumes in memory, normalised, and patches drawn from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dendriteseg.data.manifest import Entry
from dendriteseg.errors import InputError
from dendriteseg.io import open_volume
from dendriteseg.io.labels import as_binary_labels
from dendriteseg.metrics import UNLABELLED
from dendriteseg.preprocess import (
    evenly_spaced,
    normalisation_window,
    normalise,
    percentile_window,
    widen_without_air,
)
from dendriteseg.rng import Rng, as_generator
from dendriteseg.sample_region import detect_sample


def crop_windows(
    image: np.ndarray,
    n: int = 16,
    *,
    min_fraction: float = 0.25,
    low: float = 1.0,
    high: float = 99.0,
    rng: Rng = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Random (y, x) crops of ``image``: ``(n, 2)`` windows and ``(n, 4)`` boxes (y0, y1, x0, x1).

    A scan cropped to the sample (no air around it) gets another window
    from :func:`normalisation_window`; a patch cut from such a crop (and
    padded as a tile at the crop's edge would be) and normalised by its
    window shows a model that case. Crop sides are ``min_fraction`` to 1 of
    the slice, placed near its middle (as a user crops a scan to the
    sample); the first is the whole slice. Windows are in ``image`` units.
    """
    gen = as_generator(rng)
    nz, ny, nx = image.shape
    idx = evenly_spaced(nz, 8)
    step = max(1, int(round(max(ny, nx) / 256)))  # about 256 x 256 pixels per slice suffice
    slices = image[idx][:, ::step, ::step]
    _, sy, sx = slices.shape
    windows = np.empty((n, 2), np.float32)
    boxes = np.empty((n, 4), np.int64)
    for i in range(n):
        fraction = 1.0 if i == 0 else gen.uniform(min_fraction, 1.0)
        hy, hx = max(2, int(sy * fraction)), max(2, int(sx * fraction))
        y0 = int(round((sy - hy) * gen.uniform(0.25, 0.75)))
        x0 = int(round((sx - hx) * gen.uniform(0.25, 0.75)))
        crop = slices[:, y0 : y0 + hy, x0 : x0 + hx]
        windows[i] = widen_without_air(crop, percentile_window(crop, low, high))
        y1 = ny if y0 + hy >= sy else (y0 + hy) * step
        x1 = nx if x0 + hx >= sx else (x0 + hx) * step
        boxes[i] = y0 * step, y1, x0 * step, x1
    return windows, boxes


@dataclass
class LabelledVolume:
    """A normalised image with its label, both (z, y, x): 0/1, or :data:`UNLABELLED` where unknown."""

    name: str
    image: np.ndarray
    label: np.ndarray
    quality: str = "exact"

    @classmethod
    def from_entry(cls, entry: Entry) -> LabelledVolume:
        with open_volume(entry.image) as img, open_volume(entry.label) as lab:
            if img.shape != lab.shape:
                raise InputError(f"{entry.label}: shape {lab.shape} differs from {entry.image} {img.shape}")
            if img.ndim != 3:
                raise InputError(f"{entry.image}: expected a (z, y, x) volume, got {img.shape}")
            z0, z1 = entry.slices or (0, img.shape[0])
            if not 0 <= z0 < z1 <= img.shape[0]:
                raise InputError(f"{entry.image}: slices {z0}:{z1} outside 0:{img.shape[0]}")
            region = detect_sample(img)  # as segment measures the window: its high end inside the sample
            window = normalisation_window(img, inside=None if region is None else region.core)
            image = normalise(img.read(z0, z1), window)
            label = as_binary_labels(lab.read(z0, z1), entry.label).astype(np.uint8)
        return cls(entry.name, image, label, entry.quality)


def _pad_to(array: np.ndarray, shape: tuple[int, ...], mode: str) -> np.ndarray:
    pads = [(0, max(0, s - a)) for a, s in zip(array.shape, shape, strict=True)]
    if not any(p for _, p in pads):
        return array
    return np.pad(array, pads, mode=mode)


class PatchSampler:
    """Random (Z, W, W) patches that do not starve on rare dendrite voxels.

    With probability ``foreground`` a patch is centred near a random dendrite
    voxel; otherwise anywhere (in a volume labelled only in part: near a
    random labelled voxel, so no patch is all unlabelled). Volumes are drawn in proportion to their size.
    With probability ``rewindow`` a patch is cut from a random crop of its
    volume (reflect-padded where the crop is smaller) and re-normalised by
    that crop's window, as if a user had cropped the scan (see
    :func:`crop_windows`).
    """

    def __init__(
        self,
        volumes: list[LabelledVolume],
        patch: tuple[int, int, int],
        *,
        foreground: float = 0.5,
        rewindow: float = 0.0,
        rng: Rng = None,
    ):
        if not volumes:
            raise InputError("no training volumes")
        self.volumes = volumes
        self.patch = tuple(int(p) for p in patch)
        self.foreground = foreground
        self.rewindow = rewindow
        self.gen = as_generator(rng)
        sizes = np.array([v.image.size for v in volumes], float)
        self.weights = sizes / sizes.sum()
        self._fg = [self._some(np.argwhere(v.label == 1)) for v in volumes]
        self._known = [
            self._some(np.argwhere(v.label != UNLABELLED)) if (v.label == UNLABELLED).any() else None
            for v in volumes
        ]
        self._crops = [crop_windows(v.image, rng=self.gen) for v in volumes] if rewindow > 0 else []

    def _some(self, coords: np.ndarray, most: int = 20000) -> np.ndarray:
        return coords[self.gen.choice(len(coords), most, replace=False)] if len(coords) > most else coords

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        k = int(self.gen.choice(len(self.volumes), p=self.weights))
        vol = self.volumes[k]
        image, label, fg = vol.image, vol.label, self._fg[k]
        centred = self._known[k] is not None  # a sparse volume: near dendrite or near any labelled voxel
        if centred and not (len(fg) and self.gen.random() < self.foreground):
            fg = self._known[k]
        window = None
        if self.rewindow > 0 and self.gen.random() < self.rewindow:
            windows, boxes = self._crops[k]
            i = int(self.gen.integers(len(windows)))
            y0, y1, x0, x1 = (int(b) for b in boxes[i])
            image, label = image[:, y0:y1, x0:x1], label[:, y0:y1, x0:x1]
            inside = (fg[:, 1] >= y0) & (fg[:, 1] < y1) & (fg[:, 2] >= x0) & (fg[:, 2] < x1)
            fg = fg[inside] - np.array([0, y0, x0])
            window = windows[i]
        shape = image.shape
        starts = []
        if len(fg) and (centred or self.gen.random() < self.foreground):
            centre = fg[self.gen.integers(len(fg))]
            for c, p, s in zip(centre, self.patch, shape, strict=True):
                lo = int(c) - p // 2 + int(self.gen.integers(-(p // 4), p // 4 + 1))
                starts.append(int(np.clip(lo, 0, max(s - p, 0))))
        else:
            starts = [
                int(self.gen.integers(0, max(s - p, 0) + 1)) for p, s in zip(self.patch, shape, strict=True)
            ]
        box = tuple(slice(s, s + p) for s, p in zip(starts, self.patch, strict=True))
        patch_image = _pad_to(image[box], self.patch, "reflect")
        patch_label = _pad_to(label[box], self.patch, "reflect")
        if window is not None:
            patch_image = normalise(patch_image, window)
        return patch_image, patch_label

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """``(size, 1, Z, W, W)`` float32 images and ``(size, Z, W, W)`` uint8 labels."""
        pairs = [self.sample() for _ in range(size)]
        return (
            np.stack([p[0] for p in pairs])[:, None].astype(np.float32),
            np.stack([p[1] for p in pairs]).astype(np.uint8),
        )
