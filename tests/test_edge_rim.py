"""A thin rim of dendrite along the sample region's edge is dropped; dendrites cut by the edge stay."""

from __future__ import annotations

import numpy as np
import pytest

from dendriteseg.infer import segment
from dendriteseg.infer.edge_rim import LATERAL, RIM_DEPTH, EdgeRim, drop_edge_rim, edge_depth, rim_width

SIDE, RADIUS = 101, 40


def _disc():
    yy, xx = np.mgrid[:SIDE, :SIDE]
    r = np.hypot(yy - SIDE // 2, xx - SIDE // 2)
    return r <= RADIUS, r, np.arctan2(yy - SIDE // 2, xx - SIDE // 2)


def _scene(rim_depth: float = 3.0):
    """A disc region; a rim ``rim_depth`` px deep along its edge, a radial bar 7 px wide from the
    centre across the edge (on +x), a chord 7 px wide meeting the edge at 45 degrees (at -135 degrees,
    0.707 of the radius from the centre), and a blob inside."""
    region, r, angle = _disc()
    yy, xx = np.mgrid[:SIDE, :SIDE]
    rim = region & (r > RADIUS - rim_depth)
    bar = region & (np.abs(yy - SIDE // 2) <= 3) & (xx > SIDE // 2)
    oblique = region & (np.abs(yy - (SIDE // 2 - 28)) <= 3) & (xx < SIDE // 2)
    yc, xc = SIDE // 2 - 12, SIDE // 2 - 12
    blob = (yy - yc) ** 2 + (xx - xc) ** 2 <= 36
    return region, angle, rim, bar, oblique, blob


def test_the_rim_goes_and_what_crosses_the_edge_stays():
    region, angle, rim, bar, oblique, blob = _scene()
    labels = (rim | bar | oblique | blob).astype(np.uint8)
    out = drop_edge_rim(labels, edge_depth(region), rim_width(1))
    assert out.dtype == np.uint8
    assert out[bar].all() and out[blob].all()
    assert out[oblique].mean() > 0.95  # meets the edge at about 45 degrees
    # of the rim, only what lies next to where a dendrite meets the edge stays: within its half width
    # and LATERAL px per px of depth the rule looks (plus the oblique chord's slant) along the edge
    reach = (3.5 + LATERAL * RIM_DEPTH + 4) / RADIUS
    near = (np.abs(angle) < reach) | (np.abs(angle + 3 * np.pi / 4) < reach)
    assert out[rim].sum() < 0.25 * rim.sum()
    assert out[rim & ~near & ~bar & ~oblique].sum() == 0
    assert out[rim & ~near].sum() == out[(bar | oblique) & rim & ~near].sum()
    assert drop_edge_rim(labels * 0, edge_depth(region), 6).sum() == 0


def test_the_rule_looks_as_deep_as_the_binning_makes_a_rim():
    region, *_ = _disc()
    _, _, rim, *_ = _scene(rim_depth=10.0)
    labels = rim.astype(np.uint8)
    at_1 = drop_edge_rim(labels, edge_depth(region), rim_width(1))
    at_2 = drop_edge_rim(labels, edge_depth(region), rim_width(2))
    assert rim_width(2) == 2 * RIM_DEPTH and LATERAL >= 1
    assert (at_1 == labels).all()  # deeper than the rule looks at scale 1: a dendrite, not a rim
    assert at_2.sum() == 0  # binned 2 x, a rim may be twice as deep: all of it goes


def test_no_region_no_change_and_slices_of_a_3d_region():
    region, _, rim, bar, *_ = _scene()
    labels = np.stack([rim | bar, rim]).astype(np.uint8)
    assert (EdgeRim(None, 1)(0, labels) == labels).all()
    per_slice = np.stack([region, np.ones_like(region)])  # the second slice's region has no edge inside
    out = EdgeRim(per_slice, 1)(0, labels)
    assert out[0][bar].all() and out[0][rim & ~bar].sum() < rim.sum() / 5
    assert (out[1] == labels[1]).all()


def test_segment_drops_a_rim_along_a_given_mask_and_keeps_it_without_one(tmp_path):
    import tifffile

    region, _, rim, bar, *_ = _scene()
    image = np.where(rim | bar, 0.2, 0.8).astype(np.float32)[None].repeat(3, axis=0)
    mask = tmp_path / "mask.tif"
    tifffile.imwrite(mask, region.astype(np.uint8))

    def network(batch):  # sure of dendrite where the image is dark
        return np.where(batch < 0.5, 6.0, -6.0).astype(np.float32)

    common = {"window": (0.0, 1.0), "scale": 1, "probabilities": True}
    masked = segment(image, network, sample_mask=str(mask), **common)
    assert masked.labels[:, bar].all()
    assert masked.labels[:, rim & ~bar].mean() < 0.2
    assert (masked.probabilities[:, rim] > 0.5).all()  # the network's probabilities stay as they were
    assert masked.trust.measures["hysteresis_dropped_share"] == pytest.approx(0.0)  # not counted as unsure
    plain = segment(image, network, sample_mask="none", **common)
    assert plain.labels[:, rim].all()


def test_the_rule_can_be_turned_off_in_python_and_on_the_command_line(tmp_path, monkeypatch):
    import tifffile
    from typer.testing import CliRunner

    from dendriteseg.cli import app
    from dendriteseg.errors import InputError
    from dendriteseg.infer import run
    from dendriteseg.infer.settings import InferenceSettings

    region, _, rim, bar, *_ = _scene()
    image = np.where(rim | bar, 0.2, 0.8).astype(np.float32)
    kept = segment(
        image,
        lambda b: np.where(b < 0.5, 6.0, -6.0),
        window=(0.0, 1.0),
        scale=1,
        sample_mask=region,
        edge_rim=False,
    )
    assert kept.labels[rim].all()
    with pytest.raises(InputError, match="edge_rim"):
        InferenceSettings(edge_rim="no")
    seen = {}

    def capture(inputs, output, model, *, settings, **_):
        seen["edge_rim"] = settings.edge_rim
        raise InputError("stop here")

    monkeypatch.setattr(run, "segment_inputs", capture)
    tifffile.imwrite(tmp_path / "a.tif", image)
    for flag, value in (("--keep-edge-rim", False), ("--drop-edge-rim", True)):
        result = CliRunner().invoke(
            app, ["segment", str(tmp_path / "a.tif"), "-o", str(tmp_path / "b.tif"), flag]
        )
        assert result.exit_code != 0 and seen["edge_rim"] is value


def test_dask_blocks_drop_the_rim_as_one_run_does():
    from dendriteseg.infer.distributed import block_labels
    from dendriteseg.infer.tiling import Tiling
    from dendriteseg.io import ArrayVolume

    region, _, rim, bar, *_ = _scene()
    image = np.where(rim | bar, 0.2, 0.8).astype(np.float32)[None].repeat(5, axis=0)

    def network(batch):
        return np.where(batch < 0.5, 6.0, -6.0).astype(np.float32)

    whole = segment(image, network, window=(0.0, 1.0), scale=1, sample_mask=region).labels
    tiling = Tiling.build(image.shape, (1, SIDE, SIDE), (0.0, 0.25, 0.25))
    out = np.zeros(image.shape, np.uint8)
    for block in ((0, 2), (2, 5)):
        for z0, z1, part in block_labels(ArrayVolume(image), network, tiling, (0.0, 1.0), block, region, 0.9):
            out[z0:z1] = part
    np.testing.assert_array_equal(out, whole)
    assert out[:, bar].all() and out[:, rim & ~bar].mean() < 0.2
