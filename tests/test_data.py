import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dendriteseg.data import LabelledVolume, PatchSampler, read_manifest, select  # noqa: E402
from dendriteseg.data.augment import AugmentConfig, augment, geometric  # noqa: E402
from dendriteseg.errors import InputError  # noqa: E402
from dendriteseg.io import write_volume  # noqa: E402


def test_geometric_augmentation_keeps_image_and_label_aligned():
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.random((6, 1, 4, 33, 35)).astype(np.float32))
    label = (image[:, 0] > 0.6).to(torch.uint8)  # the label of the image
    cfg = AugmentConfig(image_interpolation="nearest", p_affine=1.0)
    gen = torch.Generator().manual_seed(3)
    x, y = geometric(image, label, cfg, gen)
    assert x.shape == image.shape and y.shape == label.shape
    assert torch.equal(y, (x[:, 0] > 0.6).to(torch.uint8))  # label of the transformed image
    assert not torch.equal(x, image)


def test_full_augmentation_shapes_and_determinism():
    x = torch.rand(3, 1, 4, 32, 32)
    y = (x[:, 0] > 0.5).to(torch.uint8)
    cfg = AugmentConfig(zoom_min=0.67, zoom_max=2.0, gamma=0.3, curve=0.5, noise=0.12)  # the opt-in ones too
    a = augment(x, y, cfg, torch.Generator().manual_seed(1))
    b = augment(x, y, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.isfinite(a[0]).all() and set(a[1].unique().tolist()) <= {0, 1}
    x2 = torch.rand(2, 1, 1, 24, 25)  # 2D patches: z = 1
    out = augment(x2, (x2[:, 0] > 0.5).to(torch.uint8), AugmentConfig(), torch.Generator())
    assert out[0].shape == x2.shape


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, (6, 40, 41)).astype(np.float32)
    label = np.zeros(image.shape, np.uint8)
    label[:, 18:22, 18:22] = 1
    write_volume(tmp_path / "img.tif", image)
    write_volume(tmp_path / "lab.tif", label)
    manifest = {
        "entries": [
            {"name": "a", "image": "img.tif", "label": "lab.tif", "quality": "exact", "split": "train"},
            {
                "name": "b",
                "image": "img.tif",
                "label": "lab.tif",
                "quality": "noisy",
                "split": "val",
                "slices": [1, 5],
            },
        ]
    }
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    return tmp_path


def test_manifest_and_volumes(dataset):
    entries = read_manifest(dataset / "m.json")
    assert [e.name for e in select(entries, split="train")] == ["a"]
    vol = LabelledVolume.from_entry(entries[1])
    assert vol.image.shape == (4, 40, 41) and vol.label.sum() == 4 * 16
    assert -0.5 < float(np.median(vol.image)) < 1.5  # robustly normalised


def test_manifest_errors(tmp_path):
    (tmp_path / "bad.json").write_text('{"entries": [{"image": "x.tif"}]}')
    with pytest.raises(InputError, match="missing label"):
        read_manifest(tmp_path / "bad.json")
    (tmp_path / "q.yaml").write_text("entries:\n  - {image: a.tif, label: b.tif, quality: great}\n")
    with pytest.raises(InputError, match="quality"):
        read_manifest(tmp_path / "q.yaml")


def test_sampler_finds_rare_foreground(dataset):
    vol = LabelledVolume.from_entry(read_manifest(dataset / "m.json")[0])
    sampler = PatchSampler([vol], (4, 16, 16), foreground=0.8, rng=0)
    x, y = sampler.batch(32)
    assert x.shape == (32, 1, 4, 16, 16) and y.shape == (32, 4, 16, 16)
    assert (y.reshape(32, -1).max(1) > 0).mean() > 0.6  # most patches hold dendrite
    big = PatchSampler([vol], (8, 48, 48), rng=0).batch(2)  # larger than the volume: padded
    assert big[0].shape == (2, 1, 8, 48, 48)


