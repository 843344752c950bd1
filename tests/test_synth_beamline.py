"""Each real-scan mechanism of the generator appears when switched on (and only then)."""

import numpy as np
import pytest

from dendriteseg.synth.beamline import detector_stripes, propagate, retrieve_phase
from dendriteseg.synth.ct import ScanParams, simulate_scan
from dendriteseg.synth.scan import make_scan, real_scan_draws, sharpen_interfaces

N = 48
QUIET = dict(photons=1e9, ring_strength=0.0, dead_pixels=0, pores=0, particles=0, drift=0.0, n_views=90)


def _radius(n: int = N) -> np.ndarray:
    yy, xx = np.ogrid[:n, :n]
    return np.hypot(yy - (n - 1) / 2, xx - (n - 1) / 2)


def _melt(nz: int = 2) -> np.ndarray:
    return np.zeros((nz, N, N), np.float32)


def _scan(**changes) -> dict:
    return simulate_scan(_melt(), params=ScanParams(**{**QUIET, **changes}), rng=1)


def _edge() -> np.ndarray:
    rows = np.ones((1, 64))
    rows[0, 32:] = 0.3
    return rows


def test_propagation_draws_a_bright_and_a_dark_fringe_at_an_edge():
    out = propagate(_edge(), alpha=4.0)
    assert out[0, 28:32].max() > 1.05  # bright on the side that was bright
    assert out[0, 32:36].min() < 0.25  # dark on the dark side
    np.testing.assert_allclose(out[0, :8], 1.0, atol=1e-3)  # far from the edge nothing changes
    np.testing.assert_allclose(propagate(_edge(), alpha=0.0), _edge(), atol=1e-9)


def test_paganin_retrieval_undoes_propagation_and_otherwise_blurs():
    edge = _edge()
    np.testing.assert_allclose(
        retrieve_phase(propagate(edge, 0.3), 0.3), edge, atol=1e-6
    )  # no undershoot clipped
    blurred = retrieve_phase(edge, 6.0)
    assert 0.3 < blurred[0, 31] < 1 and 0.3 < blurred[0, 32] < 1  # the step became a ramp
    assert retrieve_phase(edge, 0.0) is edge
    with pytest.raises(ValueError):
        retrieve_phase(edge, -1.0)


def test_detector_stripes_are_broad_of_both_signs_full_and_partial():
    gen = np.random.default_rng(0)
    drawn = []
    for _ in range(6):
        gain, stripes = detector_stripes(
            100, 200, broad=4, strength=0.2, max_width=30, axis_spot=0.0, gen=gen
        )
        drawn += stripes
        assert gain.shape == (100, 200) and gain.min() > 0
    widths = [s["width"] for s in drawn]
    assert min(widths) >= 3 and max(widths) > 15
    assert {np.sign(s["amplitude"]) for s in drawn} == {-1.0, 1.0}
    assert any(s["views"] < 1 for s in drawn) and any(s["views"] == 1 for s in drawn)
    gain, stripes = detector_stripes(10, 101, broad=0, strength=0.2, max_width=30, axis_spot=0.3, gen=gen)
    assert len(stripes) == 1 and abs(gain[0, 50] - 1) == pytest.approx(0.3)
    assert np.all(gain[:, :45] == 1)


def _ring_profile(image: np.ndarray, inside: float) -> np.ndarray:
    """Azimuthal mean of a slice in 1-px radial bins, inside ``inside`` px."""
    r = _radius().astype(int)
    keep = r < inside
    return np.bincount(r[keep], image[keep]) / np.bincount(r[keep])


def test_broad_rings_show_in_the_reconstruction():
    plain = _scan(beam_hardening=0.0)
    ringed = _scan(beam_hardening=0.0, broad_rings=4, broad_ring_strength=0.3, broad_ring_width=8)
    assert len(ringed["meta"]["detector_stripes"]) == 4
    base = _ring_profile(plain["image"][0], 0.4 * N)
    rings = _ring_profile(ringed["image"][0], 0.4 * N)
    assert np.ptp(base) < 0.1 and np.abs(rings - base).max() > 0.2
    assert np.array_equal(ringed["label"], plain["label"])


