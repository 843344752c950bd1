"""How models do on scans from a generator that no training data ever came from.

The shipped models may learn from both of the project's generators (the CT
forward model and the image-domain scans of ``synth.make_image_scan``, which
``benchmarks/other_generator.py`` also draws). This benchmark paints scans
by another hand, sharing no code with either:

* structure: cubic dendrites drawn as skeletons (six primary arms along a
  random crystal frame, secondary arms at a regular spacing that shorten
  towards the tip, tapering radii), rendered by a distance transform at
  twice the resolution and averaged down 2 x 2 x 2 (partial volumes);
* a boundary that moves during the scan (the image is the mean of the
  structure at 0.9 and 1.0 of its radii; the label is the half-level of
  the structure at 0.95);
* an off-centre sample, dense particles with streaks across the slice,
  ring arcs, anisotropic blur, noise that grows with the signal plus a
  correlated part, gain drift along z, and float32 "attenuation" with a
  random scale and offset.

Side by side in one run: IoU, BF1 and BDE per model, each scan's IoU, and
each model's IoU as a ratio of the first model's.

    python benchmarks/unseen_generator.py [--scans 8] [--shape 24,160,160] [--seed 0] [MODEL ...] [--smoke]
    python benchmarks/unseen_generator.py --air 0.2,0.4   # air near the solid's grey level
    python benchmarks/unseen_generator.py --early --shape 24,320,320  # one small thin dendrite, large melt
"""

from __future__ import annotations

import argparse

import numpy as np
from other_generator import compare, parse_args  # the sibling benchmark's command line and table
from scipy import ndimage
from scipy.spatial.transform import Rotation


