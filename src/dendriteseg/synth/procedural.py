"""Fast procedural dendrites: branching arms as smooth distance fields.

Each dendrite grows from a seed with a random crystal orientation: primary
arms along the six rotated <100> directions, secondary arms along the two
perpendicular <100> directions, spaced periodically, tapering towards the
tips. The solid is the union of capsules (rounded cylinders); the signed
distance to that union gives both an exact label and a soft phase field.
Meant for tests and quick demos; the phase-field model is the realistic one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dendriteseg.rng import Rng
from dendriteseg.rng import as_generator as _rng


def random_rotation(rng: Rng = None) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix (rows are the rotated axes)."""
    q = _rng(rng).standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


@dataclass(frozen=True)
class Capsule:
    """A segment from ``a`` to ``b`` with radius ``ra`` at ``a`` and ``rb`` at ``b``."""

    a: np.ndarray
    b: np.ndarray
    ra: float
    rb: float


def dendrite_capsules(
    centre: np.ndarray,
    rotation: np.ndarray,
    *,
    arm_length: float,
    arm_radius: float,
    branch_spacing: float,
    rng: Rng = None,
) -> list[Capsule]:
    """Capsules of one dendrite: 6 primary arms and their side branches."""
    gen = _rng(rng)
    capsules: list[Capsule] = []
    axes = [sign * rotation[i] for i in range(3) for sign in (1, -1)]
    for axis in axes:
        length = arm_length * gen.uniform(0.6, 1.0)
        tip = centre + axis * length
        capsules.append(Capsule(centre, tip, arm_radius, arm_radius * 0.45))
        perpendicular = [p for p in axes if abs(float(np.dot(p, axis))) < 0.5]
        n_branches = int(length // branch_spacing)
        for k in range(1, n_branches):
            t = k * branch_spacing / length
            base = centre + axis * (t * length)
            remaining = 1.0 - t
            for side in perpendicular:
                if gen.random() < 0.25:  # not every side branch grows
                    continue
                side_len = length * 0.45 * remaining * gen.uniform(0.5, 1.0)
                if side_len < arm_radius:
                    continue
                r = arm_radius * (0.35 + 0.45 * remaining)
                capsules.append(Capsule(base, base + side * side_len, r, r * 0.5))
    return capsules


def _capsule_distance(cap: Capsule, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Signed distance (approximate for tapered capsules) on the grid box ``lo``..``hi`` (inclusive).

    The box's axes broadcast against each other: no grid of coordinates is made.
    """
    a, ab = np.asarray(cap.a, np.float32), np.asarray(cap.b - cap.a, np.float32)
    denom = np.float32(float(np.dot(cap.b - cap.a, cap.b - cap.a)) or 1e-12)
    dz, dy, dx = (
        (np.arange(lo[i], hi[i] + 1, dtype=np.float32) - a[i]).reshape(
            [-1 if j == i else 1 for j in range(3)]
        )
        for i in range(3)
    )
    t = dz * ab[0] + dy * ab[1] + dx * ab[2]
    t /= denom
    np.clip(t, 0.0, 1.0, out=t)  # the nearest point of the axis, as a share of its length
    d = np.square(dz - t * ab[0])
    d += np.square(dy - t * ab[1])
    d += np.square(dx - t * ab[2])
    np.sqrt(d, out=d)
    d -= np.float32(cap.ra) + np.float32(cap.rb - cap.ra) * t
    return d


def signed_distance(shape: tuple[int, int, int], capsules: list[Capsule]) -> np.ndarray:
    """Signed distance to the union of capsules on a (z, y, x) grid (voxels).

    Each capsule is evaluated only in its bounding box (plus a margin), so the
    cost scales with the solid's volume, not with the grid times the arms.
    Far from every capsule the field is clipped at +8.
    """
    margin = 8.0
    field = np.full(shape, margin, np.float32)
    upper = np.array(shape) - 1
    for cap in capsules:
        r = max(cap.ra, cap.rb) + margin
        lo = np.maximum(np.floor(np.minimum(cap.a, cap.b) - r), 0).astype(int)
        hi = np.minimum(np.ceil(np.maximum(cap.a, cap.b) + r), upper).astype(int)
        if np.any(hi < lo):
            continue
        box = tuple(slice(lo[i], hi[i] + 1) for i in range(3))
        np.minimum(field[box], _capsule_distance(cap, lo, hi), out=field[box])
    return field


def procedural_dendrites(
    shape: tuple[int, int, int],
    *,
    n_seeds: int = 4,
    arm_length: float | None = None,
    arm_radius: float | None = None,
    branch_spacing: float | None = None,
    interface_width: float = 1.0,
    rng: Rng = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Make a field of branching dendrites.

    Parameters
    ----------
    shape : (z, y, x)
    n_seeds : int
        Number of dendrites (each with its own random orientation).
    arm_length, arm_radius, branch_spacing : float, optional
        In voxels; defaults scale with the in-plane size.
    interface_width : float
        Width of the soft phase field's tanh profile (voxels).
    rng : int or numpy.random.Generator

    Returns
    -------
    label : numpy.ndarray of uint8
        1 = dendrite.
    phase : numpy.ndarray of float32
        Soft solid fraction in [0, 1], 0.5 on the label boundary.

    Examples
    --------
    >>> label, phase = procedural_dendrites((9, 40, 40), n_seeds=2, rng=0)
    >>> label.dtype, label.shape, bool(0 < label.mean() < 1)
    (dtype('uint8'), (9, 40, 40), True)
    """
    gen = _rng(rng)
    size = float(min(shape[1], shape[2]))
    arm_length = arm_length or 0.35 * size
    arm_radius = arm_radius or max(1.5, 0.035 * size)
    branch_spacing = branch_spacing or max(3.0 * arm_radius, 0.08 * size)
    capsules: list[Capsule] = []
    for _ in range(n_seeds):
        centre = np.array(
            [gen.uniform(0, shape[0]), gen.uniform(0.15, 0.85) * shape[1], gen.uniform(0.15, 0.85) * shape[2]]
        )
        capsules += dendrite_capsules(
            centre,
            random_rotation(gen),
            arm_length=arm_length * gen.uniform(0.7, 1.2),
            arm_radius=arm_radius * gen.uniform(0.8, 1.2),
            branch_spacing=branch_spacing,
            rng=gen,
        )
    sdf = signed_distance(shape, capsules)
    label = (sdf < 0).astype(np.uint8)
    phase = (0.5 * (1.0 - np.tanh(sdf / max(interface_width, 1e-3)))).astype(np.float32)
    return label, phase
