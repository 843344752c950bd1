"""Adaptation to a scan without labels: AdaBN, then guarded self-training; --adapt on the command line."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from dendriteseg.cli import app  # noqa: E402
from dendriteseg.data import UNLABELLED  # noqa: E402
from dendriteseg.errors import InputError  # noqa: E402
from dendriteseg.infer import segment  # noqa: E402
from dendriteseg.models import build_model  # noqa: E402
from dendriteseg.models.files import ModelInfo, save_model  # noqa: E402
from dendriteseg.preprocess import NORMALISATION  # noqa: E402
from dendriteseg.tune import adapt as adapt_module  # noqa: E402
from dendriteseg.tune.adapt import _pseudo_labels, _within, adapt_to_scan  # noqa: E402


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    net = build_model("unet3d", base=4, depth=2, z_levels=2)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(path, net, ModelInfo("unet3d", {"base": 4, "depth": 2, "z_levels": 2}, dict(NORMALISATION)))
    return path


@pytest.fixture(scope="module")
def scan():
    rng = np.random.default_rng(0)
    image = np.full((9, 49, 51), 1.0, np.float32)
    image[:, 10:30, 12:20] = 0.6  # a dark arm
    return (image * 3 + 7 + rng.normal(0, 0.3, image.shape)).astype(np.float32)  # another gain and offset


def test_adaptation_measures_normalisation_on_the_scan_and_records_it(scan, model_file):
    result = adapt_to_scan(scan, model_file, minutes=0.05, sample_mask="none")
    assert result.steps and result.steps[0].startswith("BatchNorm statistics")
    before = build_model("unet3d", base=4, depth=2, z_levels=2)
    norms = [m for m in result.model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    fresh = [m for m in before.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert any(not torch.allclose(a.running_mean, b.running_mean) for a, b in zip(norms, fresh, strict=True))
    assert result.info.provenance["adapted"]["steps"] == result.steps
    labels = segment(scan, result.model, sample_mask="none").labels  # the adapted module segments as it is
    assert labels.shape == scan.shape
    with pytest.raises(InputError, match="minutes"):
        adapt_to_scan(scan, model_file, minutes=0)


def test_a_2d_image_with_no_model_named_adapts_the_2d_default(scan):
    result = adapt_to_scan(scan[4], None, minutes=0.02, sample_mask="none")
    assert result.info.architecture == "unet2d"  # as segment chooses for a 2D image
    assert adapt_to_scan(scan[:4], None, minutes=0.02, sample_mask="none").info.architecture == "unet3d"


def test_pseudo_labels_are_confident_and_slice_consistent():
    p = np.full((1, 3, 4, 4), 0.5, np.float32)
    p[0, :, 0, 0] = 0.99  # dendrite in every slice: kept
    p[0, 1, 1, 1] = 0.99  # one slice only: a speck, left unlabelled
    p[0, :, 2, 2] = 0.01  # sure background
    label = _pseudo_labels(p, None)
    assert (
        (label[0, :, 0, 0] == 1).all() and label[0, 1, 1, 1] == UNLABELLED and (label[0, :, 2, 2] == 0).all()
    )
    assert (label[0, :, 3, 3] == UNLABELLED).all()  # unsure: unlabelled
    mask = np.ones((4, 4), bool)
    mask[0, 0] = False
    assert (_pseudo_labels(p, mask)[0, :, 0, 0] == 0).all()  # outside the sample: background


def test_the_collapse_guard_refuses_a_drifting_share(scan, model_file, monkeypatch):
    assert _within(0.1, 0.06) and not _within(0.01, 0.1) and not _within(0.3, 0.1) and _within(0.0, 0.00005)
    calls = []

    def drifting(net, tiles, mask, device):  # the share doubles and more at every look
        calls.append(1)
        return 0.05 * 3 ** len(calls)

    monkeypatch.setattr(adapt_module, "_called", drifting)
    result = adapt_to_scan(scan, model_file, minutes=0.05, sample_mask="none")
    assert "kept" in result.steps[0]  # the re-measured statistics were refused


def test_segment_adapt_on_the_command_line(scan, model_file, tmp_path):
    np.save(tmp_path / "scan.npy", scan)
    runner = CliRunner()
    out = tmp_path / "labels.tif"
    result = runner.invoke(
        app,
        [
            "segment",
            str(tmp_path / "scan.npy"),
            "-o",
            str(out),
            "--model",
            str(model_file),
            "--adapt",
            "0.05",
        ],
    )
    assert result.exit_code == 0, result.output
    assert out.exists() and "adapted to the scan" in result.output
    bad = runner.invoke(
        app,
        [
            "segment",
            str(tmp_path / "scan.npy"),
            str(tmp_path / "scan.npy"),
            "-o",
            str(tmp_path / "o"),
            "--adapt",
            "1",
        ],
    )
    assert bad.exit_code == 2 and "--adapt: give one input" in bad.output