def test_zoom_magnifies_image_and_label_alike():
    image = torch.zeros(8, 1, 1, 41, 41)
    image[..., 18:23, 18:23] = 1.0  # a 5 x 5 square in the middle
    label = image[:, 0].to(torch.uint8)
    cfg = AugmentConfig(
        flip=False,
        rotate_deg=0,
        shear_deg=0,
        zoom_min=1.0,
        zoom_max=3.0,
        p_affine=1.0,
        image_interpolation="nearest",
    )
    x, y = geometric(image, label, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(y, (x[:, 0] > 0.5).to(torch.uint8))
    areas = y.flatten(1).sum(1)
    assert (areas >= 25).all() and (areas > 25).sum() >= 6  # grown by the zoom
    assert (areas <= 16 * 16).all()  # at most 3 x 3 times (5 px -> 15 px, 16 with rounding)
    with pytest.raises(InputError, match="zoom_min"):
        AugmentConfig(zoom_min=1.5)
    with pytest.raises(InputError, match="rewindow"):
        AugmentConfig(rewindow=2)


def test_crop_windows_show_a_scan_without_air():
    from dendriteseg.data.volumes import crop_windows
    from dendriteseg.preprocess import normalisation_window

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:60, :60]
    sample = (yy - 30) ** 2 + (xx - 30) ** 2 < 26**2
    melt = np.where(rng.random((5, 60, 60)) < 0.004, 0.6, 1.0) + rng.normal(0, 0.02, (5, 60, 60))
    image = np.where(sample, melt, 0.0).astype(np.float32)
    windows, boxes = crop_windows(image, 24, rng=0)
    assert windows.shape == (24, 2) and boxes.shape == (24, 4)
    assert np.allclose(windows[0], normalisation_window(image)) and boxes[0].tolist() == [0, 60, 0, 60]
    widened = 0
    for window, (y0, y1, x0, x1) in zip(windows, boxes, strict=True):  # each window is its crop's
        crop = image[:, y0:y1, x0:x1]
        assert window == pytest.approx(normalisation_window(crop), abs=0.01)
        lo, hi = np.percentile(crop, (1, 99))
        widened += bool(window[0] < lo - 0.45 * (hi - lo))  # no air around the crop: half the width lower
    assert windows[0, 0] == pytest.approx(0.0) and widened >= 3


def test_window_reaches_lower_only_for_scans_without_air():
    from dendriteseg.preprocess import normalisation_window

    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:80, :80]
    sample = (yy - 40) ** 2 + (xx - 40) ** 2 < 36**2
    solid = rng.random((6, 80, 80)) < 0.004  # under 1 % dendrite: p1 lies in the melt's noise
    clean = np.where(sample, np.where(solid, 0.6, 1.0), 0.1)
    for sigma in (0.02, 0.15):  # quiet and very noisy scans with air keep their percentile window
        image = (clean + rng.normal(0, sigma, clean.shape)).astype(np.float32)
        lo, hi = normalisation_window(image)
        assert lo == pytest.approx(np.percentile(image, 1), rel=0.05, abs=0.02)
        crop = image[:, 22:58, 22:58]  # cropped to the sample: the window reaches half its width lower
        c_lo, c_hi = np.percentile(crop, (1, 99))
        assert normalisation_window(crop) == pytest.approx((c_lo - 0.5 * (c_hi - c_lo), c_hi), abs=1e-4)
        corners = image[:, 8:72, 8:72]  # air in the corners only, 3 % of the pixels: p1 is air already
        assert normalisation_window(corners) == pytest.approx(np.percentile(corners, (1, 99)), abs=1e-4)
        for a, widening in ((14, 0.5), (10, (0.1, 0.4))):  # air in a few corner pixels: p1 is not air
            few = image[:, a:-a, a:-a]
            f_lo, f_hi = np.percentile(few, (1, 99))
            share = (f_lo - normalisation_window(few)[0]) / (f_hi - f_lo)
            assert (share == pytest.approx(widening)) if a == 14 else (widening[0] < share < widening[1])
    image[0, 0, 0] = np.nan  # a NaN in a corner changes nothing
    assert np.isfinite(normalisation_window(image)).all()


