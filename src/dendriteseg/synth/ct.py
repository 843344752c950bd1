"""A CT forward model: from a solid-fraction field to a reconstructed XCT scan.

Per z-slice (parallel beam, as at a synchrotron):

1. attenuation map: a cylindrical sample in air, optionally inside a
   holder tube (a ring of its own attenuation, e.g. alumina or boron
   nitride, label 0); solid below melt (ratio about 1 : 1.5, varied per
   scan), a diffuse interface, a solute halo in the melt around the solid,
   and distractors (pores, oxide particles) that are not dendrite;
2. projections at ``n_views`` angles taken in interlaced order; if the
   structure grows during the scan, each view sees the state at its own
   acquisition time;
3. detector physics: beam hardening (cupping), phase-contrast edge fringes
   (a simple edge term, or Fresnel propagation with optional Paganin phase
   retrieval, :mod:`dendriteseg.synth.beamline`), detector blur, per-pixel
   gain errors and dead pixels (narrow rings), broad full and partial
   detector stripes (broad rings and arcs) and a stripe on the rotation
   axis (a spot at the centre), Poisson photon noise (dense inclusions
   starve it: streaks);
4. filtered back-projection (or SIRT), then blur along z, an intensity
   drift between scans and, optionally, everything beyond a radius masked
   to one grey as reconstruction software does.

The holder tube's wall can be textured (grains darker and brighter than
its mean: a crucible, oxide skin or packing material).

Projectors: astra-toolbox's CPU 2D projector when installed, else
scikit-image's ``radon``/``iradon``. The label is the structure at the
middle of the scan.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage

from dendriteseg.rng import Rng, as_generator
from dendriteseg.synth.beamline import detector_stripes, propagate, retrieve_phase


@dataclass(frozen=True)
class ScanParams:
    """Every knob of the simulated scan (attenuation in units of the melt's).

    Lengths ``radius_fraction``, ``holder_thickness``, ``holder_gap`` and
    ``mask_radius`` are fractions of the slice width; ``holder_thickness=0``
    means no holder, ``mask_radius=0`` no masking. ``fresnel`` and
    ``paganin`` are the propagation and retrieval ``alpha`` in detector
    pixels squared (:mod:`dendriteseg.synth.beamline`), 0 for off; with
    ``fresnel`` on, ``detector_blur`` acts on the intensity instead of the
    line integrals. ``broad_ring_strength`` and ``axis_spot`` are relative
    gain errors; ``holder_texture`` the relative spread of the wall's grains
    (``holder_grain`` px across); ``dense_inclusions`` small particles of
    ``dense_mu`` times the melt's attenuation. ``skin_thickness`` (px) is a
    shell at the sample's surface of ``skin_mu`` times the melt's attenuation
    (an oxide skin: a thin dark or bright line, label 0); ``correlated_noise``
    adds noise of that standard deviation (melt attenuation units) smoothed
    over ``noise_correlation`` px to the reconstruction, as phase retrieval
    and binning leave it.
    """

    n_views: int = 360
    interlace: int = 4
    photons: float = 8.0e3
    mu_melt: float = 1.0
    solid_ratio: float = 0.67
    solid_ratio_spread: float = 0.05
    transmission: float = 0.15
    halo: float = 0.06
    halo_width: float = 2.0
    interface_blur: float = 0.6
    radius_fraction: float = 0.45
    holder_thickness: float = 0.0
    holder_gap: float = 0.0
    holder_mu: float = 0.5
    ring_strength: float = 0.004
    dead_pixels: int = 2
    beam_hardening: float = 0.05
    phase_contrast: float = 0.0
    detector_blur: float = 0.8
    z_blur: float = 0.6
    drift: float = 0.04
    pores: int = 3
    particles: int = 6
    reconstruction: str = "fbp"
    sirt_iterations: int = 50
    projector: str = "auto"
    fresnel: float = 0.0
    paganin: float = 0.0
    broad_rings: int = 0
    broad_ring_strength: float = 0.05
    broad_ring_width: float = 30.0
    axis_spot: float = 0.0
    dense_inclusions: int = 0
    dense_mu: float = 10.0
    holder_texture: float = 0.0
    holder_grain: float = 1.5
    mask_radius: float = 0.0
    mask_value: float = 0.0
    skin_thickness: float = 0.0
    skin_mu: float = 0.5
    correlated_noise: float = 0.0
    noise_correlation: float = 1.5

    def replace(self, **changes: Any) -> ScanParams:
        return replace(self, **changes)


def _astra_available() -> bool:
    try:
        import astra  # noqa: F401
    except ImportError:
        return False
    return True


class _Projector:
    """Forward and back projection of one (n, n) slice at given angles."""

    def __init__(self, n: int, angles: np.ndarray, backend: str):
        self.n, self.angles = n, angles
        self.n_det = int(math.ceil(n * math.sqrt(2))) + 2
        self.backend = backend
        if backend == "astra":
            import astra

            self._astra = astra
            self.vol_geom = astra.create_vol_geom(n, n)
            self.proj_geom = astra.create_proj_geom("parallel", 1.0, self.n_det, angles)
            self.pid = astra.create_projector("linear", self.proj_geom, self.vol_geom)

    def forward(self, image: np.ndarray) -> np.ndarray:
        if self.backend == "astra":
            sid, sino = self._astra.create_sino(image.astype(np.float32), self.pid)
            self._astra.data2d.delete(sid)
            return sino.astype(np.float64)
        from skimage.transform import radon

        pad = (self.n_det - self.n) // 2
        padded = np.pad(image, pad + 1)
        sino = radon(padded, np.degrees(self.angles), circle=False).T
        start = (sino.shape[1] - self.n_det) // 2
        return sino[:, start : start + self.n_det]

    def reconstruct(self, sino: np.ndarray, method: str, iterations: int) -> np.ndarray:
        if self.backend == "astra":
            astra = self._astra
            rid = astra.data2d.create("-vol", self.vol_geom)
            sid = astra.data2d.create("-sino", self.proj_geom, sino.astype(np.float32))
            cfg = astra.astra_dict("FBP" if method == "fbp" else "SIRT")
            cfg.update(ReconstructionDataId=rid, ProjectionDataId=sid, ProjectorId=self.pid)
            aid = astra.algorithm.create(cfg)
            astra.algorithm.run(aid, 1 if method == "fbp" else iterations)
            out = astra.data2d.get(rid)
            astra.algorithm.delete(aid)
            astra.data2d.delete([rid, sid])
            return out
        from skimage.transform import iradon, iradon_sart

        if method == "fbp":
            image = iradon(sino.T, np.degrees(self.angles), output_size=self.n_det, circle=False)
        else:
            image = None
            for _ in range(max(1, iterations // 10)):
                image = iradon_sart(sino.T, np.degrees(self.angles), image=image)
        start = (image.shape[0] - self.n) // 2
        return image[start : start + self.n, start : start + self.n]

    def close(self) -> None:
        if self.backend == "astra":
            self._astra.projector.delete(self.pid)


def acquisition_times(n_views: int, interlace: int) -> tuple[np.ndarray, np.ndarray]:
    """Angles (radians, sorted) and the time (0..1) at which each was taken.

    Interlaced acquisition: ``interlace`` sub-scans each sweep 0..180 deg,
    sub-scan ``s`` offset by ``s / interlace`` of the angular step, so the
    angles are evenly spaced in the end but neighbours are taken far apart
    in time (the TIMBIR scheme of the paper's beamline).
    """
    interlace = max(1, min(interlace, n_views))
    per = n_views // interlace
    angles, times = [], []
    order = 0
    for s in range(interlace):
        count = per + (1 if s < n_views - per * interlace else 0)
        for v in range(count):
            angles.append((v + s / interlace) * math.pi / count)
            times.append(order / max(n_views - 1, 1))
            order += 1
    angles, times = np.asarray(angles), np.asarray(times)
    sort = np.argsort(angles)
    return angles[sort], times[sort]


def _distractors(
    shape: tuple[int, int, int], params: ScanParams, sample: np.ndarray, gen: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean masks of pores (air), oxide particles (bright) and dense inclusions, inside the sample."""
    masks = [np.zeros(shape, bool) for _ in range(3)]
    ys, xs = np.nonzero(sample)
    if ys.size == 0:
        return masks[0], masks[1], masks[2]
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    size = min(shape[1:])
    kinds = [
        (params.pores, (0.02 * size, 0.05 * size)),
        (params.particles, (0.006 * size, 0.015 * size)),
        (params.dense_inclusions, (0.6, max(0.006 * size, 1.5))),
    ]
    for target, (count, (rmin, rmax)) in zip(masks, kinds, strict=True):
        for _ in range(count):
            k = gen.integers(ys.size)
            cz = gen.uniform(0, shape[0])
            r = max(gen.uniform(rmin, rmax), 1.0 if rmin >= 1 else 0.6)
            target |= (zz - cz) ** 2 + (yy - ys[k]) ** 2 + (xx - xs[k]) ** 2 <= r * r
    return tuple(m & sample[None] for m in masks)


def holder_grains(shape: tuple[int, int, int], params: ScanParams, gen: np.random.Generator) -> np.ndarray:
    """Relative attenuation of the holder wall, voxel by voxel: 1 + texture x grains.

    Grains are smoothed white noise (``holder_grain`` px), sharpened to give
    distinct dark and bright grains, scaled to a spread of ``holder_texture``.
    """
    field = ndimage.gaussian_filter(gen.standard_normal(shape), params.holder_grain)
    field = np.sign(field) * np.abs(field / (field.std() + 1e-12)) ** 1.5
    return np.clip(1 + params.holder_texture * field / (field.std() + 1e-12), 0.0, None).astype(np.float32)


def holder_ring(n: int, params: ScanParams) -> np.ndarray:
    """Boolean (n, n) mask of the holder tube's wall around the sample (empty without a holder)."""
    yy, xx = np.ogrid[:n, :n]
    r = np.sqrt((yy - (n - 1) / 2) ** 2 + (xx - (n - 1) / 2) ** 2)
    inner = (params.radius_fraction + params.holder_gap) * n
    outer = min(inner + params.holder_thickness * n, 0.5 * n - 1)
    if params.holder_thickness <= 0 or outer <= inner:
        return np.zeros((n, n), bool)
    return (r >= inner) & (r < outer)


def attenuation(
    phase: np.ndarray,
    sample: np.ndarray,
    params: ScanParams,
    solid_ratio: float,
    pores: np.ndarray,
    particles: np.ndarray,
    holder: np.ndarray | None = None,
    dense: np.ndarray | None = None,
    grains: np.ndarray | None = None,
    skin: np.ndarray | None = None,
) -> np.ndarray:
    """Attenuation map of one slice (units of the melt's attenuation); ``grains``
    (relative attenuation, the slice's shape) textures the holder; ``skin`` is the sample's surface shell."""
    melt = params.mu_melt
    solid = melt * solid_ratio
    phi = (
        ndimage.gaussian_filter(phase.astype(np.float64), params.interface_blur)
        if params.interface_blur > 0
        else phase.astype(np.float64)
    )
    mu = melt + (solid - melt) * phi
    if params.halo > 0:
        # solute rejected by the growing solid enriches the melt next to it
        spread = ndimage.gaussian_filter(phase.astype(np.float64), params.halo_width)
        mu += params.halo * melt * np.clip(spread - phi, 0, None) * (1 - phi)
    mu[particles] = 1.8 * melt
    mu[pores] = 0.02 * melt
    if dense is not None:
        mu[dense] = params.dense_mu * melt
    if skin is not None:
        mu[skin] = params.skin_mu * melt
    mu[~sample] = 0.0
    if holder is not None:
        mu[holder] = params.holder_mu * melt * (1.0 if grains is None else grains[holder])
    return mu


def simulate_scan(
    phase: np.ndarray,
    *,
    phase_end: np.ndarray | None = None,
    params: ScanParams = ScanParams(),
    rng: Rng = None,
) -> dict[str, Any]:
    """Simulate an XCT scan of a structure.

    Parameters
    ----------
    phase : float array (z, y, x) in [0, 1]
        Solid fraction at the start of the scan (y and x must be equal).
    phase_end : float array, optional
        The structure at the end of the scan; views in between see a blend
        weighted by their acquisition time (growth during the scan).
    params : ScanParams
    rng : int or numpy.random.Generator

    Returns
    -------
    dict
        ``image`` (float32, z, y, x), ``label`` (uint8, 1 = dendrite, the structure at mid-scan,
        minus pores and particles), ``phase`` (float32 mid-scan solid fraction), ``sample`` (bool,
        y, x) and ``meta`` (every parameter, the drawn values, the measured contrasts).
    """
    gen = as_generator(rng)
    phase = np.asarray(phase, np.float32)
    nz, ny, nx = phase.shape
    _check_inputs(phase, phase_end, params)
    backend = params.projector
    if backend == "auto":
        backend = "astra" if _astra_available() else "skimage"
    yy, xx = np.ogrid[:ny, :nx]
    radius = params.radius_fraction * nx
    sample = (yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2 <= radius**2
    skin = (
        sample & ((yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2 > (radius - params.skin_thickness) ** 2)
        if params.skin_thickness > 0
        else None
    )
    solid_ratio = float(params.solid_ratio * (1 + params.solid_ratio_spread * gen.standard_normal()))
    pores, particles, dense = _distractors(phase.shape, params, sample, gen)
    holder = holder_ring(nx, params)
    grains = holder_grains(phase.shape, params, gen) if params.holder_texture > 0 and holder.any() else None
    angles, times = acquisition_times(params.n_views, params.interlace)
    projector = _Projector(nx, angles, backend)
    gain, dead, stripes = _detector_gain(len(angles), projector.n_det, params, radius, nx, gen)
    scale = -math.log(params.transmission) / (params.mu_melt * 2 * radius)
    image = np.empty(phase.shape, np.float32)
    w = times[:, None]

    def slice_map(source: np.ndarray, z: int) -> np.ndarray:
        g = None if grains is None else grains[z]
        return attenuation(
            source[z], sample, params, solid_ratio, pores[z], particles[z], holder, dense[z], g, skin
        )

    try:
        for z in range(nz):
            sino = projector.forward(slice_map(phase, z))
            if phase_end is not None:
                sino = (1 - w) * sino + w * projector.forward(slice_map(phase_end, z))
            measured = _measure(sino * scale, params, gain, gen) / scale
            image[z] = projector.reconstruct(measured, params.reconstruction, params.sirt_iterations)
    finally:
        projector.close()
    if params.z_blur > 0 and nz > 1:
        image = ndimage.gaussian_filter1d(image, params.z_blur, axis=0)
    if params.correlated_noise > 0:
        field = ndimage.gaussian_filter(
            gen.standard_normal(image.shape), (0.5, *(params.noise_correlation,) * 2)
        )
        image += (params.correlated_noise * field / (field.std() + 1e-12)).astype(np.float32)
    gain_drift = float(1 + params.drift * gen.standard_normal())
    offset_drift = float(params.drift * 0.5 * gen.standard_normal())
    image = (image * gain_drift + offset_drift).astype(np.float32)
    if params.mask_radius > 0:
        image[:, (yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2 > (params.mask_radius * nx) ** 2] = (
            params.mask_value
        )
    mid = phase if phase_end is None else 0.5 * (phase + phase_end)
    label = (mid > 0.5) & sample[None] & ~pores & ~particles & ~dense
    if skin is not None:
        label &= ~skin[None]
    label = label.astype(np.uint8)
    meta = {
        "scan": asdict(params),
        "projector": backend,
        "solid_ratio": solid_ratio,
        "gain_drift": gain_drift,
        "offset_drift": offset_drift,
        "dead_pixels": sorted(int(d) for d in dead),
        "detector_stripes": stripes,
        "growth_during_scan": phase_end is not None,
        "cnr": contrast_to_noise(image, label, sample),
        "visible_contrast": visible_contrast(image, label, sample),
    }
    return {"image": image, "label": label, "phase": mid.astype(np.float32), "sample": sample, "meta": meta}


def _detector_gain(
    n_views: int, n_det: int, params: ScanParams, radius: float, nx: int, gen: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[dict[str, float]]]:
    """The detector's gain (views, pixels), fixed for the whole scan: per-pixel errors (narrow rings),
    weak pixels (half rings after FBP), broad and partial stripes and an axis stripe; also the weak
    pixels and the stripes drawn."""
    gain = 1.0 + params.ring_strength * gen.standard_normal(n_det)
    dead = gen.choice(n_det, min(params.dead_pixels, n_det), replace=False)
    gain[dead] = gen.uniform(0.8, 0.95, dead.size)
    stripes: list[dict[str, float]] = []
    gain = gain[None]
    if params.broad_rings > 0 or params.axis_spot > 0:
        bands, stripes = detector_stripes(
            n_views,
            n_det,
            broad=params.broad_rings,
            strength=params.broad_ring_strength,
            max_width=params.broad_ring_width,
            axis_spot=params.axis_spot,
            gen=gen,
            reach=radius + (params.holder_gap + params.holder_thickness) * nx,
        )
        gain = gain * bands
    return gain, dead, stripes


def _check_inputs(phase: np.ndarray, phase_end: np.ndarray | None, params: ScanParams) -> None:
    ny, nx = phase.shape[1:]
    if ny != nx:
        raise ValueError(f"slices must be square for the CT geometry, got {ny} x {nx}")
    if phase_end is not None and phase_end.shape != phase.shape:
        raise ValueError("phase_end must have the shape of phase")
    if params.reconstruction not in ("fbp", "sirt"):
        raise ValueError(f"reconstruction must be 'fbp' or 'sirt', got {params.reconstruction!r}")


def _measure(p: np.ndarray, params: ScanParams, gain: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """Measured line integrals (in units of ``p``) from true ones: the detector physics of step 3."""
    if params.beam_hardening:
        p = p - params.beam_hardening * p**2
    if params.phase_contrast:
        # a simple edge term for propagation-based phase contrast: bright/dark fringes at edges
        p = p - params.phase_contrast * ndimage.convolve1d(p, [1.0, -2.0, 1.0], axis=1)
    if params.fresnel > 0:
        intensity = propagate(np.exp(-p), params.fresnel, params.detector_blur)
    else:
        if params.detector_blur > 0:
            p = ndimage.gaussian_filter1d(p, params.detector_blur, axis=1)
        intensity = np.exp(-p)
    counts = gen.poisson(params.photons * gain * intensity)
    measured = np.maximum(counts, 1) / params.photons
    return -np.log(retrieve_phase(measured, params.paganin))


def contrast_to_noise(image: np.ndarray, label: np.ndarray, sample: np.ndarray) -> float:
    """(melt mean - solid mean) / melt standard deviation, away from interfaces."""
    inside = np.broadcast_to(sample, label.shape)
    for depth in (2, 1, 0):  # stay away from interfaces where the structure allows
        solid = (ndimage.binary_erosion(label == 1, iterations=depth) if depth else label == 1) & inside
        melt = ndimage.binary_erosion((label == 0) & inside, iterations=depth + 1)
        if solid.sum() >= 10 and melt.sum() >= 10:
            return float((image[melt].mean() - image[solid].mean()) / (image[melt].std() + 1e-12))
    return float("nan")


def visible_contrast(image: np.ndarray, label: np.ndarray, sample: np.ndarray, sigma: float = 6.0) -> float:
    """How well the eye can see the solid against the melt around it: the median of (local melt
    grey - grey) over the solid, over a robust spread (1.4826 x the median absolute deviation) of the
    melt about its local grey.

    The local melt grey is the melt's mean within about ``sigma`` px in the slice (a normalised
    Gaussian average over melt voxels only), so cupping, broad rings and slow shading do not count as
    noise and do not hide a dendrite that stands out from its neighbourhood; melt more than 3 spreads
    from its local grey (pores, particles, streaks) is left out of it on a second pass. NaN when the
    scan holds under 10 voxels of either.
    """
    inside = np.broadcast_to(sample, label.shape)
    melt = ndimage.binary_erosion((label == 0) & inside, iterations=1)
    solid = ndimage.binary_erosion(label == 1, iterations=1) & inside
    if solid.sum() < 10:
        solid = (label == 1) & inside
    if solid.sum() < 10 or melt.sum() < 10:
        return float("nan")
    spread = (0.0, sigma, sigma)
    for _ in range(2):  # the second pass leaves out of the local grey what stands out of the melt
        total = ndimage.gaussian_filter(np.where(melt, image, 0.0).astype(np.float64), spread)
        weight = ndimage.gaussian_filter(melt.astype(np.float64), spread)
        near = weight > 0.05  # some melt within reach
        residual = image - total / np.maximum(weight, 1e-6)
        melt_res = residual[melt & near]
        solid_res = residual[solid & near]
        if solid_res.size < 10 or melt_res.size < 10:
            return float("nan")
        noise = 1.4826 * np.median(np.abs(melt_res - np.median(melt_res)))
        melt = melt & (np.abs(residual) < 3 * noise)  # pores, particles, streaks
    return float(-np.median(solid_res) / (noise + 1e-12))
