"""Augmentations of image and label together, batched in torch on any device.

Geometry (applied to image and label alike): flips in x, y and z, an
in-plane rotation, shear and zoom (the same for every slice of a patch,
since the z axis is the scan's; the zoom makes a model indifferent to the
size of the dendrites). Intensity (image only): a random monotone grey-scale
curve (``curve``: the grey levels of air, solid and melt move apart or
together, as another detector, reconstruction or alloy would put them),
brightness, contrast, gamma, and the XCT artefacts a model must ignore: noise, blur, ring
artefacts around a random centre, streaks, and an intensity drift along z; opt-in, what
real scans put around and over the sample: an exterior masked to a grey or filled with
grainy material (``p_exterior``) and broad rings and arcs (``p_broad_rings``); and
a patch made of one of its slices repeated along z, noise and all (``p_single``): what a
3D model sees of a single 2D image (:mod:`dendriteseg.infer.stream` pads it so), where
pixel noise is the same in every slice and looks like structure that runs through them.
``rewindow`` is applied earlier, by the patch sampler (it needs the whole
volume): a patch is cut from a random crop of its scan and normalised by
that crop's window, as if the user had cropped the scan to the sample.

Input ``x`` is ``(B, 1, Z, H, W)`` (2D patches use Z = 1), ``y`` is
``(B, Z, H, W)`` of 0/1. Randomness comes from a ``torch.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dendriteseg.errors import InputError, check_ranges


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges and probabilities (0 turns a transform off)."""

    flip: bool = True
    rotate_deg: float = 45.0
    shear_deg: float = 30.0
    # zoom, gamma, curve and rewindow are off by default: each trades scores on
    # one kind of shift for another (benchmarks/robustness.py and
    # benchmarks/other_generator.py measure them); recipes turn on what they use
    zoom_min: float = 1.0
    zoom_max: float = 1.0
    p_affine: float = 0.7
    brightness: float = 0.1
    contrast: float = 0.25
    gamma: float = 0.0
    curve: float = 0.0  # probability of a random monotone grey-scale curve
    curve_points: int = 3
    rewindow: float = 0.0
    noise: float = 0.08
    p_blur: float = 0.2
    rings: float = 0.05
    p_rings: float = 0.3
    streaks: float = 0.05
    p_streaks: float = 0.2
    drift: float = 0.1
    p_exterior: float = 0.0  # the air replaced by a constant grey or a grainy band (real exteriors)
    p_broad_rings: float = 0.0  # rings and arcs 8-40 px wide, both signs, as strong as the solid's contrast
    p_single: float = 0.0  # one slice of the patch repeated along z, as a 3D model sees a 2D image
    image_interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        nonnegative = ("rotate_deg", "brightness", "gamma", "noise", "rings", "streaks", "drift")
        check_ranges(self, {name: (0.0, None, True) for name in nonnegative}, "augment.")
        check_ranges(self, {"shear_deg": (0.0, 80.0, True), "contrast": (0.0, 1.0, True)}, "augment.")
        if self.image_interpolation not in ("bilinear", "nearest", "bicubic"):
            raise InputError(
                f"augment.image_interpolation: bilinear, nearest or bicubic, got {self.image_interpolation!r}"
            )
        if not 0 < self.zoom_min <= 1 <= self.zoom_max:
            raise InputError(
                "augment.zoom_min/zoom_max: need 0 < zoom_min <= 1 <= zoom_max, "
                f"got {self.zoom_min}, {self.zoom_max}"
            )
        if self.curve_points < 1:
            raise InputError(f"augment.curve_points: at least 1, got {self.curve_points}")
        for name in (
            "p_affine",
            "curve",
            "rewindow",
            "p_blur",
            "p_rings",
            "p_streaks",
            "p_exterior",
            "p_broad_rings",
            "p_single",
        ):
            if not 0 <= getattr(self, name) <= 1:
                raise InputError(f"augment.{name}: a probability between 0 and 1, got {getattr(self, name)}")


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=gen, device="cpu").to(device) * (high - low) + low


def _chance(n: int, p: float, gen: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=gen, device="cpu") < p).to(device)


