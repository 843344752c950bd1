"""The trust report (infer/trust.py): each reason at its limit, label_next, the finetune line, the fields."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dendriteseg.infer import segment
from dendriteseg.infer.hysteresis import logit
from dendriteseg.infer.trust import GreyPhases, TrustMeter, finetune_command, reasons_for, trust_report

CALM = {
    "dendrite_share": 0.1,
    "uncertainty_bits": 0.05,
    "edge_band_share": 0.1,
    "interior_share": 0.1,
    "small_blob_share": 0.0,
    "pieces": 5.0,
    "hysteresis_dropped_share": 0.0,
    "unsure_share": 0.0,
    "histogram_share": 0.1,
    "histogram_bimodality": 0.9,
}


@pytest.mark.parametrize(
    "change,word",
    [
        ({"edge_band_share": 0.4, "interior_share": 0.1}, "band along the sample's edge"),
        ({"uncertainty_bits": 0.3}, "uncertainty"),
        ({"small_blob_share": 0.5, "pieces": 40.0}, "specks"),
        ({"hysteresis_dropped_share": 0.5, "unsure_share": 0.01}, "unsure"),
        ({"dendrite_share": 0.4, "histogram_share": 0.1}, "grey levels suggest"),
        ({"ring_share": 0.3}, "whole circles about the rotation axis"),
    ],
)
def test_each_reason_fires_past_its_limit_only(change: dict, word: str) -> None:
    assert reasons_for(CALM) == []
    reasons = reasons_for({**CALM, **change})
    assert len(reasons) == 1 and word in reasons[0]


def test_limits_that_need_two_conditions() -> None:
    assert reasons_for({**CALM, "small_blob_share": 0.5, "pieces": 5.0}) == []  # too few pieces to judge
    assert reasons_for({**CALM, "edge_band_share": 0.2, "interior_share": 0.01}) == []  # band share small
    assert reasons_for({**CALM, "hysteresis_dropped_share": 0.9, "unsure_share": 1e-5}) == []  # a few voxels
    assert reasons_for({**CALM, "dendrite_share": 0.4, "histogram_share": 0.0}) == []  # one phase: no opinion
    old = {k: v for k, v in CALM.items() if k not in ("hysteresis_dropped_share", "unsure_share")}
    assert reasons_for(old) == []  # measures saved before the unsure reason existed


def test_label_next_names_the_most_uncertain_slices_spread_over_the_depth() -> None:
    depth = 12
    meter = TrustMeter(depth, None)
    logits = np.full((depth, 20, 21), 8.0, np.float32)
    for z in (2, 3, 9):
        logits[z] = 0.0  # p = 0.5: as unsure as can be
    labels = (logits > 0).astype(np.uint8)
    meter.add(0, logits, labels)
    chosen = meter.label_next()
    assert len(chosen) == 3 and {2, 9} <= set(chosen) and 3 not in chosen  # 3 is too close to 2
    assert all(abs(a - b) >= depth // 4 for a, b in zip(chosen, chosen[1:], strict=False))
    report = trust_report(
        meter, suggested=GreyPhases(0.0, 0.0), source="scan.tif", output="seg.tif", model="m.safetensors"
    )
    assert report.label_next == chosen
    assert report.finetune_command == finetune_command("scan.tif", "seg.tif", chosen, "m.safetensors")
    assert (
        f"--slices {','.join(map(str, chosen))}" in report.finetune_command
        and "--from m.safetensors" in report.finetune_command
    )


def test_segment_reports_an_unsure_network_as_low(tmp_path) -> None:
    """A network that half sees its dendrite: hysteresis drops most of it, and the report says so."""
    logits = np.full((6, 40, 41), -6.0, np.float32)
    logits[:, 5:25, 5:25] = logit(0.6)

    def model(batch: np.ndarray) -> np.ndarray:
        return np.broadcast_to(logits[: batch.shape[1]], batch.shape).copy()

    common = dict(window=(0.0, 1.0), sample_mask="none", scale=1, tile=(6, 40, 41))
    volume = np.zeros(logits.shape, np.float32)
    result = segment(volume, model, report=tmp_path / "r.json", **common)
    assert result.labels.sum() == 0 and result.trust.trust == "low"
    assert any("unsure" in r for r in result.trust.reasons)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert set(saved) == {"trust", "reasons", "label_next", "finetune_command", "measures", "region"}
    assert 1 <= len(saved["label_next"]) <= 3 and all(0 <= z < 6 for z in saved["label_next"])
    logits[:, 12:16, 12:16] = logit(0.99)  # now it is sure of a core: the piece stays, the report is ok
    sure = segment(volume, model, **common)
    assert sure.labels.sum() == 6 * 400 and not any("unsure" in r for r in sure.trust.reasons)


@pytest.mark.parametrize("pore_called,fires", [(False, False), (True, True)])
def test_calling_more_than_the_dark_phase_counts_only_where_the_dark_phase_is_called(
    pore_called: bool, fires: bool
) -> None:
    """A pore (darker than any solid) is the grey levels' only dark mode; the network calls a quarter
    of the slice elsewhere. Leaving the pore alone, it calls another phase than the histogram's dark
    one: no opinion. Calling the pore too, it calls ten times the dark phase: low."""
    gen = np.random.default_rng(3)
    volume = (0.8 + 0.02 * gen.standard_normal((4, 61, 63))).astype(np.float32)
    yy, xx = np.mgrid[:61, :63]
    pore = np.hypot(yy - 15, xx - 15) < 6
    volume[:, pore] = 0.05
    called = np.zeros((61, 63), bool)
    called[35:55] = True
    if pore_called:
        called |= np.hypot(yy - 15, xx - 15) < 9
    logits = np.where(called, 8.0, -8.0).astype(np.float32)

    def model(batch: np.ndarray) -> np.ndarray:
        return np.broadcast_to(logits, batch.shape).copy()

    result = segment(volume, model, window=(0.0, 1.0), sample_mask="none", scale=1, tile=(4, 61, 63))
    m = result.trust.measures
    assert 0 < m["histogram_share"] < 0.05 and m["dendrite_share"] > 0.25  # the dark mode is the pore
    assert m["histogram_dark_called"] == pytest.approx(1.0 if pore_called else 0.0, abs=0.05)
    assert any("grey levels suggest" in r for r in result.trust.reasons) == fires


@pytest.mark.parametrize("called,ring", [("annulus", True), ("arms", False), ("mostly solid", False)])
def test_dendrite_on_whole_circles_about_the_axis_is_a_ring_artefact(called: str, ring: bool) -> None:
    """An annulus about the slice centre (a broad ring as dark as the solid) is named; arms crossing
    the same radii are not, nor a sample so solid that every circle is full."""
    shape = (3, 91, 95)
    yy, xx = np.mgrid[: shape[1], : shape[2]]
    r = np.hypot(yy - (shape[1] - 1) / 2, xx - (shape[2] - 1) / 2)
    region = r < 44
    blob = np.hypot(yy - 30, xx - 60) < 6
    mask = {
        "annulus": ((r > 25) & (r < 33)) | blob,
        "arms": ((np.abs(yy - 45) < 4) | (np.abs(xx - 47) < 4)) | blob,
        "mostly solid": r < 40,
    }[called] & region
    labels = np.broadcast_to(mask, shape).astype(np.uint8)
    meter = TrustMeter(shape[0], region)
    meter.add(0, np.where(labels > 0, 8.0, -8.0).astype(np.float32), labels)
    m = meter.measures()
    assert (m["ring_share"] > 0.5) == (called != "arms")  # every circle of the solid one is full ...
    assert (m["dendrite_share"] > 0.8) == (called == "mostly solid")  # ... and it is mostly solid
    reasons = reasons_for({**m, "histogram_share": 0.0, "histogram_bimodality": 0.0})
    assert any("whole circles" in text for text in reasons) == ring
