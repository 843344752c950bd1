import numpy as np
import pytest
from matplotlib.image import imread

from dendriteseg.errors import InputError
from dendriteseg.report.overlay import FN, FP, TN, TP, confusion_rgb, robust_window, write_overlays


def test_confusion_colours():
    pred = np.array([[1, 1, 0, 0]], bool)
    gt = np.array([[1, 0, 1, 0]], bool)
    rgb = confusion_rgb(pred, gt)
    assert [tuple(c) for c in rgb[0]] == [TP, FP, FN, TN]


def test_robust_window_ignores_outliers(rng):
    vol = rng.normal(100, 5, (5, 40, 40)).astype(np.float32)
    vol[0, 0, 0] = 1e9
    lo, hi = robust_window(vol)
    assert 70 < lo < 100 < hi < 130


def test_writes_pngs(tmp_path, phantom):
    image, label = phantom
    paths = write_overlays(image, np.roll(label, 2, 1), label, tmp_path / "o", z=[4], y=[30])
    assert [p.name for p in paths] == ["z0004.png", "xz_y0030.png"]
    picture = imread(paths[0])
    assert picture.ndim == 3 and picture.shape[0] > 100
    # both green (false positive) and pink (false negative) pixels are drawn
    px = (picture[..., :3] * 255).round().astype(int).reshape(-1, 3)
    assert (np.abs(px - FP).sum(1) < 10).any() and (np.abs(px - FN).sum(1) < 10).any()


def test_rejects_mismatched_shapes(tmp_path, phantom):
    image, label = phantom
    with pytest.raises(InputError, match="shapes differ"):
        write_overlays(image, label[:3], None, tmp_path / "o")