def geometric(
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: AugmentConfig,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flips, rotation and shear, identical for image and label."""
    b, _, z, h, w = x.shape
    dev = x.device
    if cfg.flip:
        for dim_x, dim_y in ((2, 1), (3, 2), (4, 3)):  # z, y, x
            if dim_x == 2 and z == 1:
                continue
            mask = _chance(b, 0.5, gen, dev)
            if mask.any():
                x = torch.where(mask.view(b, 1, 1, 1, 1), x.flip(dim_x), x)
                y = torch.where(mask.view(b, 1, 1, 1), y.flip(dim_y), y)
    zooms = cfg.zoom_min != 1 or cfg.zoom_max != 1
    if cfg.p_affine <= 0 or (cfg.rotate_deg <= 0 and cfg.shear_deg <= 0 and not zooms):
        return x, y
    use = _chance(b, cfg.p_affine, gen, dev)
    angle = torch.deg2rad(_uniform(b, -cfg.rotate_deg, cfg.rotate_deg, gen, dev)) * use
    shear = torch.tan(torch.deg2rad(_uniform(b, -cfg.shear_deg, cfg.shear_deg, gen, dev))) * use
    # log-uniform magnification: structures appear `zoom` times larger
    log_zoom = _uniform(b, math.log(cfg.zoom_min), math.log(cfg.zoom_max), gen, dev) * use
    inverse_zoom = torch.exp(-log_zoom)
    cos, sin = torch.cos(angle) * inverse_zoom, torch.sin(angle) * inverse_zoom
    # (rotation @ shear) / zoom, in normalised (x, y) coordinates of grid_sample
    theta = torch.zeros(b, 2, 3, device=dev, dtype=x.dtype)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = cos * shear - sin
    theta[:, 1, 0] = sin
    theta[:, 1, 1] = sin * shear + cos
    theta = theta.repeat_interleave(z, 0)
    grid = F.affine_grid(theta, (b * z, 1, h, w), align_corners=False)
    xs = x.permute(0, 2, 1, 3, 4).reshape(b * z, 1, h, w)
    ys = y.reshape(b * z, 1, h, w).to(x.dtype)
    xs = F.grid_sample(xs, grid, mode=cfg.image_interpolation, padding_mode="reflection", align_corners=False)
    ys = F.grid_sample(ys, grid, mode="nearest", padding_mode="reflection", align_corners=False)
    x = xs.reshape(b, z, 1, h, w).permute(0, 2, 1, 3, 4)
    y = ys.reshape(b, z, h, w).round().to(y.dtype)
    return x.contiguous(), y.contiguous()


def grey_curve(x: torch.Tensor, points: int, chance: float, gen: torch.Generator) -> torch.Tensor:
    """A random monotone piecewise-linear map of the 0..1 window, per patch.

    The window's ends stay where they are; ``points`` inner knots, evenly
    spaced, each move up or down by up to one knot spacing (then sorted, so
    the map stays monotone and the order air < solid < melt is kept).
    Values outside 0..1 follow the end segments. Patches drawn out (with
    probability ``1 - chance``) are returned unchanged.
    """
    b = x.shape[0]
    dev, dt = x.device, x.dtype
    segments = points + 1
    knots = torch.linspace(0, 1, segments + 1, device=dev)
    moved = knots[1:-1] + _uniform(b * points, -1, 1, gen, dev).view(b, points) / segments
    inner = moved.clamp(0, 1).sort(dim=1).values
    use = _chance(b, chance, gen, dev).view(b, 1)
    inner = torch.where(use, inner, knots[1:-1].expand(b, points))
    levels = torch.cat([torch.zeros(b, 1, device=dev), inner, torch.ones(b, 1, device=dev)], dim=1)
    flat = x.reshape(b, -1).float()
    position = flat * segments
    index = position.floor().clamp(0, segments - 1).long()
    low, high = levels.gather(1, index), levels.gather(1, index + 1)
    out = low + (position - index) * (high - low)
    return out.view(x.shape).to(dt)


AIR = 0.15  # normalised intensities below this are the air around the sample


def exterior(
    x: torch.Tensor, chance: float, gen: torch.Generator, y: torch.Tensor | None = None
) -> torch.Tensor:
    """Replace the air in a patch (below ``AIR`` and, given labels ``y``, not dendrite: dark solid is
    no air) by what real scans put there, per patch with ``chance``:
    a constant grey (a masked reconstruction; 0 to 1.2 of the window) or a grainy band of melt-like
    grey with dark and bright grains (a container wall, packing material). Labels stay 0 there."""
    b = x.shape[0]
    dev, dt = x.device, x.dtype
    shape5 = (b, 1, 1, 1, 1)
    air = x < AIR
    if y is not None:
        air &= y[:, None] == 0
    use = _chance(b, chance, gen, dev).view(shape5) & (air.flatten(1).float().mean(1) > 0.02).view(shape5)
    if not use.any():
        return x
    constant = _uniform(b, 0.0, 1.2, gen, dev).view(shape5).to(dt)
    grains = torch.randn(x.shape, generator=gen, device="cpu").to(dev, dt)
    grains = F.avg_pool3d(grains, (1, 3, 3), stride=1, padding=(0, 1, 1)) * 3.0
    level = _uniform(b, 0.5, 1.0, gen, dev).view(shape5).to(dt)
    band = level + 0.25 * grains
    textured = _chance(b, 0.5, gen, dev).view(shape5)
    fill = torch.where(textured, band, constant.expand_as(x))
    return torch.where(use & air, fill, x)


def broad_rings(x: torch.Tensor, chance: float, gen: torch.Generator) -> torch.Tensor:
    """Add, per patch with ``chance``, a ring 8 to 40 px wide about a random centre (in or out of the
    patch), of either sign and 0.1 to 0.4 of the window (a solid's contrast), full or an arc;
    the same in every slice, as a detector defect makes it."""
    b, _, _, h, w = x.shape
    dev, dt = x.device, x.dtype
    shape5 = (b, 1, 1, 1, 1)
    use = _chance(b, chance, gen, dev).view(shape5).to(dt)
    yy = torch.arange(h, device=dev, dtype=dt).view(1, 1, 1, h, 1)
    xx = torch.arange(w, device=dev, dtype=dt).view(1, 1, 1, 1, w)
    cy = _uniform(b, -h, 2 * h, gen, dev).view(shape5).to(dt)
    cx = _uniform(b, -w, 2 * w, gen, dev).view(shape5).to(dt)
    radius = torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    centre = _uniform(b, 0, 1.5 * max(h, w), gen, dev).view(shape5).to(dt)
    width = _uniform(b, 8, 40, gen, dev).view(shape5).to(dt)
    sign = torch.where(_chance(b, 0.5, gen, dev), 1.0, -1.0).view(shape5).to(dt)
    strength = _uniform(b, 0.1, 0.4, gen, dev).view(shape5).to(dt) * sign
    ring = torch.exp(-0.5 * ((radius - centre) / (width / 2.355)) ** 2)
    angle = torch.atan2(yy - cy, xx - cx)
    start = _uniform(b, -math.pi, math.pi, gen, dev).view(shape5).to(dt)
    arc = _chance(b, 0.5, gen, dev).view(shape5)
    ring = torch.where(arc, ring * (torch.cos(angle - start) > 0), ring)
    return x + use * strength * ring


def intensity(
    x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator, y: torch.Tensor | None = None
) -> torch.Tensor:
    """Grey-scale curve, brightness, contrast and XCT artefacts (image only; the labels ``y``,
    when given, keep the exterior augmentation off the solid)."""
    b, _, z, h, w = x.shape
    dev, dt = x.device, x.dtype
    shape5 = (b, 1, 1, 1, 1)
    if cfg.curve > 0:
        x = grey_curve(x, cfg.curve_points, cfg.curve, gen)
    if cfg.contrast > 0:
        mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
        factor = _uniform(b, 1 - cfg.contrast, 1 + cfg.contrast, gen, dev).view(shape5).to(dt)
        x = (x - mean) * factor + mean
    if cfg.brightness > 0:
        x = x + _uniform(b, -cfg.brightness, cfg.brightness, gen, dev).view(shape5).to(dt)
    if cfg.gamma > 0:  # a non-linear grey scale (detector response, beam hardening)
        top = math.log1p(cfg.gamma)
        exponent = torch.exp(_uniform(b, -top, top, gen, dev)).view(shape5).to(dt)
        x = torch.sign(x) * x.abs().clamp_min(1e-6) ** exponent
    if cfg.drift > 0 and z > 1:
        slope = _uniform(b, -cfg.drift, cfg.drift, gen, dev).view(shape5).to(dt)
        ramp = torch.linspace(-0.5, 0.5, z, device=dev, dtype=dt).view(1, 1, z, 1, 1)
        x = x * (1 + slope * ramp)
    yy = torch.arange(h, device=dev, dtype=dt).view(1, 1, 1, h, 1)
    xx = torch.arange(w, device=dev, dtype=dt).view(1, 1, 1, 1, w)
    if cfg.rings > 0 and cfg.p_rings > 0:
        use = _chance(b, cfg.p_rings, gen, dev).view(shape5).to(dt)
        cy = _uniform(b, 0, h, gen, dev).view(shape5).to(dt)
        cx = _uniform(b, 0, w, gen, dev).view(shape5).to(dt)
        radius = torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        freq = _uniform(b, 0.3, 1.5, gen, dev).view(shape5).to(dt)
        phase = _uniform(b, 0, 2 * math.pi, gen, dev).view(shape5).to(dt)
        x = x + use * cfg.rings * torch.sin(radius * freq + phase) * torch.exp(-radius / max(h, w))
    if cfg.streaks > 0 and cfg.p_streaks > 0:
        use = _chance(b, cfg.p_streaks, gen, dev).view(shape5).to(dt)
        angle = _uniform(b, 0, math.pi, gen, dev).view(shape5).to(dt)
        offset = _uniform(b, -0.5, 0.5, gen, dev).view(shape5).to(dt) * max(h, w)
        dist = (yy - h / 2) * torch.cos(angle) - (xx - w / 2) * torch.sin(angle) - offset
        x = x + use * cfg.streaks * torch.exp(-(dist**2) / 8.0)
    if cfg.p_exterior > 0:
        x = exterior(x, cfg.p_exterior, gen, y)
    if cfg.p_broad_rings > 0:
        x = broad_rings(x, cfg.p_broad_rings, gen)
    if cfg.p_blur > 0:
        use = _chance(b, cfg.p_blur, gen, dev).view(shape5).to(dt)
        kernel = torch.tensor([0.25, 0.5, 0.25], device=dev, dtype=dt)
        flat = x.reshape(b * z, 1, h, w)
        blurred = F.conv2d(F.pad(flat, (1, 1, 0, 0), mode="replicate"), kernel.view(1, 1, 1, 3))
        blurred = F.conv2d(F.pad(blurred, (0, 0, 1, 1), mode="replicate"), kernel.view(1, 1, 3, 1))
        x = use * blurred.reshape(x.shape) + (1 - use) * x
    if cfg.noise > 0:
        sigma = _uniform(b, 0, cfg.noise, gen, dev).view(shape5).to(dt)
        noise = torch.randn(x.shape, generator=gen, device="cpu", dtype=torch.float32).to(dev, dt)
        x = x + sigma * noise
    return x


def augment(
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: AugmentConfig,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Geometry on both, then intensity on the image, then (``p_single``) single slices."""
    x, y = geometric(x, y, cfg, gen)
    x = intensity(x, cfg, gen, y)
    if cfg.p_single > 0 and x.shape[2] > 1:
        x, y = single_slices(x, y, cfg.p_single, gen)
    return x, y


def single_slices(
    x: torch.Tensor, y: torch.Tensor, p: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """With probability ``p`` per patch, one of its slices (image as augmented, label) repeated over its
    depth: a 2D image as a 3D model sees it."""
    b, _, z = x.shape[:3]
    use = _chance(b, p, gen, x.device)
    if not bool(use.any()):
        return x, y
    pick = torch.randint(0, z, (b,), generator=gen).to(x.device)
    rows = torch.arange(b, device=x.device)
    flat_x = x[rows, :, pick].unsqueeze(2).expand_as(x)  # (B, 1, Z, H, W) of the picked slice
    flat_y = y[rows, pick].unsqueeze(1).expand_as(y)
    keep = use.view(b, 1, 1, 1, 1)
    return torch.where(keep, flat_x, x), torch.where(keep.view(b, 1, 1, 1), flat_y, y)
