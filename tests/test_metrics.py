"""Metrics against hand-built cases and independent references (SciPy, MONAI)."""

import math

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from dendriteseg.metrics import (
    accuracy,
    boundary,
    boundary_displacement_error,
    boundary_f1,
    iou,
    score_slices,
    score_volume_3d,
    summarize,
)
from tests.conftest import random_masks


def reference_scores(pred, gt, tolerance=4.0, spacing=None):
    """Brute-force DESIGN.md definitions: erosion + all-pairs distances."""
    cross = ndimage.generate_binary_structure(pred.ndim, 1)
    bp = pred & ~ndimage.binary_erosion(pred, cross, border_value=0)
    bg = gt & ~ndimage.binary_erosion(gt, cross, border_value=0)
    if not bp.any() and not bg.any():
        return math.nan, math.nan
    if not bp.any() or not bg.any():
        return 0.0, math.nan
    scale = np.ones(pred.ndim) if spacing is None else np.asarray(spacing, float)
    pp, pg = np.argwhere(bp) * scale, np.argwhere(bg) * scale
    d = cdist(pp, pg)
    dp, dg = d.min(1), d.min(0)
    precision, recall = np.mean(dp < tolerance), np.mean(dg < tolerance)
    bf1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return bf1, (dp.mean() + dg.mean()) / 2


def square(shape=(40, 40), top=10, left=10, size=12):
    m = np.zeros(shape, bool)
    m[top : top + size, left : left + size] = True
    return m


def test_boundary_matches_scipy_erosion(rng):
    for shape in [(33, 34), (9, 33, 34), (1, 7)]:
        m = rng.random(shape) > 0.4
        cross = ndimage.generate_binary_structure(len(shape), 1)
        expected = m & ~ndimage.binary_erosion(m, cross, border_value=0)
        np.testing.assert_array_equal(boundary(m), expected)


def test_slicewise_boundary_is_2d_per_slice(rng):
    m = rng.random((5, 20, 21)) > 0.5
    per_slice = boundary(m, axes=(1, 2))
    for z in range(5):
        np.testing.assert_array_equal(per_slice[z], boundary(m[z]))


@pytest.mark.parametrize("shift", [3, 4, 5])
def test_shifted_squares(shift):
    gt = square()
    pred = np.roll(gt, shift, axis=1)
    bf1, bde = reference_scores(pred, gt)
    assert boundary_f1(pred, gt) == pytest.approx(bf1, abs=1e-12)
    assert boundary_displacement_error(pred, gt) == pytest.approx(bde, abs=1e-12)
    # the far side of a square shifted by `shift` is `shift` away: strict < 4 matters
    assert (boundary_f1(pred, gt) == 1.0) == (shift < 4)
    assert iou(pred, gt) == pytest.approx((12 - shift) / (12 + shift))


@pytest.mark.parametrize("offset,distance", [((0, 3), 3.0), ((0, 4), 4.0), ((3, 4), 5.0)])
def test_one_pixel_objects(offset, distance):
    gt = np.zeros((20, 20), bool)
    pred = np.zeros((20, 20), bool)
    gt[5, 5] = True
    pred[5 + offset[0], 5 + offset[1]] = True
    assert boundary_displacement_error(pred, gt) == pytest.approx(distance)
    assert boundary_f1(pred, gt) == (1.0 if distance < 4 else 0.0)
    assert boundary_f1(pred, gt, tolerance=distance + 1e-9) == 1.0
    assert iou(pred, gt) == 0.0
    assert accuracy(pred, gt) == pytest.approx(1 - 2 / 400)


def test_objects_touching_the_image_edge():
    gt = np.zeros((10, 12), bool)
    gt[:, :4] = True  # touches three edges: those pixels are boundary
    pred = np.zeros_like(gt)
    pred[:, :5] = True
    assert boundary(gt)[:, 0].all() and boundary(gt)[0].sum() == 4
    bf1, bde = reference_scores(pred, gt)
    assert boundary_f1(pred, gt) == pytest.approx(bf1, abs=1e-12)
    assert boundary_displacement_error(pred, gt) == pytest.approx(bde, abs=1e-12)
    full = np.ones((6, 7), bool)
    assert boundary(full).sum() == 2 * 6 + 2 * 7 - 4
    assert boundary_f1(full, full) == 1.0 and boundary_displacement_error(full, full) == 0.0


