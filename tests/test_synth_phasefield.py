"""The phase-field model: determinism, monotone growth, arms along the seed's <100> axes."""

import numpy as np
import pytest
from scipy import ndimage

from dendriteseg.synth.phasefield import grow_dendrites
from dendriteseg.synth.procedural import random_rotation

SHAPE = (36, 37, 38)


@pytest.fixture(scope="module")
def grown():
    rotation = random_rotation(5)
    centre = np.array(SHAPE, float) / 2
    result = grow_dendrites(
        SHAPE, steps=360, snapshot_every=90, centres=[centre], rotations=[rotation], rng=1
    )
    return result, rotation, centre


def _extent(phase, centre, direction):
    """Distance from the centre to the last solid point along a ray."""
    radii = np.arange(0, 30, 0.5)
    points = centre[:, None] + direction[:, None] * radii[None]
    values = ndimage.map_coordinates(phase, points, order=1, mode="constant", cval=0.0)
    solid = np.flatnonzero(values > 0.5)
    return radii[solid[-1]] if solid.size else 0.0


def test_deterministic_for_a_seed(grown):
    result, rotation, centre = grown
    again = grow_dendrites(SHAPE, steps=360, snapshot_every=90, centres=[centre], rotations=[rotation], rng=1)
    np.testing.assert_array_equal(result.phase, again.phase)


def test_solid_fraction_grows_monotonically(grown):
    result, _, _ = grown
    fractions = [float((s > 0.5).mean()) for s in result.snapshots]
    assert result.steps == [90, 180, 270, 360]
    assert all(b > a for a, b in zip(fractions, fractions[1:], strict=False))
    assert 0.005 < fractions[-1] < 0.6


def test_arms_follow_the_rotated_100_axes(grown):
    result, rotation, centre = grown
    axes = [s * rotation[i] for i in range(3) for s in (1, -1)]
    diagonals = [
        np.array(v) @ rotation / np.sqrt(3)
        for v in [(1, 1, 1), (1, 1, -1), (1, -1, 1), (-1, 1, 1), (-1, -1, -1), (-1, -1, 1)]
    ]
    along_100 = np.mean([_extent(result.phase, centre, a) for a in axes])
    along_111 = np.mean([_extent(result.phase, centre, d) for d in diagonals])
    assert along_100 > 1.2 * along_111  # a sphere would give 1.0


def test_label_and_bad_shape(grown):
    result, _, _ = grown
    np.testing.assert_array_equal(result.label == 1, result.phase > 0.5)
    with pytest.raises(ValueError, match="shape"):
        grow_dendrites((3, 40, 40))
