"""Labels by hysteresis (infer/hysteresis.py): unsure pieces dropped, sure ones kept whole, streamed."""

from __future__ import annotations

import numpy as np
import pytest

from dendriteseg.errors import InputError
from dendriteseg.infer import segment
from dendriteseg.infer.hysteresis import REACH, hysteresis_labels, logit
from dendriteseg.infer.settings import InferenceSettings


def _logits(shape: tuple[int, int, int]) -> np.ndarray:
    """Slices of two pieces: a sure one (a core at p 0.95 in a rim at p 0.6) and an unsure one (p 0.7)."""
    out = np.full(shape, -5.0, np.float32)
    out[:, 5:15, 5:15] = logit(0.6)
    out[:, 8:12, 8:12] = logit(0.95)
    out[:, 20:26, 20:26] = logit(0.7)
    return out


def _run(logits: np.ndarray, cuts: list[int], hysteresis: float = 0.9) -> tuple[list, np.ndarray]:
    bounds = [0, *cuts, len(logits)]
    slabs = [(a, b, logits[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    out = list(hysteresis_labels(iter(slabs), hysteresis))
    return out, np.concatenate([labels for *_, labels in out])


def test_unsure_pieces_go_and_sure_pieces_stay_whole() -> None:
    logits = _logits((5, 33, 34))
    _, labels = _run(logits, [])
    assert labels[:, 5:15, 5:15].all()  # the whole piece, its unsure rim included
    assert not labels[:, 20:26, 20:26].any()
    assert labels.sum() == 5 * 100
    _, plain = _run(logits, [], hysteresis=0.5)
    np.testing.assert_array_equal(plain, (logits > 0).astype(np.uint8))


def test_pieces_are_8_connected_in_plane() -> None:
    logits = np.full((1, 12, 12), -5.0, np.float32)
    logits[0, 2:5, 2:5] = logit(0.99)  # the sure core
    logits[0, 5:8, 5:8] = logit(0.6)  # touching it at a corner only
    _, labels = _run(logits, [])
    assert labels[0, 5:8, 5:8].all() and labels.sum() == 18


def test_a_sure_voxel_vouches_within_reach_slices_only() -> None:
    logits = np.full((9, 20, 21), -5.0, np.float32)
    logits[:, 4:10, 4:10] = logit(0.7)
    logits[4, 6, 6] = logit(0.99)
    _, labels = _run(logits, [])
    kept = [z for z in range(9) if labels[z].any()]
    assert kept == list(range(4 - REACH, 4 + REACH + 1))


@pytest.mark.parametrize("cuts", [[1], [2, 3, 4, 7], [4], [1, 2, 3, 4, 5, 6, 7, 8]])
def test_streamed_in_any_slabs_as_in_one(cuts: list[int]) -> None:
    gen = np.random.default_rng(4)
    from scipy import ndimage

    logits = (ndimage.gaussian_filter(gen.standard_normal((9, 33, 35)), 1.5) * 12).astype(np.float32)
    _, whole = _run(logits, [])
    out, streamed = _run(logits, cuts)
    np.testing.assert_array_equal(streamed, whole)
    assert [z0 for z0, *_ in out] == sorted(z0 for z0, *_ in out)
    assert sum(z1 - z0 for z0, z1, *_ in out) == len(logits)
    for z0, z1, slab_logits, _ in out:  # the logits come out beside their labels, unchanged
        np.testing.assert_array_equal(slab_logits, logits[z0:z1])
    assert 0 < whole.sum() < (logits > 0).sum()  # some pieces went, some stayed


def test_slabs_out_of_order_are_refused() -> None:
    logits = _logits((6, 30, 30))
    with pytest.raises(ValueError, match="contiguous"):
        list(hysteresis_labels(iter([(0, 2, logits[:2]), (3, 6, logits[3:])]), 0.9))


def test_the_setting_is_checked_and_used_by_segment() -> None:
    with pytest.raises(InputError, match="hysteresis"):
        InferenceSettings(hysteresis=0.4)
    with pytest.raises(InputError, match="hysteresis"):
        InferenceSettings(hysteresis=1.0)
    logits = _logits((4, 33, 34))
    volume = np.zeros((4, 33, 34), np.float32)

    def model(batch: np.ndarray) -> np.ndarray:
        return np.broadcast_to(logits[: batch.shape[1]], batch.shape).copy()

    common = dict(window=(0.0, 1.0), sample_mask="none", scale=1, tile=(4, 33, 34), probabilities=True)
    sure = segment(volume, model, **common)
    every = segment(volume, model, hysteresis=0.5, **common)
    assert sure.labels.sum() == 4 * 100 and every.labels.sum() == 4 * 136
    np.testing.assert_array_equal(sure.probabilities, every.probabilities)  # the network's, both times
    assert sure.trust.measures["hysteresis_dropped_share"] == pytest.approx(36 / 136, abs=1e-5)
    assert every.trust.measures["hysteresis_dropped_share"] == 0.0


def test_dask_blocks_label_as_the_whole_run() -> None:
    """A block's pieces are vouched for by sure voxels in the slices beyond its edges, as in one run."""
    from scipy import ndimage

    from dendriteseg.infer.distributed import block_labels
    from dendriteseg.infer.tiling import Tiling
    from dendriteseg.io import ArrayVolume

    gen = np.random.default_rng(7)
    volume = (ndimage.gaussian_filter(gen.standard_normal((13, 33, 34)), 1.5) * 12).astype(np.float32)
    volume[:, 1:13, 1:13] = -5.0
    volume[:, 2:12, 2:12] = logit(0.7)  # a piece sure only in slice 5: slices 3-7 keep it
    volume[5, 6, 6] = logit(0.999)
    tiling = Tiling.build(volume.shape, (4, 33, 34), (0.0, 0.25, 0.25))
    source = ArrayVolume(volume)

    def pointwise(batch: np.ndarray) -> np.ndarray:
        return batch.copy()  # the logits are the volume (window 0..1)

    def labels(blocks: list[tuple[int, int]]) -> np.ndarray:
        out = np.zeros(volume.shape, np.uint8)
        for block in blocks:
            for z0, z1, part in block_labels(source, pointwise, tiling, (0.0, 1.0), block, None, 0.99):
                out[z0:z1] = part
        return out

    whole = labels([(0, 13)])
    assert [z for z in range(13) if whole[z, 2:12, 2:12].all()] == [3, 4, 5, 6, 7]
    np.testing.assert_array_equal(labels([(0, 4), (4, 8), (8, 12), (12, 13)]), whole)
    np.testing.assert_array_equal(labels([(0, 5), (5, 13)]), whole)
    assert 0 < whole.sum() < (volume > 0).sum()