def test_empty_masks():
    empty = np.zeros((8, 9), bool)
    obj = square((8, 9), 2, 2, 3)
    assert math.isnan(iou(empty, empty))
    assert accuracy(empty, empty) == 1.0
    assert math.isnan(boundary_f1(empty, empty))
    assert math.isnan(boundary_displacement_error(empty, empty))
    assert boundary_f1(empty, obj) == 0.0 and boundary_f1(obj, empty) == 0.0
    assert math.isnan(boundary_displacement_error(obj, empty))
    assert iou(empty, obj) == 0.0


def test_counts_and_nanmean():
    gt = np.zeros((4, 16, 16), bool)
    pred = np.zeros_like(gt)
    gt[0, 4:8, 4:8] = pred[0, 4:8, 4:8] = True  # perfect
    gt[1, 4:8, 4:8] = True  # prediction empty: BF1 0, BDE skipped
    # slices 2, 3: both empty: everything but accuracy skipped
    result = summarize(score_slices(pred, gt))
    assert result.counts == {
        "slices": 4,
        "iou_skipped": 2,
        "bf1_skipped": 2,
        "bf1_one_empty": 1,
        "bde_skipped": 3,
        "bf1_used": 2,
        "bde_used": 1,
    }
    assert result.bf1 == pytest.approx(0.5)
    assert result.bde == 0.0
    assert result.iou == pytest.approx(0.5)
    assert result.accuracy == pytest.approx(1 - 16 / (4 * 256))


def test_random_masks_match_brute_force(rng):
    pred, gt = random_masks(rng, (6, 33, 34))
    scores = score_slices(pred, gt, tolerance=2.5)
    for z, s in enumerate(scores):
        bf1, bde = reference_scores(pred[z], gt[z], 2.5)
        assert s.bf1 == pytest.approx(bf1, abs=1e-12)
        assert s.bde == pytest.approx(bde, abs=1e-12)
        assert s.iou == pytest.approx((pred[z] & gt[z]).sum() / (pred[z] | gt[z]).sum())


def test_against_monai_edges_and_distances(rng):
    monai_utils = pytest.importorskip("monai.metrics.utils")
    for trial in range(5):
        pred, gt = random_masks(rng, (37, 41), sigma=2.0 + trial)
        edges_pred, edges_gt = monai_utils.get_mask_edges(pred, gt, crop=False)
        np.testing.assert_array_equal(edges_pred, boundary(pred))
        np.testing.assert_array_equal(edges_gt, boundary(gt))
        d_pred = np.asarray(monai_utils.get_surface_distance(edges_pred, edges_gt))
        d_gt = np.asarray(monai_utils.get_surface_distance(edges_gt, edges_pred))
        p, r = np.mean(d_pred < 4), np.mean(d_gt < 4)
        expected_bf1 = 2 * p * r / (p + r) if p + r else 0.0
        expected_bde = (d_pred.mean() + d_gt.mean()) / 2
        (s,) = score_slices(pred[None], gt[None])
        assert s.bf1 == pytest.approx(expected_bf1, abs=1e-12)
        assert s.bde == pytest.approx(expected_bde, rel=1e-6)  # MONAI works in float32


def test_against_monai_average_surface_distance_3d(rng):
    torch = pytest.importorskip("torch")
    from monai.metrics import compute_average_surface_distance
    from monai.metrics.utils import get_mask_edges, get_surface_distance

    pred, gt = random_masks(rng, (13, 21, 23), sigma=2.5)
    spacing = (2.0, 0.7, 0.7)
    ours = score_volume_3d(pred, gt, spacing=spacing, tolerance=1.5)
    edges_pred, edges_gt = get_mask_edges(pred, gt, crop=True)
    d_pred = np.asarray(get_surface_distance(edges_pred, edges_gt, spacing=spacing))
    d_gt = np.asarray(get_surface_distance(edges_gt, edges_pred, spacing=spacing))
    assert ours.bde == pytest.approx((d_pred.mean() + d_gt.mean()) / 2, rel=1e-6)
    p, r = np.mean(d_pred < 1.5), np.mean(d_gt < 1.5)
    assert ours.bf1 == pytest.approx(2 * p * r / (p + r), abs=1e-12)
    # MONAI's symmetric ASD pools both directions: a different average of the same distances
    pooled = float(
        compute_average_surface_distance(
            torch.as_tensor(pred[None, None]),
            torch.as_tensor(gt[None, None]),
            symmetric=True,
            spacing=spacing,
        ).item()
    )
    assert pooled == pytest.approx(np.concatenate([d_pred, d_gt]).mean(), rel=1e-5)


