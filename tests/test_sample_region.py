"""Sample detection: the region outside which nothing is dendrite."""

import numpy as np
import pytest
from scipy import ndimage

from dendriteseg.sample_region import detect_sample, sample_region_for
from dendriteseg.synth.scan import make_scan


def radius_map(shape):
    ny, nx = shape
    yy, xx = np.ogrid[:ny, :nx]
    return np.hypot(yy - (ny - 1) / 2, xx - (nx - 1) / 2)


def assert_dendrites_inside(region, label):
    """Every dendrite inside the region, but for partial pixels on the sample's rim (1 px from it)."""
    dendrite = label.any(axis=0) if label.ndim == 3 else label.astype(bool)
    near = ndimage.binary_dilation(region.mask, iterations=1)
    assert near[dendrite].all()
    assert region.mask[dendrite].mean() > 0.98


@pytest.fixture(scope="module")
def scan():
    return make_scan((8, 128, 128), preset="moderate", rng=3)


def test_a_cylinder_in_air_is_found(scan):
    region = detect_sample(scan["image"])
    assert region is not None and region.mask.shape == (128, 128)
    assert region.mask[scan["label"].any(axis=0)].all()  # every dendrite inside
    assert (
        region.mask[scan["sample"].any(axis=0) if scan["sample"].ndim == 3 else scan["sample"]].mean() > 0.99
    )
    assert not region.mask[radius_map((128, 128)) > 0.5 * 128 * 1.05].any()  # the corners are outside
    assert 0.3 < region.share < 0.9


@pytest.mark.parametrize("fill", ["zero", "mean", "bright"])
def test_an_exterior_masked_to_a_constant_is_found(scan, fill):
    image = scan["image"].astype(np.float32).copy()
    outside = radius_map((128, 128)) > 0.42 * 128
    value = {"zero": 0.0, "mean": float(image.mean()), "bright": float(image.max())}[fill]
    image[:, outside] = value
    region = detect_sample(image)
    assert region is not None and region.how == "constant exterior"
    assert not region.mask[radius_map((128, 128)) > 0.42 * 128 + 0.03 * 128].any()
    assert region.mask[~outside].all()


def test_a_container_wall_is_left_outside():
    scan = make_scan((8, 128, 128), preset="moderate", rng=1, holder=1.0, variety="wide", vary=True)
    params = scan["meta"]["scan"]
    assert params["holder_thickness"] > 0
    region = detect_sample(scan["image"])
    assert region is not None
    assert_dendrites_inside(region, scan["label"])
    wall = (params["radius_fraction"] + params["holder_gap"] + params["holder_thickness"]) * 128
    assert not region.mask[radius_map((128, 128)) > wall + 0.03 * 128].any()
    # the sample's own edge: the gap and the wall are outside
    assert not region.mask[radius_map((128, 128)) > (params["radius_fraction"] + 0.02) * 128].any()


def test_a_crop_inside_the_sample_gets_no_region(scan):
    crop = scan["image"][:, 40:88, 40:88]
    assert detect_sample(crop) is None
    assert detect_sample(np.full((4, 32, 32), 7.0, np.float32)) is None


def test_given_regions_and_none(scan, tmp_path):
    from dendriteseg.io import write_volume

    mask = np.zeros((128, 128), np.uint8)
    mask[10:50, 20:60] = 1
    write_volume(tmp_path / "mask.tif", mask)
    given = sample_region_for(scan["image"], str(tmp_path / "mask.tif"))
    assert given.mask.sum() == 40 * 40 and given.how.startswith("from ")
    assert sample_region_for(scan["image"], "none") is None
    write_volume(tmp_path / "small.tif", mask[:64])
    with pytest.raises(ValueError, match="does not fit"):
        sample_region_for(scan["image"], str(tmp_path / "small.tif"))


def test_segment_labels_nothing_outside_the_region(scan):
    from dendriteseg.infer import segment

    everywhere = lambda batch: np.full(batch.shape, 5.0, np.float32)  # noqa: E731 - calls every voxel dendrite
    auto = segment(scan["image"], everywhere)
    region = auto.sample_region
    assert region is not None and np.array_equal(auto.labels.any(axis=0), region.mask)
    assert segment(scan["image"], everywhere, sample_mask="none").labels.all()