def test_sampler_cuts_rewindowed_patches_from_their_crop():
    from dendriteseg.data.volumes import LabelledVolume as Volume

    shape = (4, 50, 53)
    index = np.arange(np.prod(shape)).reshape(shape)
    vol = Volume("v", (index / index.size).astype(np.float32), (index % 7 == 0).astype(np.uint8))
    sampler = PatchSampler([vol], (2, 20, 20), rewindow=1.0, rng=5)
    windows, boxes = sampler._crops[0]
    x, y = sampler.batch(16)
    assert x.shape == (16, 1, 2, 20, 20)
    for patch, patch_label in zip(x[:, 0], y, strict=True):
        found = False
        for (lo, hi), (y0, y1, x0, x1) in zip(windows, boxes, strict=True):
            pixel = np.rint((patch * (hi - lo) + lo) * index.size).astype(int)
            if not np.allclose((patch * (hi - lo) + lo) * index.size, pixel, atol=0.05):
                continue
            zz, yy, xx = np.unravel_index(np.clip(pixel, 0, index.size - 1), shape)
            inside = (yy >= y0).all() and (yy < y1).all() and (xx >= x0).all() and (xx < x1).all()
            found = found or (inside and np.array_equal(patch_label, (pixel % 7 == 0).astype(np.uint8)))
        assert found  # from inside one crop, normalised by its window, label aligned


def test_grey_curve_is_monotone_keeps_the_window_ends_and_can_be_off():
    from dendriteseg.data.augment import grey_curve

    ramp = torch.linspace(-0.2, 1.2, 141).view(1, 1, 1, 1, 141).repeat(6, 1, 1, 1, 1)
    out = grey_curve(ramp, points=3, chance=1.0, gen=torch.Generator().manual_seed(2))
    assert out.shape == ramp.shape
    assert (out.diff(dim=-1) >= -1e-6).all()  # air < solid < melt stays in that order
    at = {round(v, 2): i for i, v in enumerate(ramp[0, 0, 0, 0].tolist())}
    assert torch.allclose(out[..., at[0.0]], torch.zeros(6, 1, 1, 1), atol=1e-5)
    assert torch.allclose(out[..., at[1.0]], torch.ones(6, 1, 1, 1), atol=1e-5)
    assert not torch.allclose(out, ramp, atol=0.02)  # the middle moved
    same = grey_curve(ramp, points=3, chance=0.0, gen=torch.Generator().manual_seed(2))
    assert torch.allclose(same, ramp, atol=1e-6)
    with pytest.raises(InputError, match="curve"):
        AugmentConfig(curve=1.5)


# -- each intensity transform alone, against what it is meant to do ---------------------------

OFF = dict(
    flip=False,
    rotate_deg=0.0,
    shear_deg=0.0,
    p_affine=0.0,
    brightness=0.0,
    contrast=0.0,
    gamma=0.0,
    curve=0.0,
    noise=0.0,
    p_blur=0.0,
    rings=0.0,
    p_rings=0.0,
    streaks=0.0,
    p_streaks=0.0,
    drift=0.0,
)


def only(**settings):
    return AugmentConfig(**{**OFF, **settings})


def patches(b=6, z=4, h=24, w=26, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, z, h, w, generator=gen) * 0.8 + 0.1


def test_intensity_with_everything_off_is_the_identity():
    from dendriteseg.data.augment import intensity

    x = patches()
    assert torch.equal(intensity(x, only(), torch.Generator().manual_seed(0)), x)
    y = (x[:, 0] > 0.5).to(torch.uint8)
    gx, gy = geometric(x, y, only(), torch.Generator().manual_seed(0))
    assert torch.equal(gx, x) and torch.equal(gy, y)


