"""CT forward model, placement, presets, label noise and datasets."""

import json
import os

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from dendriteseg.cli import app
from dendriteseg.data import read_manifest
from dendriteseg.io import read_volume
from dendriteseg.metrics import iou
from dendriteseg.synth import procedural_dendrites
from dendriteseg.synth.ct import ScanParams, acquisition_times, holder_ring, simulate_scan
from dendriteseg.synth.dataset import EXACT_GROUPS, build_dataset
from dendriteseg.synth.label_noise import LabelNoise, corrupt_labels
from dendriteseg.synth.scan import (
    IMAGE_SETTINGS,
    PRESETS,
    jitter,
    make_image_scan,
    make_scan,
    make_series,
    scan_params,
)
from dendriteseg.synth.structure import grow_phase, place_structure

SMALL = (6, 64, 64)


@pytest.fixture(scope="module")
def scan():
    return make_scan(SMALL, preset="realistic", rng=5)


def test_deterministic_for_a_seed(scan):
    again = make_scan(SMALL, preset="realistic", rng=5)
    np.testing.assert_array_equal(scan["image"], again["image"])
    np.testing.assert_array_equal(scan["label"], again["label"])
    other = make_scan(SMALL, preset="realistic", rng=6)
    assert not np.array_equal(scan["label"], other["label"])


def test_label_and_image_are_aligned(scan):
    image, label, sample = scan["image"], scan["label"], scan["sample"]
    inside = np.broadcast_to(sample, label.shape)
    solid = ndimage.binary_erosion(label == 1, iterations=1) & inside
    melt = ndimage.binary_erosion((label == 0) & inside, iterations=2)
    air = ~np.broadcast_to(ndimage.binary_dilation(sample, iterations=3), label.shape)
    assert image[air].mean() < image[solid].mean() < image[melt].mean()
    # shifting the label away from the image makes the agreement worse
    shifted = np.roll(label, 4, axis=2)
    contrast = image[melt].mean() - image[solid].mean()
    assert image[(shifted == 1) & inside].mean() > image[solid].mean() + 0.2 * contrast


def test_label_is_mid_scan_phase_without_distractors(scan):
    label, phase = scan["label"], scan["phase"]
    assert not (label.astype(bool) & ~(phase > 0.5)).any()
    assert set(np.unique(label)) <= {0, 1} and label.dtype == np.uint8


def test_metadata_complete(scan):
    meta = scan["meta"]
    for key in (
        "seed",
        "scan",
        "preset",
        "structure",
        "zoom",
        "cnr",
        "solid_ratio",
        "placement_seed",
        "projector",
        "dendrite_fraction",
        "growth_voxels",
        "gain_drift",
    ):
        assert key in meta, key
    for knob in ("photons", "n_views", "ring_strength", "interlace", "beam_hardening"):
        assert knob in meta["scan"]
    assert meta["cnr"] > 0
    assert meta["seed"] == 5
    json.dumps(meta)  # serialisable


def test_presets_order_difficulty():
    label, phase = procedural_dendrites((4, 64, 64), n_seeds=10, rng=1)
    cnr = {}
    for name in PRESETS:
        out = simulate_scan(phase, params=ScanParams(**PRESETS[name]["scan"]), rng=0)
        cnr[name] = out["meta"]["cnr"]
    assert cnr["easy"] > cnr["moderate"] > cnr["hard"]
    assert cnr["easy"] > cnr["realistic"] > cnr["hard"]


def test_realistic_preset_is_moderate_in_a_container_that_defeats_a_global_threshold():
    from dendriteseg.baselines import Otsu
    from dendriteseg.metrics import iou

    moderate = make_scan((8, 96, 96), preset="moderate", rng=1)
    realistic = make_scan((8, 96, 96), preset="realistic", rng=1)
    np.testing.assert_array_equal(moderate["label"], realistic["label"])  # same dendrites, wall label 0
    wall = (realistic["image"] != moderate["image"]) & ~realistic["sample"]
    assert wall.mean() > 0.05  # a container around the sample changes the image outside it
    scores = {}
    for name, scan in (("moderate", moderate), ("realistic", realistic)):
        scores[name] = iou(Otsu().fit(scan["image"]).predict(scan["image"]), scan["label"])
    assert scores["moderate"] > 0.6 and scores["realistic"] < 0.3  # the grainy wall is called dendrite