def test_axis_spot_sits_at_the_rotation_axis():
    plain, spot = _scan(beam_hardening=0.0), _scan(beam_hardening=0.0, axis_spot=0.5)
    diff = np.abs(spot["image"][0] - plain["image"][0])
    assert np.unravel_index(diff.argmax(), diff.shape) in {
        (N // 2 - 1, N // 2 - 1),
        (N // 2, N // 2),
        (N // 2 - 1, N // 2),
        (N // 2, N // 2 - 1),
    }


def test_fresnel_fringes_at_the_sample_edge_and_retrieval_removes_them():
    edge = (_radius() > 0.45 * N - 2) & (_radius() < 0.45 * N + 2)
    plain = _scan()["image"][0]
    fringed = _scan(fresnel=8.0)["image"][0]
    retrieved = _scan(fresnel=8.0, paganin=8.0)["image"][0]
    assert np.ptp(fringed[edge]) > 2 * np.ptp(plain[edge])
    assert np.ptp(retrieved[edge]) < 0.6 * np.ptp(fringed[edge])


def test_dense_inclusions_are_bright_and_not_dendrite():
    phase = np.ones((2, N, N), np.float32)
    scan = simulate_scan(
        phase, params=ScanParams(**{**QUIET, "dense_inclusions": 4, "dense_mu": 20.0}), rng=3
    )
    plain = simulate_scan(phase, params=ScanParams(**QUIET), rng=3)
    dense = plain["label"].astype(bool) & ~scan["label"].astype(bool)
    assert dense.sum() > 0
    assert scan["image"][dense].mean() > 3 * plain["image"][dense].mean()


def test_textured_holder_has_grains_and_the_mask_one_grey():
    wall = dict(radius_fraction=0.3, holder_thickness=0.12, holder_gap=0.0, holder_mu=1.0)
    ring = (_radius() > 0.31 * N) & (_radius() < 0.41 * N)
    smooth = _scan(**wall)["image"][0][ring].std()
    grainy = _scan(**wall, holder_texture=0.6)["image"][0][ring].std()
    assert grainy > 3 * smooth
    masked = _scan(mask_radius=0.47, mask_value=0.7)
    outside = _radius() > 0.47 * N
    assert np.all(masked["image"][:, outside] == np.float32(0.7))
    assert not np.all(_scan()["image"][:, outside] == np.float32(0.7))


def test_sharpened_interfaces_ramp_over_one_voxel_and_keep_their_place():
    zz, yy, xx = np.mgrid[:24, :24, :24]
    phase = np.clip(0.5 + (8 - np.sqrt((zz - 12) ** 2 + (yy - 12) ** 2 + (xx - 12) ** 2)) / 6, 0, 1)
    sharp = sharpen_interfaces(phase.astype(np.float32))
    ramp = lambda p: ((p > 0.05) & (p < 0.95)).sum()  # noqa: E731
    assert ramp(sharp) < ramp(phase) / 4
    assert np.array_equal(sharp > 0.5, phase > 0.5)


def test_real_variety_draws_every_mechanism_on_and_off():
    draws = [real_scan_draws(ScanParams(radius_fraction=0.4), np.random.default_rng(s)) for s in range(60)]
    for key in ("fresnel", "paganin", "dense_inclusions", "holder_texture", "mask_radius", "axis_spot"):
        on = [d.get(key, 0) > 0 for d in draws]
        assert any(on) and not all(on), key
    assert {d["broad_rings"] for d in draws} >= {0, 5}
    assert all(d["mask_radius"] > 0.4 for d in draws if "mask_radius" in d)
    strengths = [d["broad_ring_strength"] for d in draws]
    assert min(strengths) < 0.04 and max(strengths) > 0.2


def test_real_variety_scan_is_labelled_and_records_its_draws():
    scan = make_scan((3, 40, 40), vary=True, variety="real", rng=4)
    assert scan["image"].shape == (3, 40, 40) and np.isfinite(scan["image"]).all()
    assert scan["meta"]["variety"] == "real" and "fresnel" in scan["meta"]["scan"]
    assert set(np.unique(scan["label"])) <= {0, 1}
