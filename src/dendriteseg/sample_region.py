"""Where the sample is in a slice: a safety net that keeps dendrites inside it.

Real reconstructions have things around the sample that a model may take
for dendrites: a container wall, packing material, oxide skin, or an
exterior masked to a constant grey. :func:`detect_sample` finds the sample
in a few evenly spaced slices (averaged, about 256 pixels a side):

1. an exterior masked to one constant value (any grey): the pixels of the
   most frequent exact value that touch the border, if they are at least
   ``MIN_EXTERIOR`` of the slice; the sample is everything else;
2. otherwise the bright region: a Gaussian-smoothed slice thresholded by
   Otsu (the melt is the brightest large phase), its connected part that
   reaches the slice's central disc, closed by a disc of ``CLOSE`` of the
   slice side and holes filled (dendrites are darker: those cut by the
   sample's edge leave narrow notches, which this fills, while the broad
   shallow dents of an irregular sample edge stay outside; a convex hull
   took those in, and models call the dark gap there dendrite), if it
   covers at least ``MIN_COVER`` of the slice and is brighter than the rest
   by ``MIN_CONTRAST``;
3. inside that region, the sample's own edge (:func:`own_edge`): real
   reconstructions put things between the sample and a masked or dark
   exterior, a thin dark or bright line (oxide skin), a band of grainy
   material (packing, a crucible wall), air. Along rays from the region's
   centre, with the radius measured as a share of the ray's length to the
   region's rim, the median over angles of the grey level and of the local
   texture (standard deviation over a few pixels) is what the inside of the
   sample looks like near the centre; where both profiles leave that look
   and stay away from it out to the rim, within ``EDGE_BAND`` of the radius
   from the rim, lies the sample's own edge. Each ray then places it where
   its own departure begins near there, smoothed over neighbouring angles;
   the region stops there;
4. a region of step 1 or 2 without an own edge is refused (no mask) when it
   covers more than ``MAX_COVER`` of the slice or its edge runs along the
   slice's border: a scan cropped inside the sample has no outside; else it
   is grown by ``MARGIN`` pixels of the grid it was found on, to cover that
   grid's steps and no more: the edge of the smoothed, Otsu-split region lies
   at the grey halfway between sample and exterior, where the sample ends,
   and a wider margin takes in a rim of the dark exterior, which models call
   dendrite. An own edge is not grown: it lies on the sample's rim already,
   and growing it takes in the edge line. The ``core`` (where the grey
   window is measured) lies ``CORE_INSET`` of the slice side inside the
   edge, twice that inside an own edge.

The result is a 2D mask applied to every slice (samples are cylinders
along z). It is a net under a model that should not need it, not a
substitute: it is logged, and ``--sample-mask none`` turns it off or a
file gives one.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from dendriteseg.errors import InputError
from dendriteseg.preprocess import sample_slices

log = logging.getLogger(__name__)

SIDE = 256  # detection runs on about this many pixels a side
MIN_EXTERIOR = 0.05  # a constant exterior covers at least this share of the slice
MAX_COVER = 0.9  # a region larger than this share of the slice is no sample boundary
MIN_COVER = 0.1  # a bright region smaller than this share is no sample (noise, a bright grain)
MIN_CONTRAST = 0.15  # the bright region's mean above the rest's, in units of the 1st-99th percentile range
CLOSE = 0.05  # notches narrower than twice this share of the slice side are filled
MARGIN = 1  # pixels of the detection grid a region without an own edge grows by
CORE_INSET = 0.01  # the core lies this share of the slice side inside the region's edge
BORDER_TOUCH = 0.05  # a region whose edge runs along more than this share of the border is a crop
ANGLES = 180  # rays of the own-edge search
RADII = 128  # samples along each ray, centre to rim
INNER = (0.15, 0.55)  # the share of the radius whose look is the sample's inside
EDGE_BAND = 0.35  # the own edge lies within this share of the radius from the rim
GREY_DEPART = (
    0.15  # darker than the inside's darkest phase, or brighter than its melt, by this share of the window
)
TEXTURE_DEPART = 1.8  # local standard deviation this many times the inside's median
TEXTURE_SIGMA = 1.5  # pixels: the scale of the local standard deviation (grains of 2-8 px)
RIM_SKIP = 4.0  # pixels next to the rim left out (the step to the exterior itself)


@dataclass
class SampleRegion:
    """A detected (or given) sample region: ``mask`` (y, x, or one per slice), how it was found, and
    its ``core``: the region well inside its edge (``CORE_INSET``, module notes), where the
    grey window is measured; a given mask is its own core."""

    mask: np.ndarray
    how: str
    core: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.core is None or not self.core.any():
            self.core = self.mask

    @property
    def share(self) -> float:
        return float(self.mask.mean())

    @property
    def radius(self) -> float:
        """The radius (px) of a disc of the region's area."""
        mask = self.mask if self.mask.ndim == 2 else self.mask.any(axis=0)
        return float(np.sqrt(mask.sum() / np.pi))

    def describe(self) -> str:
        return (
            f"sample region ({self.how}): {100 * self.share:.1f} % of the slice, "
            f"radius {self.radius:.0f} px; nothing dendrite outside it"
        )