def test_contrast_brightness_gamma_and_drift_each_do_their_job():
    from dendriteseg.data.augment import intensity

    x = patches()
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
    c = intensity(x, only(contrast=0.25), gen())
    factor = (c - mean) / (x - mean)
    per_patch = factor.flatten(1)
    assert torch.allclose(c.mean(dim=(1, 2, 3, 4), keepdim=True), mean, atol=1e-5)
    assert torch.allclose(per_patch, per_patch[:, :1].expand_as(per_patch), atol=1e-3)
    assert ((per_patch[:, 0] >= 0.75) & (per_patch[:, 0] <= 1.25)).all() and per_patch[:, 0].std() > 0.01
    shift = (intensity(x, only(brightness=0.1), gen()) - x).flatten(1)
    assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-6)
    assert (shift[:, 0].abs() <= 0.1).all() and shift[:, 0].std() > 0.005
    g = intensity(x, only(gamma=1.0), gen())
    exponent = (g.log() / x.log()).flatten(1)
    assert torch.allclose(exponent, exponent[:, :1].expand_as(exponent), rtol=1e-3)
    assert ((exponent[:, 0] >= 0.5 - 1e-4) & (exponent[:, 0] <= 2.0 + 1e-4)).all() and exponent[
        :, 0
    ].std() > 0.05
    d = intensity(x, only(drift=0.1), gen()) / x
    ratio = d.mean(dim=(1, 3, 4))  # (b, z): 1 + slope * ramp, ramp -0.5 .. 0.5 along z
    slope = ratio[:, -1] - ratio[:, 0]
    assert torch.allclose(d, ratio[:, None, :, None, None].expand_as(d), atol=1e-5)
    assert torch.allclose(ratio.mean(dim=1), torch.ones(6), atol=1e-5) and (slope.abs() <= 0.1 + 1e-6).all()
    assert torch.allclose(ratio[:, 1] - ratio[:, 0], slope / 3, atol=1e-5) and slope.abs().max() > 0.01


def test_rings_streaks_blur_and_noise_each_do_their_job():
    import torch.nn.functional as F

    from dendriteseg.data.augment import intensity

    x = patches(b=4, z=3, h=32, w=32)
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    rings = intensity(x, only(rings=0.05, p_rings=1.0), gen()) - x
    assert (rings.abs() <= 0.05 + 1e-6).all() and (rings.flatten(1).abs().max(1).values > 0.02).all()
    assert torch.allclose(rings, rings[:, :, :1].expand_as(rings), atol=1e-6)  # the same in every slice
    assert torch.equal(intensity(x, only(rings=0.05, p_rings=0.0), gen()), x)
    streaks = intensity(x, only(streaks=0.05, p_streaks=1.0), gen()) - x
    assert (streaks >= -1e-7).all() and (streaks <= 0.05 + 1e-6).all()
    assert torch.allclose(streaks, streaks[:, :, :1].expand_as(streaks), atol=1e-6)
    line = (streaks[:, 0, 0] > 0.025).flatten(1).sum(1)  # a thin line: a few pixels across
    assert ((line > 0) & (line < 8 * 32)).all()
    blurred = intensity(x, only(p_blur=1.0), gen())
    kernel = torch.tensor([0.25, 0.5, 0.25])
    flat = x.reshape(-1, 1, 32, 32)
    ref = F.conv2d(F.pad(flat, (1, 1, 0, 0), mode="replicate"), kernel.view(1, 1, 1, 3))
    ref = F.conv2d(F.pad(ref, (0, 0, 1, 1), mode="replicate"), kernel.view(1, 1, 3, 1))
    assert torch.allclose(blurred, ref.reshape(x.shape), atol=1e-6)
    noise = (intensity(x, only(noise=0.08), gen()) - x).flatten(1)
    assert (noise.std(1) <= 0.085).all() and noise.std(1).max() > 0.01 and noise.mean().abs() < 0.01


def test_flips_move_image_and_label_together_and_rotation_keeps_area():
    x = patches(b=8, z=3, h=32, w=32)
    y = (x[:, 0] > 0.5).to(torch.uint8)
    fx, fy = geometric(x, y, only(flip=True), torch.Generator().manual_seed(2))
    assert torch.equal(fy, (fx[:, 0] > 0.5).to(torch.uint8))
    assert not torch.equal(fx, x)
    flipped_z = [
        torch.equal(fx[i], x[i].flip(1)) or torch.equal(fx[i], x[i].flip(1).flip(2)) for i in range(8)
    ]
    assert any(flipped_z) or any(torch.equal(fx[i, :, 0], x[i, :, -1]) for i in range(8))
    disc = torch.zeros(2, 1, 1, 48, 48)
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    disc[:, :, :, ((yy - 23.5) ** 2 + (xx - 23.5) ** 2) <= 8**2] = 1.0
    label = disc[:, 0].to(torch.uint8)
    cfg = only(rotate_deg=40.0, p_affine=1.0)
    rx, ry = geometric(disc, label, cfg, torch.Generator().manual_seed(1))
    assert abs(int(ry.sum()) - int(label.sum())) <= 0.05 * int(label.sum())  # a disc turned is a disc
    sheared = geometric(disc, label, only(shear_deg=30.0, p_affine=1.0), torch.Generator().manual_seed(1))[1]
    assert not torch.equal(sheared, label)
    assert torch.equal(
        geometric(disc, label, only(rotate_deg=40.0, p_affine=0.0), torch.Generator())[1], label
    )