def test_dendrites_cut_by_the_edge_stay_inside_and_broad_dents_outside():
    """A narrow dark notch at the sample's edge (a dendrite) is sample; a broad shallow dent (a gap
    between an irregular sample and its wall, which models take for dendrite) is not, nor is the dark
    exterior just beyond the edge."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:256, :256]
    disc = np.hypot(yy - 127.5, xx - 127.5) < 100
    image = np.where(disc, 0.8, 0.2) + rng.normal(0, 0.03, (256, 256))
    dent = disc & (np.hypot(yy - 127.5, xx - 267.5) < 62)  # a bite about 95 px wide, 22 px deep
    image[dent] = 0.3
    notch = (abs(yy - 128) < 4) & (xx > 25) & (xx < 50)  # 7 px wide, reaching in from the edge
    image[notch] = 0.35
    region = detect_sample(image.astype(np.float32))
    assert region is not None
    assert region.mask[notch & disc].all()  # the notch inside the sample (it starts 2 px outside)
    assert region.mask[dent & (np.hypot(yy - 127.5, xx - 267.5) < 58)].mean() < 0.1
    # the region ends at the sample's edge: a margin wider than the detection grid's step takes in a rim of
    # the dark exterior, which models call dendrite
    assert not region.mask[np.hypot(yy - 127.5, xx - 127.5) > 100 + 2].any()


def banded_slice(shape=(161, 163), radius=58.0, band=9.0, centre=None, exterior="constant", rng=0):
    """A 2D slice as real Al-Zn reconstructions show it: melt with dark dendrites (some reaching the
    edge), a thin dark line at the sample's edge, a band of dark and bright grains (mean near the
    melt's) outside it, and the exterior masked to one grey (or dark air)."""
    gen = np.random.default_rng(rng)
    ny, nx = shape
    cy, cx = centre or ((ny - 1) / 2, (nx - 1) / 2)
    yy, xx = np.mgrid[:ny, :nx]
    r = np.hypot(yy - cy, xx - cx)
    angle = np.arctan2(yy - cy, xx - cx)
    image = 1.0 + 0.04 * gen.standard_normal(shape)
    label = np.zeros(shape, np.uint8)
    for a in (0.3, 2.0, 4.1):  # arms from the centre that reach the edge
        arm = (np.abs(np.angle(np.exp(1j * (angle - a)))) < 0.12) & (r < radius)
        label |= arm
    label |= (np.hypot(yy - cy - 15, xx - cx + 10) < 9) & (r < radius)
    image[label > 0] = 0.7 + 0.04 * gen.standard_normal(int(label.sum()))
    line = (r >= radius) & (r < radius + 1.5)
    image[line] = 0.55
    grains = ndimage.gaussian_filter(gen.standard_normal(shape), 1.5)
    zone = (r >= radius + 1.5) & (r < radius + band)
    image[zone] = (1.0 + 0.35 * grains / grains.std())[zone]
    outside = r >= radius + band
    image[outside] = 0.8 if exterior == "constant" else 0.05 + 0.02 * gen.standard_normal(int(outside.sum()))
    return image.astype(np.float32), label, r


@pytest.mark.parametrize(
    "case",
    [
        {},
        {"exterior": "dark"},
        {"band": 14.0, "rng": 2},
        {"centre": (74.0, 88.0), "band": 12.0},
    ],
)
def test_the_sample_s_own_edge_leaves_a_grainy_band_outside(case):
    image, label, r = banded_slice(**case)
    region = detect_sample(image)
    assert region is not None and region.how.startswith("the sample's own edge"), region
    assert_dendrites_inside(region, label)
    band = (r >= 58.0 + 3) & (r < 58.0 + case.get("band", 9.0))
    assert region.mask[band].mean() < 0.02  # the grains stay outside
    assert region.mask[r < 55].all()  # and the whole sample inside


def test_a_sample_that_fills_its_masked_exterior_keeps_the_whole_region():
    image, label, r = banded_slice(band=0.0)
    image[(r >= 58.0) & (r < 59.5)] = 1.0  # no edge line either: melt up to the mask
    region = detect_sample(image)
    assert region is not None and region.how == "constant exterior"
    assert region.mask[r < 58.0].all()