def test_interlaced_acquisition_times():
    angles, times = acquisition_times(12, 4)
    assert np.all(np.diff(angles) > 0) and angles[-1] < np.pi
    assert sorted(times.tolist()) == pytest.approx(np.linspace(0, 1, 12).tolist())
    assert np.abs(np.diff(times)).min() > 0.2  # neighbours were taken far apart in time
    _, sequential = acquisition_times(12, 1)
    assert np.all(np.diff(sequential) > 0)


def test_growth_during_scan_changes_the_image():
    _, phase = procedural_dendrites((3, 64, 64), n_seeds=10, rng=2)
    still = simulate_scan(phase, params=ScanParams(photons=1e9), rng=0)
    moving = simulate_scan(phase, phase_end=grow_phase(phase, 2.0), params=ScanParams(photons=1e9), rng=0)
    assert moving["label"].sum() > still["label"].sum()
    assert np.abs(moving["image"] - still["image"]).mean() > 1e-3


def test_skimage_projector_fallback_matches_astra():
    _, phase = procedural_dendrites((3, 64, 64), n_seeds=12, rng=3)
    clean = dict(n_views=90, photons=1e9, ring_strength=0.0, dead_pixels=0)
    out = simulate_scan(phase, params=ScanParams(projector="skimage", **clean), rng=0)
    assert out["meta"]["projector"] == "skimage" and out["image"].shape == (3, 64, 64)
    assert out["meta"]["cnr"] > 1
    pytest.importorskip("astra")
    ref = simulate_scan(phase, params=ScanParams(projector="astra", **clean), rng=0)
    assert np.abs(out["image"] - ref["image"]).mean() < 0.05


def test_place_structure_keeps_labels_exact_and_rotates():
    _, phase = procedural_dendrites((20, 20, 20), n_seeds=2, rng=4)
    same = place_structure(phase, (20, 20, 20), zoom=1.0, rotate=False, flip=False, rng=0)
    np.testing.assert_allclose(same, phase, atol=1e-5)
    big = place_structure(phase, (40, 40, 40), zoom=2.0, rotate=False, flip=False, rng=0)
    assert abs((big > 0.5).mean() - (phase > 0.5).mean()) < 0.02
    turned = place_structure(phase, (20, 20, 20), zoom=1.0, elastic=2.0, rng=1)
    assert not np.allclose(turned, phase)


def test_grow_phase_moves_interface_outwards():
    _, phase = procedural_dendrites((8, 40, 40), n_seeds=3, rng=5)
    fractions = [(grow_phase(phase, d) > 0.5).mean() for d in (0.0, 1.0, 2.0)]
    assert fractions[0] == pytest.approx((phase > 0.5).mean(), abs=1e-3)
    assert fractions[0] < fractions[1] < fractions[2]


def test_label_noise(scan):
    exact = scan["label"]
    noisy = corrupt_labels(exact, rng=0)
    assert 0.4 < iou(noisy, exact) < 0.99
    np.testing.assert_array_equal(noisy, corrupt_labels(exact, rng=0))


@pytest.mark.parametrize("bias", [1, -1])
def test_label_noise_bias_moves_every_boundary_one_way(scan, bias):
    exact = scan["label"].astype(bool)
    only_bias = LabelNoise(shift=0, merge=0, miss_thin=0, speckle=0.0, bias=bias)
    moved = corrupt_labels(exact, noise=only_bias, rng=0).astype(bool)
    grown, shrunk = (moved, exact) if bias > 0 else (exact, moved)
    assert (grown >= shrunk).all() and moved.sum() != exact.sum()  # one way only, and it moved
    for z in range(exact.shape[0]):  # by exactly one pixel
        expected = (
            ndimage.binary_dilation(exact[z])
            if bias > 0
            else ndimage.binary_erosion(exact[z], border_value=1)
        )
        np.testing.assert_array_equal(moved[z], expected)
    noisy = corrupt_labels(exact, noise=LabelNoise(bias=bias), rng=0).astype(bool)
    assert (
        np.sign(noisy.sum() - corrupt_labels(exact, rng=0).astype(bool).sum()) == bias
    )  # on top of the rest


def test_series_grows():
    series = make_series((4, 48, 48), n_scans=3, phasefield_steps=240, rng=0)
    fractions = [s["meta"]["dendrite_fraction"] for s in series]
    assert len(series) == 3 and fractions[0] <= fractions[1] <= fractions[2]
    assert fractions[-1] > fractions[0]


