import numpy as np

from dendriteseg.synth import paint_image_scan, procedural_dendrites, random_rotation


def test_deterministic_for_a_seed():
    a = procedural_dendrites((7, 40, 41), rng=3)
    b = procedural_dendrites((7, 40, 41), rng=3)
    c = procedural_dendrites((7, 40, 41), rng=4)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_label_is_the_half_level_of_the_phase():
    label, phase = procedural_dendrites((9, 48, 47), rng=1)
    np.testing.assert_array_equal(label == 1, phase > 0.5)
    assert 0.005 < label.mean() < 0.5


def test_rotation_is_orthonormal():
    r = random_rotation(0)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) > 0


def test_paint_image_scan_solid_darker_than_melt_and_air_darkest():
    label, phase = procedural_dendrites((6, 64, 64), rng=2)
    image, sample = paint_image_scan(phase, rng=2, noise=0.0, rings=0.0, drift=0.0, blur=0.0)
    inside = sample[None] & np.ones(label.shape, bool)
    solid = image[inside & (label == 1)].mean()
    melt = image[inside & (label == 0)].mean()
    air = image[:, ~sample].mean()
    assert air < solid < melt