def test_3d_against_brute_force_with_spacing(rng):
    pred, gt = random_masks(rng, (9, 15, 17), sigma=2.0)
    ours = score_volume_3d(pred, gt, spacing=(3.0, 1.0, 1.0), tolerance=2.0)
    bf1, bde = reference_scores(pred, gt, 2.0, spacing=(3.0, 1.0, 1.0))
    assert ours.bf1 == pytest.approx(bf1, abs=1e-12)
    assert ours.bde == pytest.approx(bde, abs=1e-12)
    assert ours.iou == pytest.approx((pred & gt).sum() / (pred | gt).sum())


def test_threads_give_identical_results(rng):
    pred, gt = random_masks(rng, (7, 40, 41))
    one = score_slices(pred, gt, workers=1)
    two = score_slices(pred, gt, workers=2)
    assert one == two


def test_bad_arguments():
    a = np.zeros((4, 4), bool)
    with pytest.raises(ValueError, match="shape"):
        iou(a, np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="tolerance"):
        boundary_f1(a, a, tolerance=0)
    with pytest.raises(ValueError, match="NaN"):
        accuracy(np.full((2, 2), np.nan), a[:2, :2])


# -- pinned details (each kills mutants that the tests above let through) ---------------


def test_labels_as_0_1_or_0_255_score_like_booleans():
    from dendriteseg.metrics import accuracy, boundary_f1, iou

    gt = np.zeros((20, 20), bool)
    gt[4:12, 5:15] = True
    pred = np.zeros((20, 20), bool)
    pred[6:14, 5:13] = True
    for cast in (
        lambda m: m.astype(np.uint8),
        lambda m: m.astype(np.uint8) * 255,
        lambda m: m.astype(np.float32),
    ):
        assert iou(cast(pred), cast(gt)) == pytest.approx(iou(pred, gt))
        assert accuracy(cast(pred), cast(gt)) == pytest.approx(accuracy(pred, gt))
        assert boundary_f1(cast(pred), cast(gt)) == pytest.approx(boundary_f1(pred, gt))
    assert iou(pred, gt) == pytest.approx(48 / 96)  # 6 x 8 overlap, 80 + 64 - 48 union
    nan = gt.astype(np.float32)
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="pred contains NaN"):
        iou(nan, gt)
    with pytest.raises(ValueError, match="gt contains NaN"):
        iou(gt, nan)


def test_one_pixel_masks():
    from dendriteseg.metrics import accuracy, iou

    one = np.ones((1, 1), bool)
    assert iou(one, one) == 1.0 and accuracy(one, one) == 1.0 and accuracy(one, ~one) == 0.0
    assert math.isnan(iou(~one, ~one))


def test_spacing_reaches_bf1_and_bde():
    from scipy import ndimage

    from dendriteseg.metrics import boundary, boundary_displacement_error, boundary_f1

    gt = np.zeros((12, 24, 24), bool)
    gt[3:9, 6:18, 6:18] = True
    pred = np.roll(gt, 2, axis=0)
    spacing = (3.0, 1.0, 1.0)
    pb, gb = boundary(pred), boundary(gt)
    d_pg = ndimage.distance_transform_edt(~gb, sampling=spacing)[pb]
    d_gp = ndimage.distance_transform_edt(~pb, sampling=spacing)[gb]
    expected_bde = (d_pg.mean() + d_gp.mean()) / 2
    assert boundary_displacement_error(pred, gt, spacing=spacing) == pytest.approx(expected_bde)
    assert boundary_displacement_error(pred, gt) < expected_bde  # unit spacing: z steps count 1, not 3
    p, r = (d_pg < 4.0).mean(), (d_gp < 4.0).mean()
    assert boundary_f1(pred, gt, spacing=spacing) == pytest.approx(2 * p * r / (p + r))
    assert boundary_f1(pred, gt, spacing=spacing) < boundary_f1(pred, gt)


