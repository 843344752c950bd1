"""Put a simulated structure on the CT grid, and make many from one.

One trilinear resampling does it all: scale (so that arms are a few to a
few tens of voxels across), an arbitrary 3D rotation, flips, a random crop
and a smooth elastic deformation. The soft phase field is resampled and the
label is its 1/2 level, so labels stay exact after every transform.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from dendriteseg.rng import Rng, as_generator
from dendriteseg.synth.procedural import random_rotation


def _smooth_field(shape: tuple[int, ...], sigma: float, gen: np.random.Generator) -> np.ndarray:
    """Smooth random field with unit peak amplitude, made on a coarse grid."""
    step = max(1, int(sigma // 2))
    coarse = [max(2, s // step + 2) for s in shape]
    field = ndimage.gaussian_filter(gen.standard_normal(coarse), sigma / step)
    field /= np.abs(field).max() + 1e-12
    zoom = [s / c for s, c in zip(shape, coarse, strict=True)]
    return ndimage.zoom(field, zoom, order=1)[tuple(slice(0, s) for s in shape)]


def place_structure(
    phase: np.ndarray,
    shape: tuple[int, int, int],
    *,
    zoom: float = 1.0,
    rotate: bool = True,
    flip: bool = True,
    elastic: float = 0.0,
    elastic_scale: float = 24.0,
    rng: Rng = None,
) -> np.ndarray:
    """Resample a solid-fraction field onto a ``shape`` grid.

    Parameters
    ----------
    phase : float array (z, y, x) in [0, 1]
    shape : output (z, y, x)
    zoom : float
        Output voxels per input voxel (2 makes arms twice as wide).
    rotate : bool
        Apply a uniformly random 3D rotation about the centre.
    flip : bool
        Random flips along each axis.
    elastic : float
        Peak displacement of the elastic deformation in output voxels (0: none).
    elastic_scale : float
        Smoothness (voxels) of that displacement.
    rng : int or numpy.random.Generator

    Returns
    -------
    float32 array ``shape``
        Outside the source the field is 0 (melt). A random offset picks the
        crop when the scaled source is larger than ``shape``.
    """
    gen = as_generator(rng)
    src = np.asarray(phase, np.float32)
    if zoom <= 0:
        raise ValueError(f"zoom must be > 0, got {zoom}")
    matrix = random_rotation(gen) if rotate else np.eye(3)
    if flip:
        matrix = matrix * gen.choice([-1.0, 1.0], size=3)[None, :]
    src_centre = (np.array(src.shape) - 1) / 2
    # shift the crop window randomly within the part of the scaled source that fits
    slack = np.maximum(np.array(src.shape) * zoom - np.array(shape), 0) / 2
    offset = gen.uniform(-slack, slack) if slack.any() else np.zeros(3)
    out_centre = (np.array(shape) - 1) / 2 + offset
    displacement = None
    if elastic > 0:
        displacement = [_smooth_field(shape, elastic_scale, gen) * elastic for _ in range(3)]
    out = np.empty(shape, np.float32)
    ny, nx = shape[1], shape[2]
    yy, xx = np.meshgrid(np.arange(ny, dtype=np.float32), np.arange(nx, dtype=np.float32), indexing="ij")
    for z in range(shape[0]):
        pts = np.stack([np.full_like(yy, z), yy, xx])
        if displacement is not None:
            pts = pts + np.stack([d[z] for d in displacement])
        rel = (pts.reshape(3, -1) - out_centre[:, None]) / zoom
        coords = matrix.T @ rel + src_centre[:, None]
        out[z] = ndimage.map_coordinates(src, coords, order=1, mode="constant", cval=0.0).reshape(ny, nx)
    return out


def grow_phase(phase: np.ndarray, distance: float, *, width: float = 1.0) -> np.ndarray:
    """Move the interface of a tanh-profile phase field outwards by ``distance`` voxels.

    Inverts ``phase = (1 - tanh(d / width)) / 2`` to a signed distance, shifts
    it, and maps back: a cheap stand-in for growth between two instants.
    """
    p = np.clip(np.asarray(phase, np.float64), 1e-6, 1 - 1e-6)
    signed = width * np.arctanh(1 - 2 * p)
    return (0.5 * (1 - np.tanh((signed - distance) / width))).astype(np.float32)