def test_dataset_manifest_and_resume(tmp_path):
    path = build_dataset(tmp_path / "ds", preset="tiny", seed=1)
    entries = read_manifest(path)
    noisy = [e for e in entries if e.quality == "noisy"]
    exact = [e for e in entries if e.quality == "exact"]
    assert len(noisy) == 4 and len(exact) == sum(EXACT_GROUPS.values()) == 14
    assert [e.split for e in exact].count("train") == 6
    assert {e.split for e in noisy} == {"train", "val", "test"}
    assert read_volume(exact[0].image).shape == (8, 48, 48)
    raw = json.loads(path.read_text())["entries"][0]
    noisy_label = read_volume(noisy[0].label)
    assert not np.array_equal(noisy_label, read_volume(path.parent / raw["exact_label"]))
    stamp = os.path.getmtime(exact[3].image)
    build_dataset(tmp_path / "ds", preset="tiny", seed=1)  # resumes: nothing rewritten
    assert os.path.getmtime(exact[3].image) == stamp


def test_wide_variety_spans_more_air_and_sizes_than_standard():
    params, growth = scan_params("moderate")
    draws = {
        v: [jitter(params, growth, rng=i, variety=v)[0] for i in range(200)] for v in ("standard", "wide")
    }
    radius = {v: [p.radius_fraction for p in ps] for v, ps in draws.items()}
    assert min(radius["standard"]) >= 0.38 and min(radius["wide"]) < 0.26  # more air around the sample
    photons = {v: np.log([p.photons for p in ps]) for v, ps in draws.items()}
    assert np.ptp(photons["wide"]) > 1.5 * np.ptp(photons["standard"])
    zooms = {
        v: [
            make_scan((2, 16, 16), vary=True, variety=v, rng=i, n_views=16)["meta"]["zoom"] for i in range(12)
        ]
        for v in ("standard", "wide")
    }
    assert np.ptp(zooms["wide"]) > np.ptp(zooms["standard"])
    with pytest.raises(KeyError, match="unknown variety"):
        jitter(params, growth, variety="wild")


def test_holder_tube_is_background_and_keeps_the_structure():
    shape = (3, 64, 64)
    bare = make_scan(shape, preset="easy", rng=11, radius_fraction=0.35)
    held = make_scan(shape, preset="easy", holder=1.0, rng=11, radius_fraction=0.35)
    params = ScanParams(**held["meta"]["scan"])
    assert params.holder_thickness > 0 and bare["meta"]["scan"]["holder_thickness"] == 0
    ring = holder_ring(64, params)
    assert ring.any() and not (ring & held["sample"]).any()
    np.testing.assert_array_equal(held["label"], bare["label"])  # same structure, and the tube is label 0
    air = ~held["sample"] & ~ndimage.binary_dilation(ring, iterations=3)
    wall = ndimage.binary_erosion(ring) if ndimage.binary_erosion(ring).any() else ring
    assert held["image"][:, wall].mean() > held["image"][:, air].mean() + 0.2 * params.holder_mu
    assert not holder_ring(64, ScanParams()).any()


