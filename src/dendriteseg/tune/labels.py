"""A user's labels for fine-tuning: whole volumes, some slices, or scribbles; and their split.

Labels are read into one array per image with 0 (background), 1
(dendrite) and :data:`~dendriteseg.data.UNLABELLED` where nothing is known:

* a label volume of the image's shape, 0/1 or 0/255 (every voxel labelled);
* with ``slices``: only those z-slices count, given either as a volume of
  the image's shape or as a stack of just those slices, in that order;
* scribbles (the napari/ilastik convention): 0 unlabelled, 1 background,
  2 dendrite, of the image's shape.

A 2D image is a volume of one slice. :func:`split_labels` then holds part
of the labels out for validation, never the same voxels as training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dendriteseg.data import UNLABELLED, LabelledVolume
from dendriteseg.errors import InputError
from dendriteseg.io.labels import as_binary_labels
from dendriteseg.io.readers import as_volume
from dendriteseg.preprocess import normalisation_window, normalise
from dendriteseg.sample_region import detect_sample

log = logging.getLogger(__name__)


@dataclass
class UserScan:
    """One image with its (partial) labels, the image normalised as models expect."""

    name: str
    image: np.ndarray  # float32 (z, y, x)
    label: np.ndarray  # uint8 (z, y, x): 0, 1 or UNLABELLED
    was_2d: bool

    @property
    def labelled_slices(self) -> list[int]:
        return [int(z) for z in np.flatnonzero((self.label != UNLABELLED).any(axis=(1, 2)))]


def read_user_scan(
    image: str | Path,
    labels: str | Path | None = None,
    *,
    slices: list[int] | None = None,
    scribbles: str | Path | None = None,
) -> UserScan:
    """Read an image and its labels (exactly one of ``labels`` or ``scribbles``) from files."""
    if (labels is None) == (scribbles is None):
        raise InputError(f"{image}: give either labels or scribbles")
    data, was_2d = _read_stack(image)
    source = str(scribbles if scribbles is not None else labels)
    given, _ = _read_stack(source)
    return user_scan(
        data,
        given,
        scribbles=scribbles is not None,
        slices=slices,
        name=Path(str(image)).name,
        source=source,
        was_2d=was_2d,
    )


def user_scan(
    image: np.ndarray,
    given: np.ndarray,
    *,
    scribbles: bool = False,
    slices: list[int] | None = None,
    name: str = "image",
    source: str = "labels",
    was_2d: bool | None = None,
) -> UserScan:
    """A :class:`UserScan` from arrays (a viewer's layers): ``image`` (z, y, x) or (y, x), and
    ``given`` labels of its shape (0/1 or 0/255; with ``scribbles`` 0 unlabelled, 1 background,
    2 dendrite; with ``slices``, only those slices count, or ``given`` holds just them).

    Refused: labels that cannot teach (no labelled voxel, no dendrite or no background among
    them, scribbles that are a 0/1 label file). Non-finite image voxels are read as the grey
    window's ends, as :func:`~dendriteseg.infer.segment` reads them, and counted in a warning.
    """
    data = np.asarray(image)
    given = np.asarray(given)
    if was_2d is None:
        was_2d = data.ndim == 2
    if data.ndim == 2:
        data = data[None]
    if given.ndim == 2:
        given = given[None]
    if data.ndim != 3:
        raise InputError(f"{name}: expected a 2D image or a (z, y, x) volume, got shape {data.shape}")
    if scribbles:
        label = _from_scribbles(given, data.shape, source)
    else:
        label = _from_labels(given, data.shape, source, slices)
    _check_teaches(label, source, scribbles)
    data = np.asarray(data, np.float32)
    region = detect_sample(data)  # as segment measures the window: its high end inside the sample
    window = normalisation_window(data, inside=None if region is None else region.core)
    finite = np.isfinite(data)
    if not finite.all():
        count = int((~finite).sum())
        log.warning(
            "%s: %d non-finite voxels read as the grey window's ends (as segment reads them)", name, count
        )
        data = np.where(np.isposinf(data), window[1], np.where(finite, data, window[0])).astype(np.float32)
    return UserScan(name, normalise(data, window), label, was_2d)


def _check_teaches(label: np.ndarray, source: str, scribbles: bool) -> None:
    """Refuse labels that cannot teach a two-class network, saying what to add."""
    if not (label != UNLABELLED).any():
        raise InputError(f"{source}: no labelled voxel")
    dendrite, background = int((label == 1).sum()), int((label == 0).sum())
    if scribbles and dendrite == 0 and background > 0:
        raise InputError(
            f"{source}: scribbles with no dendrite (2): scribbles are 0 unlabelled, 1 background, "
            "2 dendrite; paint some dendrite, or give a 0/1 label file with --labels"
        )
    if dendrite == 0:
        raise InputError(
            f"{source}: no dendrite among the labelled voxels; label some dendrite too (1 or 255)"
        )
    if background == 0:
        raise InputError(f"{source}: no background among the labelled voxels; label some melt or air too (0)")


def _read_stack(path: str | Path) -> tuple[np.ndarray, bool]:
    """A file's voxels as (z, y, x), and whether it was a 2D image."""
    with as_volume(path, str(path)) as vol:
        was_2d = vol.ndim == 2
        data = vol.read()
    return (data[None] if was_2d else data), was_2d


def _from_scribbles(given: np.ndarray, shape: tuple[int, ...], source: str) -> np.ndarray:
    if given.shape != shape:
        raise InputError(f"{source}: scribbles of shape {given.shape}, the image is {shape}")
    values = set(np.unique(given).tolist())
    if not values <= {0, 1, 2}:
        raise InputError(
            f"{source}: scribbles must be 0 (unlabelled), 1 (background) or 2 (dendrite), "
            f"got {sorted(values)[:6]}"
        )
    label = np.full(shape, UNLABELLED, np.uint8)
    label[given == 1] = 0
    label[given == 2] = 1
    return label


def _from_labels(
    given: np.ndarray, shape: tuple[int, ...], source: str, slices: list[int] | None
) -> np.ndarray:
    binary = as_binary_labels(given, source).astype(np.uint8)
    if slices is None:
        if binary.shape != shape:
            raise InputError(f"{source}: labels of shape {binary.shape}, the image is {shape}")
        return binary
    bad = [z for z in slices if not 0 <= z < shape[0]]
    if bad or len(set(slices)) != len(slices):
        raise InputError(f"--slices: {slices} must be distinct slices of 0..{shape[0] - 1}")
    label = np.full(shape, UNLABELLED, np.uint8)
    if binary.shape == shape:
        label[slices] = binary[slices]
    elif binary.shape == (len(slices), *shape[1:]):
        label[slices] = binary
    else:
        raise InputError(
            f"{source}: labels of shape {binary.shape}; expected the image's {shape} or "
            f"{len(slices)} slices of {shape[1]} x {shape[2]}"
        )
    return label


def split_labels(scans: list[UserScan], *, depth: int, seed: int = 0) -> tuple[list, list, dict]:
    """Training and validation volumes from the scans' labels, never sharing a labelled voxel.

    With two or more labelled slices in all, about a quarter of them (at
    least one, evenly spread) are held out whole. With one, the labelled
    pixels of a quarter of the tiles of a 4 x 4 grid over the slice are
    (of the tiles that hold labels; a finer grid when the labels, sparse
    scribbles, fill only one tile). Large tiles, not scattered small
    blocks: pixels beside a training pixel share its arms, so they are
    weak evidence of how a model does elsewhere (spatially blocked
    validation, as in Roberts et al. 2017). Validation volumes are
    slabs of ``depth`` slices around each held-out slice (the context a 3D
    model needs), labelled only there. Returns the training volumes, the
    validation volumes and a description of the split.
    """
    pairs = [(i, z) for i, scan in enumerate(scans) for z in scan.labelled_slices]
    gen = np.random.default_rng(seed)
    train_labels = [scan.label.copy() for scan in scans]
    held: dict[int, dict[int, np.ndarray]] = {}
    if len(pairs) >= 2:
        n_val = max(1, round(len(pairs) / 4))
        picks = [pairs[int(k)] for k in np.linspace(0, len(pairs) - 1, n_val + 2)[1:-1].round()]
        picks = picks or [pairs[-1]]
        for i, z in picks:
            held.setdefault(i, {})[z] = scans[i].label[z].copy()
            train_labels[i][z] = UNLABELLED
        how = {"by": "slices", "validation": [[scans[i].name, z] for i, z in picks]}
    else:
        i, z = pairs[0]
        mask, grid = _held_tiles(scans[i].label[z] != UNLABELLED, gen)
        if mask is None:
            raise InputError(f"{scans[i].name}: too few labelled pixels to hold some out for validation")
        val = np.where(mask, scans[i].label[z], UNLABELLED).astype(np.uint8)
        held[i] = {z: val}
        train_labels[i][z][mask] = UNLABELLED
        how = {
            "by": "pixels",
            "validation_pixels": int(mask.sum()),
            "grid": grid,
            "slice": [scans[i].name, z],
        }
    train = [
        LabelledVolume(s.name, s.image, lab, "exact") for s, lab in zip(scans, train_labels, strict=True)
    ]
    val = [_slab(scans[i], z, lab, depth) for i, slices in held.items() for z, lab in slices.items()]
    return train, val, how


def grid_tiles(shape: tuple[int, int], n: int) -> np.ndarray:
    """Each pixel's tile number on an n x n grid of (near-)equal tiles over a slice of ``shape``."""
    h, w = shape
    return (np.arange(h)[:, None] * n // h) * n + np.arange(w)[None, :] * n // w


def _held_tiles(labelled: np.ndarray, gen: np.random.Generator) -> tuple[np.ndarray | None, int]:
    """The labelled pixels of a quarter (at least one) of the tiles that hold labels, on an n x n grid
    of equal tiles over the slice, the coarsest n of 4, 8, 16, ... that has two such tiles; and n.
    ``(None, 0)`` when the labels fill less than two tiles of the finest grid."""
    n = 4
    while n <= max(4, min(labelled.shape)):
        tiles = grid_tiles(labelled.shape, n)
        holding = np.unique(tiles[labelled])
        if len(holding) >= 2:
            chosen = gen.choice(holding, size=max(1, round(len(holding) / 4)), replace=False)
            return np.isin(tiles, chosen) & labelled, n
        n *= 2
    return None, 0


def _slab(scan: UserScan, z: int, label: np.ndarray, depth: int) -> LabelledVolume:
    z0 = max(0, min(z - depth // 2, scan.image.shape[0] - depth))
    z1 = min(scan.image.shape[0], z0 + max(depth, 1))
    slab = np.full((z1 - z0, *label.shape), UNLABELLED, np.uint8)
    slab[z - z0] = label
    return LabelledVolume(f"{scan.name}:z{z}", scan.image[z0:z1], slab, "exact")
