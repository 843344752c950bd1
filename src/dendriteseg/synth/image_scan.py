"""The image-domain generator ("image scans"): a reconstruction painted directly.

The second of the package's two generators (the first is the CT forward
model of :mod:`dendriteseg.synth.ct`). :func:`paint_image_scan` paints what
a reconstruction shows without simulating projections:
a cylindrical sample in air, solid darker than melt (about 1 : 1.5), a
diffuse interface, detector-like blur, noise, ring artefacts centred on the
rotation axis and a slow intensity drift along z.
:func:`dendriteseg.synth.scan.make_image_scan` draws its settings over wide
ranges and adds the exact label; ``synth dataset --generator image`` builds
training datasets from it; tests use it for small volumes made in
milliseconds.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from dendriteseg.rng import Rng
from dendriteseg.rng import as_generator as _rng


def cylinder_mask(shape_yx: tuple[int, int], radius_fraction: float = 0.46) -> np.ndarray:
    """Disc of the sample's cross-section, centred, radius as a share of the width."""
    ny, nx = shape_yx
    yy, xx = np.ogrid[:ny, :nx]
    r = radius_fraction * min(ny, nx)
    return (yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2 <= r * r


def paint_image_scan(
    phase: np.ndarray,
    *,
    melt: float = 1.0,
    solid: float = 0.67,
    air: float = 0.12,
    noise: float = 0.06,
    blur: float = 0.8,
    rings: float = 0.03,
    drift: float = 0.05,
    radius_fraction: float = 0.46,
    rng: Rng = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Turn a solid-fraction field into a noisy CT-like image.

    Parameters
    ----------
    phase : array (z, y, x) of float in [0, 1]
        Solid fraction (1 = dendrite).
    melt, solid, air : float
        Attenuation levels.
    noise : float
        Standard deviation of the Gaussian noise, relative to ``melt``.
    blur : float
        Gaussian blur sigma in voxels (in-plane and along z).
    rings : float
        Amplitude of ring artefacts.
    drift : float
        Relative intensity change from the first to the last slice.
    rng : int or numpy.random.Generator

    Returns
    -------
    image : float32 array (z, y, x)
    sample : bool array (y, x)
        The sample's cross-section (everything outside is air).
    """
    gen = _rng(rng)
    nz, ny, nx = phase.shape
    sample = cylinder_mask((ny, nx), radius_fraction)
    image = melt + (solid - melt) * phase.astype(np.float32)
    image = np.where(sample[None], image, np.float32(air)).astype(np.float32)
    if blur > 0:
        image = ndimage.gaussian_filter(image, blur)
    if rings > 0:
        yy, xx = np.indices((ny, nx))
        radius = np.hypot(yy - (ny - 1) / 2, xx - (nx - 1) / 2)
        profile = gen.standard_normal(int(radius.max()) + 2) * (gen.random(int(radius.max()) + 2) < 0.15)
        image += (rings * melt * profile[radius.astype(int)]).astype(np.float32)[None]
    if drift:
        image *= (1.0 + drift * np.linspace(0, 1, nz, dtype=np.float32))[:, None, None]
    if noise > 0:
        image += (noise * melt * gen.standard_normal(image.shape)).astype(np.float32)
    return image.astype(np.float32), sample
