import numpy as np
import pytest

from dendriteseg.synth import paint_image_scan, procedural_dendrites

ODD_SHAPE = (33, 34, 35)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def odd_volume(rng):
    return (rng.random(ODD_SHAPE) * 4000).astype(np.uint16)


@pytest.fixture(scope="session")
def phantom():
    """A small synthetic scan: (image, label) with the sample in air."""
    label, phase = procedural_dendrites((9, 96, 97), n_seeds=4, rng=7)
    image, _ = paint_image_scan(phase, rng=7, noise=0.05)
    return image, label


def random_masks(rng, shape, *, sigma=3.0, level=0.0):
    """Two related smooth random masks (gt and a perturbed prediction)."""
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma / 2)
    gt = field > level
    pred = field + 0.3 * noise * field.std() / max(noise.std(), 1e-9) > level
    return pred, gt