def test_cli_synth_dataset_wide_and_bad_variety(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(
        app,
        [
            "synth",
            "dataset",
            str(tmp_path / "d"),
            "--preset",
            "tiny",
            "--variety",
            "wide",
            "--label-bias",
            "1",
        ],
    )
    assert ok.exit_code == 0, ok.output
    noisy = json.loads((tmp_path / "d" / "noisy_000" / "meta.json").read_text())
    assert noisy["label_noise"]["settings"]["bias"] == 1
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["variety"] == "wide"
    meta = json.loads((tmp_path / "d" / "exact_00" / "meta.json").read_text())
    assert meta["variety"] == "wide"
    bad = runner.invoke(app, ["synth", "dataset", str(tmp_path / "e"), "--variety", "wild"])
    assert bad.exit_code == 2 and "unknown variety" in bad.stderr
    assert not (tmp_path / "e").exists()
    bad = runner.invoke(app, ["synth", "dataset", str(tmp_path / "e"), "--holder", "1.5"])
    assert bad.exit_code == 2 and "holder must be a share between 0 and 1" in bad.stderr
    assert not (tmp_path / "e").exists()


def test_image_domain_scans_vary_and_keep_labels_inside_the_sample():
    scans = [make_image_scan((3, 48, 48), rng=i) for i in range(6)]
    again = make_image_scan((3, 48, 48), rng=0)
    np.testing.assert_array_equal(again["image"], scans[0]["image"])
    for s in scans:
        settings = s["meta"]["scan"]
        assert s["meta"]["generator"] == "image"
        assert all(lo <= settings[k] <= hi for k, (lo, hi) in IMAGE_SETTINGS.items())
        assert s["image"].shape == s["label"].shape == (3, 48, 48) and s["image"].dtype == np.float32
        assert not s["label"][:, ~s["sample"]].any()  # air is never dendrite
        np.testing.assert_array_equal(s["label"], (s["phase"] > 0.5) & s["sample"][None])
    airs = [s["meta"]["scan"]["air"] for s in scans]
    assert np.ptp(airs) > 0.05  # grey levels differ from scan to scan
    labelled = [s for s in scans if s["label"].sum() > 20]
    for s in labelled:  # solid is darker than the melt around it
        inside = s["sample"][None] & ~ndimage.binary_dilation(s["label"], iterations=2)
        assert s["image"][s["label"] > 0].mean() < s["image"][inside].mean()
    assert labelled


def test_image_generator_dataset_and_cli_errors(tmp_path):
    path = build_dataset(tmp_path / "img", preset="tiny", seed=2, generator="image")
    manifest = json.loads(path.read_text())
    assert manifest["generator"] == "image" and len(manifest["entries"]) == 18
    meta = json.loads((tmp_path / "img" / "exact_00" / "meta.json").read_text())
    assert meta["generator"] == "image"
    runner = CliRunner()
    bad = runner.invoke(app, ["synth", "dataset", str(tmp_path / "e"), "--generator", "paint"])
    assert bad.exit_code == 2 and "unknown generator 'paint'" in bad.stderr
    bad = runner.invoke(
        app, ["synth", "dataset", str(tmp_path / "e"), "--generator", "image", "--holder", "0.5"]
    )
    assert bad.exit_code == 2 and "no holder tubes" in bad.stderr
    assert not (tmp_path / "e").exists()


def test_cli_synth_volume(tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "synth",
            "volume",
            str(tmp_path / "v"),
            "--shape",
            "4",
            "48",
            "48",
            "--format",
            "zarr",
            "--seed",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert read_volume(tmp_path / "v" / "label.zarr").shape == (4, 48, 48)
    assert json.loads((tmp_path / "v" / "meta.json").read_text())["preset"] == "realistic"
    bad = runner.invoke(
        app, ["synth", "volume", str(tmp_path / "w"), "--preset", "wild", "--shape", "4", "48", "48"]
    )
    assert bad.exit_code == 2 and "unknown preset" in bad.stderr


def test_field_variety_draws_faint_skins_bands_noise_and_empty_scans():
    params, growth = scan_params("moderate")
    drawn = [jitter(params, growth, rng=i, variety="field")[0] for i in range(300)]
    assert any(p.solid_ratio > 0.9 for p in drawn)  # faint dendrites
    assert any(p.skin_thickness > 0 and p.skin_mu < 1 for p in drawn)  # dark oxide skins
    assert any(p.skin_thickness > 0 and p.skin_mu > 1 for p in drawn)  # and bright ones
    banded = [p for p in drawn if p.holder_thickness > 0 and p.holder_gap == 0 and p.holder_texture > 0]
    assert banded and any(p.mask_radius > 0 for p in banded)  # grainy bands inside masked exteriors
    assert any(p.correlated_noise > 0 for p in drawn)
    # the other varieties draw as before (the shipped models' recipes rebuild the same data)
    assert all(
        p.skin_thickness == 0 for p in (jitter(params, growth, rng=i, variety="real")[0] for i in range(50))
    )
    empty = make_scan((2, 24, 24), seeds=0, rng=3, n_views=24)
    assert empty["label"].sum() == 0 and empty["meta"]["structure"]["n_seeds"] == 0


def test_skin_and_correlated_noise_in_the_forward_model():
    shape = (2, 48, 48)
    bare = make_scan(shape, preset="easy", rng=4, radius_fraction=0.4, n_views=90)
    skinned = make_scan(
        shape, preset="easy", rng=4, radius_fraction=0.4, n_views=90, skin_thickness=2.0, skin_mu=0.2
    )
    r = np.hypot(*(np.mgrid[:48, :48] - 23.5))
    shell = (r > 0.4 * 48 - 1.5) & (r < 0.4 * 48 - 0.5)
    assert skinned["image"][:, shell].mean() < bare["image"][:, shell].mean() - 0.2  # a dark line
    assert not skinned["label"][:, r > 0.4 * 48 - 2].any()  # the skin is background
    noisy = make_scan(
        shape,
        preset="easy",
        rng=4,
        radius_fraction=0.4,
        n_views=90,
        correlated_noise=0.1,
        noise_correlation=2.0,
    )
    diff = (noisy["image"] - bare["image"])[:, r < 15]
    assert 0.05 < diff.std() < 0.2
    lag = np.corrcoef(diff[:, :-1].ravel(), diff[:, 1:].ravel())[0, 1]
    assert lag > 0.5  # neighbours move together: the noise is correlated


def test_visible_contrast_sees_a_dendrite_through_shading_but_not_through_noise():
    from dendriteseg.synth.ct import contrast_to_noise, visible_contrast

    gen = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    sample = np.hypot(yy - 31.5, xx - 31.5) < 30
    label = np.zeros((3, 64, 64), np.uint8)
    label[:, 20:30, 20:34] = 1
    label[:, 38:44, 36:50] = 1
    flat = 1.0 - 0.1 * label + gen.normal(0, 0.05, label.shape)
    assert 1.6 < visible_contrast(flat, label, sample) < 2.4  # 0.1 deep in noise of 0.05
    shaded = flat + 0.4 * np.sin(xx / 8 + yy / 16)  # broad bands of shading are no noise to the eye
    assert 1.6 < visible_contrast(shaded, label, sample) < 2.4
    assert contrast_to_noise(shaded, label, sample) < 1.0  # where the global measure sees little
    inverted = 1.0 + 0.1 * label + gen.normal(0, 0.05, label.shape)
    assert visible_contrast(inverted, label, sample) < 0
    assert np.isnan(visible_contrast(flat, np.zeros_like(label), sample))  # nothing to see


def test_raised_contrast_scales_the_solids_contrast_within_bounds():
    from dendriteseg.synth.scan import MAX_CONTRAST_GAIN, MIN_SOLID_RATIO, raised_contrast

    assert raised_contrast(0.95, 0.5, 1.5) == pytest.approx(0.85)  # 3x the contrast
    assert raised_contrast(0.95, -1.0, 1.5) == pytest.approx(1 - 0.05 * MAX_CONTRAST_GAIN)
    assert raised_contrast(0.7, 0.1, 1.5) == MIN_SOLID_RATIO


def test_min_visible_simulates_a_hidden_dendrite_again_with_more_contrast():
    options = dict(preset="easy", rng=5, n_views=90, solid_ratio=0.97, solid_ratio_spread=0.0)
    faint = make_scan((3, 48, 48), **options)
    shown = make_scan((3, 48, 48), min_visible=2.0, **options)
    before = faint["meta"]["visible_contrast"]
    assert before < 2.0 and "visibility_raised" not in faint["meta"]
    assert shown["meta"]["visibility_raised"] == {"visible_contrast_before": before, "min_visible": 2.0}
    assert shown["meta"]["visible_contrast"] > before + 0.5
    assert shown["meta"]["scan"]["solid_ratio"] < 0.97
    np.testing.assert_array_equal(shown["label"], faint["label"])  # the same structure, better seen
    empty = make_scan((2, 24, 24), seeds=0, rng=3, n_views=24, min_visible=2.0)
    assert "visibility_raised" not in empty["meta"]  # nothing to show: kept as drawn


def test_dataset_min_visible_is_recorded_and_checked(tmp_path):
    from dendriteseg.errors import InputError
    from dendriteseg.train.recipe import DatasetSpec

    assert DatasetSpec(20, "field").folder == "data_field20"
    assert DatasetSpec(20, "field", min_visible=1.5).folder == "data_field20_visible1.5"
    with pytest.raises(InputError, match="min_visible"):
        build_dataset(tmp_path / "img", generator="image", min_visible=1.0)
    runner = CliRunner()
    bad = runner.invoke(app, ["synth", "dataset", str(tmp_path / "e"), "--min-visible", "-1"])
    assert bad.exit_code == 2 and "min_visible must be 0 or more" in bad.stderr
    assert not (tmp_path / "e").exists()
