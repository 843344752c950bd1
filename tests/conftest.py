import os

import numpy as np
import pytest

from dendriteseg.synth import paint_image_scan, procedural_dendrites

ODD_SHAPE = (33, 34, 35)


def pytest_configure(config):
    """Under pytest-xdist (``-n N``) each worker takes its share of the cores, and so do the commands
    it starts, so that N workers do not each run a thread per core."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1:
        share = str(max(1, (os.cpu_count() or 1) // workers))
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ[name] = share
        import torch

        torch.set_num_threads(int(share))


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
