import numpy as np
import pytest

from dendriteseg.baselines import (
    BASELINES,
    build_baseline,
    sample_mask,
    segment_with_baseline,
)
from dendriteseg.errors import InputError
from dendriteseg.io import read_volume
from dendriteseg.metrics import iou
from dendriteseg.synth import cylinder_mask, paint_image_scan, procedural_dendrites


@pytest.fixture(scope="module")
def scans():
    out = []
    for seed in (11, 12):
        label, phase = procedural_dendrites((8, 80, 81), n_seeds=4, rng=seed)
        image, _ = paint_image_scan(phase, rng=seed, noise=0.08)
        out.append((image, label))
    return out


def test_sample_mask_excludes_air(scans):
    image, _ = scans[0]
    mask = sample_mask(image)
    disc = cylinder_mask(image.shape[1:])
    assert mask.sum() < disc.sum()  # shrunk by the margin, never larger
    assert (mask & ~disc).sum() == 0
    assert mask.sum() > 0.85 * disc.sum()


def test_sample_mask_without_air(rng):
    vol = rng.normal(1.0, 0.05, (4, 30, 31)).astype(np.float32)
    assert sample_mask(vol).all()


@pytest.mark.parametrize("method", ["otsu", "kmeans", "emmpm", "forest"])
def test_each_method_finds_dendrites(scans, method):
    (image, label), (train_image, train_label) = scans
    extra = {"train_image": train_image, "train_label": train_label} if method == "forest" else {}
    pred = segment_with_baseline(method, image, rng=0, **extra)
    assert pred.dtype == np.uint8 and pred.shape == image.shape
    assert iou(pred, label) > 0.2
    assert not pred[:, 0, 0].any()  # air outside the sample is background


def test_emmpm_prior_beats_plain_threshold_on_noise(scans):
    label, phase = procedural_dendrites((6, 80, 81), n_seeds=4, rng=5)
    image, _ = paint_image_scan(phase, rng=5, noise=0.2, drift=0)
    plain = segment_with_baseline("emmpm", image, rng=0, beta=0.0)
    smooth = segment_with_baseline("emmpm", image, rng=0, beta=1.5)
    assert iou(smooth, label) > iou(plain, label) + 0.05


def test_streams_to_file_like_in_memory(tmp_path, scans):
    image, _ = scans[0]
    in_memory = segment_with_baseline("emmpm", image, rng=3, slab_depth=3)
    segment_with_baseline("emmpm", image, tmp_path / "e.zarr", rng=3, slab_depth=3)
    np.testing.assert_array_equal(read_volume(tmp_path / "e.zarr"), in_memory)


def test_deterministic_for_a_seed(scans):
    image, _ = scans[0]
    a = segment_with_baseline("kmeans", image, rng=4)
    b = segment_with_baseline("kmeans", image, rng=4)
    np.testing.assert_array_equal(a, b)


def test_registry_and_option_errors():
    assert set(BASELINES) == {"otsu", "kmeans", "emmpm", "forest"}
    with pytest.raises(KeyError, match="otsu"):
        build_baseline("nope")
    with pytest.raises(InputError, match="wobble"):
        build_baseline("emmpm", wobble=1)
    with pytest.raises(InputError, match="burn_in"):
        build_baseline("emmpm", sweeps=2, burn_in=2)