def test_augment_config_refuses_impossible_ranges():
    for bad in (
        {"zoom_min": 0.0},
        {"zoom_min": 1.2},
        {"zoom_max": 0.9},
        {"curve_points": 0},
        {"p_blur": 1.5},
        {"curve": -0.1},
        {"p_affine": 2.0},
    ):
        with pytest.raises(InputError):
            AugmentConfig(**bad)
    AugmentConfig(zoom_min=1.0, zoom_max=1.0, curve_points=1, p_blur=1.0, curve=0.0)


def test_drift_reaches_two_slice_patches():
    from dendriteseg.data.augment import intensity

    x = patches(b=6, z=2)
    d = intensity(x, only(drift=0.1), torch.Generator().manual_seed(3)) / x
    ratio = d.mean(dim=(1, 3, 4))
    assert (ratio[:, 1] - ratio[:, 0]).abs().max() > 0.01


def test_exterior_replaces_only_the_air_and_broad_rings_appear():
    from dendriteseg.data.augment import AIR, intensity

    x = patches(b=8, z=2, h=48, w=48)
    x[:, :, :, :, :10] = 0.02  # air along one side
    out = intensity(x, only(p_exterior=1.0), torch.Generator().manual_seed(0))
    air = x < AIR
    assert torch.equal(out[~air], x[~air])  # the sample untouched
    assert (out[air] != x[air]).float().mean() > 0.9 and out[air].std() > 0.05
    rings = intensity(x, only(p_broad_rings=1.0), torch.Generator().manual_seed(1)) - x
    assert torch.allclose(rings, rings[:, :, :1].expand_as(rings), atol=1e-6)  # the same in every slice
    peak = rings.flatten(1).abs().max(1).values
    assert (peak <= 0.4 + 1e-5).all() and (peak > 0.01).sum() >= 6  # most patches get a visible ring
    assert torch.equal(intensity(x, only(p_exterior=0.0, p_broad_rings=0.0), torch.Generator()), x)


def test_exterior_leaves_dark_solid_alone():
    from dendriteseg.data.augment import augment

    x = patches(b=4, z=1, h=32, w=32)
    x[:, :, :, :, :8] = 0.02  # air
    x[:, :, :, 10:20, 10:20] = 0.05  # solid as dark as air
    y = torch.zeros(4, 1, 32, 32, dtype=torch.uint8)
    y[:, :, 10:20, 10:20] = 1
    out, _ = augment(x, y, only(p_exterior=1.0), torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :, :, 10:20, 10:20], x[:, :, :, 10:20, 10:20])
    assert not torch.equal(out[:, :, :, :, :8], x[:, :, :, :, :8])


def test_single_slice_patches_repeat_one_slice_of_image_and_label_along_z():
    x = patches(b=16, z=4, h=20, w=22)
    y = (x[:, 0] > 0.5).to(torch.uint8)
    out, labels = augment(x, y, only(p_single=0.5, noise=0.1), torch.Generator().manual_seed(2))
    flat = [bool((out[i] == out[i, :, :1]).all()) for i in range(len(out))]
    assert 3 <= sum(flat) <= 13  # about half the patches, the rest untouched but for the noise
    for i, single in enumerate(flat):
        if single:
            assert bool((labels[i] == labels[i, :1]).all())
            pick = next(k for k in range(4) if torch.equal(labels[i, 0], y[i, k]))  # one of its own slices
            assert torch.equal(labels[i, 0], y[i, pick])
        else:
            assert torch.equal(labels[i], y[i])
    thin = patches(b=4, z=1, h=20, w=22)  # 2D patches: nothing to repeat
    assert torch.equal(augment(thin, thin[:, 0] > 0.5, only(p_single=1.0), torch.Generator())[0], thin)
    with pytest.raises(InputError, match="p_single"):
        AugmentConfig(p_single=1.5)