def _slices(volume: Any, count: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` evenly spaced slices and their mean (non-finite voxels left out)."""
    stack = sample_slices(volume, count)
    finite = np.isfinite(stack)
    total = np.where(finite, stack, 0.0).sum(axis=0)
    counts = finite.sum(axis=0)
    mean = np.where(counts > 0, total / np.maximum(counts, 1), np.nan)
    return stack, mean.astype(np.float32)


def _constant_exterior(image: np.ndarray) -> np.ndarray | None:
    """Pixels of the most frequent exact value that touch the border, when they are many."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return None
    values, counts = np.unique(finite, return_counts=True)
    value = values[np.argmax(counts)]
    same = image == value
    if same.mean() < MIN_EXTERIOR:
        return None
    labels, _ = ndimage.label(same)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    exterior = np.isin(labels, border[border > 0])
    return exterior if exterior.mean() >= MIN_EXTERIOR else None


def _bright_region(image: np.ndarray) -> np.ndarray | None:
    from skimage.filters import threshold_otsu
    from skimage.morphology import disk

    finite = np.isfinite(image)
    if not finite.any():
        return None
    lo, hi = np.percentile(image[finite], (1, 99))
    norm = np.clip((np.where(finite, image, lo) - lo) / max(hi - lo, 1e-12), 0, 1)
    smooth = ndimage.gaussian_filter(norm, 1.0)
    bright = ndimage.binary_opening(smooth > threshold_otsu(smooth), disk(1))
    labels, count = ndimage.label(bright)
    if count == 0:
        return None
    ny, nx = image.shape
    yy, xx = np.ogrid[:ny, :nx]
    central = (yy - (ny - 1) / 2) ** 2 + (xx - (nx - 1) / 2) ** 2 <= (0.1 * min(ny, nx)) ** 2
    touching = np.unique(labels[central & bright])
    if touching.size == 0:
        return None
    sizes = ndimage.sum(bright, labels, touching)
    region = _close(labels == touching[int(np.argmax(sizes))], max(1, int(round(CLOSE * min(ny, nx)))))
    if (
        region.mean() < MIN_COVER
        or region.all()
        or smooth[region].mean() - smooth[~region].mean() < MIN_CONTRAST
    ):
        return None
    return region


def _close(region: np.ndarray, radius: int) -> np.ndarray:
    """``region`` closed by a disc of ``radius`` (padded: the slice edge cuts nothing), holes filled."""
    from skimage.morphology import disk

    pad = radius + 1
    closed = ndimage.binary_closing(np.pad(region, pad), disk(radius))[pad:-pad, pad:-pad]
    return ndimage.binary_fill_holes(closed)


def _along_border(region: np.ndarray) -> float:
    edge = np.concatenate([region[0], region[-1], region[:, 0], region[:, -1]])
    return float(edge.mean())


@dataclass
class _Rays:
    """Rays from a region's centre: angles, rim radius per angle, sampling positions."""

    centre: tuple[float, float]
    theta: np.ndarray
    rim: np.ndarray  # pixels from the centre to the region's rim, per angle
    t: np.ndarray  # positions along each ray, as shares of its rim radius

    def coords(self, t: np.ndarray | None = None) -> np.ndarray:
        t = self.t if t is None else t
        r = self.rim[:, None] * t[None, :]
        cy, cx = self.centre
        return np.stack([cy + r * np.sin(self.theta)[:, None], cx + r * np.cos(self.theta)[:, None]])


def _rays(region: np.ndarray) -> _Rays | None:
    """Rays from the centre of ``region`` to its rim (the first pixel outside along each)."""
    ys, xs = np.nonzero(region)
    if ys.size == 0:
        return None
    centre = (float(ys.mean()), float(xs.mean()))
    theta = np.linspace(0.0, 2 * np.pi, ANGLES, endpoint=False)
    steps = np.arange(0.0, float(np.hypot(*region.shape)), 0.5)
    probe = _Rays(centre, theta, np.ones(ANGLES), steps)
    inside = ndimage.map_coordinates(region.astype(np.float32), probe.coords(), order=0, cval=0.0) > 0.5
    first_out = np.argmax(~inside, axis=1)  # along each ray, the first step outside
    first_out[inside.all(axis=1)] = steps.size - 1
    rim = steps[first_out]
    if np.median(rim) < 4 * RIM_SKIP:
        return None
    return _Rays(centre, theta, np.maximum(rim, 1.0), np.linspace(0.0, 1.0, RADII))


def _local_std(norm: np.ndarray) -> np.ndarray:
    mean = ndimage.gaussian_filter(norm, TEXTURE_SIGMA)
    return np.sqrt(np.maximum(ndimage.gaussian_filter(norm**2, TEXTURE_SIGMA) - mean**2, 0.0))


def _departure(
    image: np.ndarray, region: np.ndarray, rays: _Rays, stack: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per ray and position, whether the grey level and the texture leave the inside's look
    (angles x positions of bool), and the positions left out next to the rim (bool per position).
    The texture is each slice's of ``stack`` (the slices ``image`` is the mean of), averaged:
    grains change from slice to slice, and a mean of slices smooths them away."""
    finite = np.isfinite(image) & region
    if finite.sum() < 100:
        return None
    lo, hi = np.percentile(image[finite], (1, 99))
    scale = max(hi - lo, 1e-12)
    norm = np.clip((np.where(np.isfinite(image), image, lo) - lo) / scale, 0, 1)
    slices = image[None] if stack is None else stack
    std = np.mean(
        [_local_std(np.clip((np.where(np.isfinite(s), s, lo) - lo) / scale, 0, 1)) for s in slices], 0
    )
    coords = rays.coords()
    grey = ndimage.map_coordinates(ndimage.gaussian_filter(norm, 0.7), coords, order=1)
    texture = ndimage.map_coordinates(std, coords, order=1)
    inner = (rays.t >= INNER[0]) & (rays.t <= INNER[1])
    solid, melt = (float(v) for v in np.percentile(grey[:, inner], (5, 80)))
    noise = float(np.median(texture[:, inner]))
    if noise <= 0:
        return None
    # unlike anything inside: textured (grains), darker than its darkest phase, brighter than the melt
    departs = (texture > TEXTURE_DEPART * noise) | (grey < solid - GREY_DEPART) | (grey > melt + GREY_DEPART)
    near_rim = rays.t > 1.0 - RIM_SKIP / float(np.median(rays.rim))
    return departs, near_rim


def own_edge(image: np.ndarray, region: np.ndarray, stack: np.ndarray | None = None) -> np.ndarray | None:
    """The part of ``region`` inside the sample's own edge (module notes, step 3); None where the
    region's outer band looks like its inside (the region is the sample). ``stack``: the slices
    ``image`` is the mean of, for their texture."""
    rays = _rays(region)
    if rays is None:
        return None
    found = _departure(image, region, rays, stack)
    if found is None:
        return None
    departs, near_rim = found
    usable = ~near_rim
    if usable.sum() < 8:
        return None
    outside = np.median(departs, axis=0) > 0.5  # most rays at this position look unlike the inside
    outside[near_rim] = True
    # the own edge: the start of the run of "outside" positions that reaches the rim
    inner_run = np.nonzero(~outside)[0]
    if inner_run.size == 0:
        return None
    start = int(inner_run[-1]) + 1
    t_edge = float(rays.t[min(start, rays.t.size - 1)])
    last_usable = float(rays.t[usable][-1])
    if t_edge >= last_usable or t_edge < 1.0 - EDGE_BAND:
        return None  # nothing unlike the inside before the rim, or no sample inside it
    # each ray: where its last run of departures begins, near the common edge
    window = np.nonzero(np.abs(rays.t - t_edge) <= 0.05)[0]
    calm = ~departs[:, window]  # positions in the window that look like the inside
    last_calm = np.where(calm.any(axis=1), window.size - 1 - np.argmax(calm[:, ::-1], axis=1), -1)
    begins = rays.t[np.minimum(window[0] + last_calm + 1, rays.t.size - 1)]
    return region & _inside_edge(rays, begins, region.shape)


def _ellipse(model: Any) -> tuple[float, float, float, float, float]:
    """Centre x, y, semi-axes and angle of a fitted scikit-image EllipseModel (0.26 renamed them)."""
    if hasattr(model, "axis_lengths"):
        (xc, yc), (a, b), angle = model.center, model.axis_lengths, model.theta
    else:  # scikit-image < 0.26
        xc, yc, a, b, angle = model.params
    return float(xc), float(yc), float(a), float(b), float(angle)


@functools.cache
def _radial_ellipse_model() -> type:
    """scikit-image's EllipseModel with the residual measured along the ray from the ellipse's centre:
    the edge points lie on rays from near it, and this residual is a few array operations where the
    geometric distance solves one optimisation per point (seconds per slice, in every segment call)."""
    from skimage.measure import EllipseModel

    class RadialEllipse(EllipseModel):
        def residuals(self, data: np.ndarray, *args: Any) -> np.ndarray:
            xc, yc, a, b, angle = _ellipse(self)
            dx, dy = data[:, 0] - xc, data[:, 1] - yc
            if not (np.isfinite([a, b, angle]).all() and a > 0 and b > 0):
                return np.full(len(data), np.inf)
            c, s = np.cos(angle), np.sin(angle)
            rho = np.hypot((dx * c + dy * s) / a, (-dx * s + dy * c) / b)  # 1 on the ellipse
            r = np.hypot(dx, dy)
            return np.abs(r - r / np.maximum(rho, 1e-12))  # to where the ray through the point crosses

    return RadialEllipse


def _inside_edge(rays: _Rays, per_ray: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels inside the edge found along each ray: an ellipse fitted robustly to those points
    (a dendrite that reaches the edge makes its rays stop early: outliers), or, where no ellipse
    fits most of them, the points themselves smoothed over neighbouring angles."""
    from skimage.measure import ransac

    cy, cx = rays.centre
    radius = rays.rim * per_ray
    points = np.stack([cx + radius * np.cos(rays.theta), cy + radius * np.sin(rays.theta)], axis=1)
    ny, nx = shape
    yy, xx = np.mgrid[:ny, :nx].astype(np.float32)
    tolerance = max(1.0, 0.015 * float(np.median(rays.rim)))
    model, inliers = ransac(
        points, _radial_ellipse_model(), min_samples=5, residual_threshold=tolerance, max_trials=200, rng=0
    )
    if model is not None and inliers is not None and inliers.mean() >= 0.5:
        xc, yc, a, b, angle = _ellipse(model)
        a, b = a + 2 * TEXTURE_SIGMA, b + 2 * TEXTURE_SIGMA  # the departure starts blurred inward by that
        c, s = np.cos(angle), np.sin(angle)
        u = ((xx - xc) * c + (yy - yc) * s) / a
        v = (-(xx - xc) * s + (yy - yc) * c) / b
        return u**2 + v**2 <= 1.0
    smooth = ndimage.median_filter(rays.rim * per_ray, size=15, mode="wrap") + 2 * TEXTURE_SIGMA
    angle = np.mod(np.arctan2(yy - cy, xx - cx), 2 * np.pi)
    allowed = np.interp(angle, np.append(rays.theta, 2 * np.pi), np.append(smooth, smooth[0]))
    return np.hypot(yy - cy, xx - cx) < allowed


def detect_sample(volume: Any) -> SampleRegion | None:
    """The sample's region in ``volume`` (a Volume or array, 2D or 3D); None where none is found.

    See the module notes for the rules.
    """
    stack, image = _slices(volume)
    ny, nx = image.shape
    step = max(1, int(round(max(ny, nx) / SIDE)))
    small = image[step // 2 :: step, step // 2 :: step] if step > 1 else image
    small_stack = stack[:, step // 2 :: step, step // 2 :: step] if step > 1 else stack
    exterior = _constant_exterior(small)
    how = "constant exterior"
    if exterior is not None:
        region = ndimage.binary_fill_holes(~exterior)
    else:
        region, how = _bright_region(small), "bright region around the centre"
    if region is None or not region.any():
        return None
    inset = max(1, int(round(CORE_INSET * min(small.shape))))
    inner = own_edge(small, region, small_stack)
    if inner is not None and inner.any() and _along_border(inner) <= BORDER_TOUCH:
        # the own edge is placed outside the sample's rim already; growing it would take in the line
        region, how = ndimage.binary_fill_holes(inner), f"the sample's own edge inside the {how}"
        core = ndimage.binary_erosion(region, iterations=2 * inset)
    elif region.mean() > MAX_COVER or _along_border(region) > BORDER_TOUCH:
        return None  # no outside to exclude: cropped inside the sample, or no sample boundary in view
    else:
        core = ndimage.binary_erosion(region, iterations=inset)
        region = ndimage.binary_dilation(region, iterations=MARGIN)
    return SampleRegion(_full_size(region, step, (ny, nx)), how, _full_size(core, step, (ny, nx)))


def _full_size(mask: np.ndarray, step: int, shape: tuple[int, int]) -> np.ndarray:
    """A mask found on every ``step``-th pixel, brought back to ``shape``."""
    ny, nx = shape
    full = np.repeat(np.repeat(mask, step, axis=0), step, axis=1)
    full = np.pad(full, ((0, max(0, ny - full.shape[0])), (0, max(0, nx - full.shape[1]))), mode="edge")
    return full[:ny, :nx]


def sample_region_for(volume: Any, spec: Any) -> SampleRegion | None:
    """The region a ``--sample-mask`` setting asks for: "auto" (detect), "none", a file or an array."""
    if spec is None or (isinstance(spec, str) and spec == "none"):
        return None
    if isinstance(spec, str) and spec == "auto":
        return detect_sample(volume)
    from dendriteseg.io import as_volume
    from dendriteseg.io.labels import as_binary_labels

    with as_volume(spec, "sample mask") as given:
        mask = as_binary_labels(given.read(), given.source).astype(bool)
    shape = tuple(volume.shape[-2:])
    if mask.ndim == 3:
        if mask.shape[0] != 1 and tuple(mask.shape) != tuple(volume.shape):
            raise InputError(f"{spec}: sample mask of shape {mask.shape} does not fit volume {volume.shape}")
        mask = mask.any(axis=0) if mask.shape[0] == 1 else mask
    if mask.shape[-2:] != shape:
        raise InputError(f"{spec}: sample mask of shape {mask.shape} does not fit slices of {shape}")
    return SampleRegion(mask, f"from {spec}")