def skeleton_dendrites(
    shape: tuple[int, int, int], gen: np.random.Generator, early: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the nearest skeleton voxel and that voxel's radius, on ``shape``.

    ``early``: one small dendrite with thin arms near the middle (the first scans of a series).
    """
    size = float(min(shape[1:]))
    skeleton = np.zeros(shape, bool)
    radius = np.zeros(shape, np.float32)

    def draw(start: np.ndarray, direction: np.ndarray, length: float, r0: float) -> None:
        steps = np.arange(0.0, length, 0.5)
        points = start + steps[:, None] * direction
        taper = r0 * (1.0 - 0.6 * steps / max(length, 1.0))
        idx = np.round(points).astype(int)
        keep = np.all((idx >= 0) & (idx < np.array(shape)), axis=1)
        skeleton[tuple(idx[keep].T)] = True
        radius[tuple(idx[keep].T)] = np.maximum(radius[tuple(idx[keep].T)], taper[keep])

    count, lengths, thick, spacing_range, place = (
        (1, (0.08, 0.16), (0.006, 0.012), (0.02, 0.04), (0.4, 0.6))
        if early
        else (int(gen.integers(3, 9)), (0.25, 0.5), (0.02, 0.05), (0.05, 0.1), (0.25, 0.75))
    )
    for _ in range(count):
        frame = Rotation.random(random_state=gen).as_matrix()
        z = gen.uniform(0.3, 0.7) * shape[0] if early else gen.uniform(0, shape[0])
        centre = np.array([z] + [gen.uniform(*place) * s for s in shape[1:]])
        primary_length = gen.uniform(*lengths) * size
        r1 = gen.uniform(*thick) * size
        spacing = gen.uniform(*spacing_range) * size
        for axis in range(3):
            for sign in (-1.0, 1.0):
                direction = sign * frame[:, axis]
                draw(centre, direction, primary_length, r1)
                others = [frame[:, a] for a in range(3) if a != axis]
                for t in np.arange(spacing, primary_length, spacing):
                    left = 1.0 - t / primary_length
                    base = centre + t * direction
                    for side in (others[0], -others[0], others[1], -others[1]):
                        length = left * primary_length * gen.uniform(0.25, 0.5)
                        if length > 2:
                            draw(base, side, length, 0.6 * r1 * (1.0 - 0.6 * t / primary_length))
    distance, (iz, iy, ix) = ndimage.distance_transform_edt(~skeleton, return_indices=True)
    return distance.astype(np.float32), radius[iz, iy, ix]


def _down(volume: np.ndarray) -> np.ndarray:
    z, y, x = (s // 2 for s in volume.shape)
    return volume[: 2 * z, : 2 * y, : 2 * x].reshape(z, 2, y, 2, x, 2).mean(axis=(1, 3, 5))


def unseen_scan(
    shape: tuple[int, int, int],
    seed: int,
    index: int,
    air: tuple[float, float] = (-0.02, 0.1),
    early: bool = False,
) -> tuple[np.ndarray, np.ndarray, str]:
    """One float32 image, its label and a short description of its settings (melt 1, air in ``air``);
    ``early``: one small thin dendrite in a large melt."""
    gen = np.random.default_rng([seed, index, 3])
    nz, ny, nx = shape
    distance, radius = skeleton_dendrites((2 * nz, 2 * ny, 2 * nx), gen, early)
    start, end, mid = (_down((distance < s * radius).astype(np.float32)) for s in (0.9, 1.0, 0.95))
    yy, xx = np.mgrid[:ny, :nx].astype(np.float32)
    r_sample = gen.uniform(0.3, 0.46) * min(ny, nx)
    cy, cx = (s / 2 + gen.uniform(-0.04, 0.04) * s for s in (ny, nx))
    sample = np.hypot(yy - cy, xx - cx) < r_sample
    label = ((mid > 0.5) & sample[None]).astype(np.uint8)
    solid, air = gen.uniform(0.5, 0.85), gen.uniform(*air)
    phase = 0.5 * (start + end)
    image = np.where(sample[None], 1.0 + (solid - 1.0) * phase, air).astype(np.float32)
    particles = gen.random(shape) < gen.uniform(0, 3e-5)
    particles &= sample[None] & (phase < 0.5)
    image[ndimage.binary_dilation(particles, iterations=1)] = gen.uniform(2.0, 3.0)
    for z, y, x in np.argwhere(particles):  # streaks through each dense particle
        for angle in gen.uniform(0, np.pi, 2):
            line = np.abs((yy - y) * np.cos(angle) - (xx - x) * np.sin(angle)) < 0.7
            image[z][line] += gen.choice([-1.0, 1.0]) * gen.uniform(0.05, 0.2)
    blur_xy, blur_z = gen.uniform(0.5, 1.5), gen.uniform(0.0, 1.0)
    image = ndimage.gaussian_filter(image, (blur_z, blur_xy, blur_xy))
    r = np.hypot(yy - ny / 2, xx - nx / 2)
    spikes = gen.standard_normal(int(r.max()) + 2) * (gen.random(int(r.max()) + 2) < 0.1)
    theta = np.arctan2(yy - ny / 2, xx - nx / 2)
    arc = np.cos(theta - gen.uniform(-np.pi, np.pi)) > gen.uniform(-0.5, 0.5)
    rings = gen.uniform(0.0, 0.06)
    image += (rings * spikes[r.astype(int)] * arc)[None].astype(np.float32)
    noise = gen.uniform(0.03, 0.12)
    white = gen.standard_normal(image.shape).astype(np.float32)
    correlated = ndimage.gaussian_filter(gen.standard_normal(image.shape).astype(np.float32), 1.0) * 2.0
    image += noise * np.sqrt(np.clip(image, 0.05, None)) * (0.7 * white + 0.3 * correlated)
    drift = 1.0 + gen.uniform(-0.15, 0.15) * np.linspace(0, 1, nz, dtype=np.float32)
    scale, offset = gen.uniform(0.5, 3.0), gen.uniform(-0.05, 0.05)
    image = ((image * drift[:, None, None]) * scale + offset).astype(np.float32)
    text = (
        f"solid {solid:.2f} air {air:.2f} noise {noise:.2f} blur {blur_xy:.1f}/{blur_z:.1f} "
        f"rings {rings:.2f} particles {int(particles.sum())} radius {r_sample / min(ny, nx):.2f}"
    )
    return image, label, text


def main() -> None:
    def air_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--air",
            default="-0.02,0.1",
            help="range of the air's grey level (melt = 1), e.g. 0.2,0.4: air near the solid",
        )
        parser.add_argument(
            "--early", action="store_true", help="one small dendrite with thin arms in a large melt"
        )

    args, shape = parse_args(__doc__.splitlines()[0], air_option)
    air = tuple(float(a) for a in args.air.split(","))
    scans = [unseen_scan(shape, args.seed, i, air, args.early) for i in range(args.scans)]
    print(
        f"{args.scans} scans of {shape} from the skeleton generator (seed {args.seed}, air {air}"
        f"{', early growth' if args.early else ''}); IoU per scan"
    )
    compare(args.models, scans)


if __name__ == "__main__":
    main()