def test_score_slices_indexes_precision_recall_and_threads():
    from dendriteseg.metrics import score_slice, score_slices

    rng = np.random.default_rng(4)
    gt = rng.random((5, 16, 17)) > 0.6
    pred = gt.copy()
    pred[:, :, :9] = False
    pred[1] = False  # a slice with nothing predicted: precision n/a, recall 0
    scores = score_slices(pred, gt, z0=7)
    assert [s.z for s in scores] == [7, 8, 9, 10, 11]
    for i, s in enumerate(scores):
        ref = score_slice(pred[i], gt[i], z=7 + i)
        assert s == ref or all(
            (a == b) or (math.isnan(a) and math.isnan(b))
            for a, b in zip(vars(s).values(), vars(ref).values(), strict=True)
        )
    assert math.isnan(scores[1].precision) and scores[1].recall == 0.0 and scores[1].bf1 == 0.0
    assert scores[0].precision == 1.0 and 0 < scores[0].recall < 1
    assert scores[0].boundary_gt > scores[0].boundary_pred > 0
    single = score_slices(pred, gt, z0=7, workers=1)
    assert [s.iou for s in single] == [s.iou for s in scores]
    wide = score_slices(pred, gt, tolerance=50.0)
    assert all(s.bf1 >= t.bf1 for s, t in zip(wide, scores, strict=True))
    assert score_slice(pred[0], gt[0]).bf1 == score_slice(pred[0], gt[0], tolerance=4.0).bf1
    with pytest.raises(ValueError, match="tolerance"):
        score_slices(pred, gt, tolerance=0)


def test_summaries_count_what_was_skipped():
    from dendriteseg.metrics import score_slices, score_volume_3d, summarize

    gt = np.zeros((3, 10, 10), bool)
    gt[0, 2:6, 2:6] = True  # slice 0: both have objects; slice 1: only the truth; slice 2: both empty
    gt[1, 3:7, 3:7] = True
    pred = np.zeros_like(gt)
    pred[0, 2:6, 3:7] = True
    result = summarize(score_slices(pred, gt), tolerance=3.0)
    assert result.mode == "2d" and result.tolerance == 3.0 and len(result.per_slice) == 3
    assert result.counts == {
        "slices": 3,
        "iou_skipped": 1,
        "bf1_skipped": 1,
        "bf1_one_empty": 1,
        "bde_skipped": 2,
        "bf1_used": 2,
        "bde_used": 1,
    }
    assert result.iou == pytest.approx((12 / 20 + 0.0) / 2)
    both = score_volume_3d(pred, gt, tolerance=2.0)
    assert both.mode == "3d" and both.tolerance == 2.0 and both.accuracy == pytest.approx(1 - 24 / 300)
    assert both.counts == {
        "volumes": 1,
        "iou_skipped": 0,
        "bf1_skipped": 0,
        "bf1_one_empty": 0,
        "bde_skipped": 0,
    }
    empty = np.zeros_like(gt)
    assert score_volume_3d(empty, empty).counts == {
        "volumes": 1,
        "iou_skipped": 1,
        "bf1_skipped": 1,
        "bf1_one_empty": 0,
        "bde_skipped": 1,
    }
    assert score_volume_3d(empty, gt).counts == {
        "volumes": 1,
        "iou_skipped": 0,
        "bf1_skipped": 0,
        "bf1_one_empty": 1,
        "bde_skipped": 1,
    }
    assert score_volume_3d(gt, empty).counts["bf1_one_empty"] == 1
    for bad in ({"tolerance": 0}, {"spacing": (1.0, 1.0)}, {"spacing": (1.0, 0.0, 1.0)}):
        with pytest.raises(ValueError):
            score_volume_3d(pred, gt, **bad)
    assert score_volume_3d(pred, gt, spacing=(1, 1, 1)).bde == pytest.approx(both.bde)
