"""The napari plugin in a real viewer (no mocks): reader, writer, sample data, the three widgets.

These tests draw: run them under a display (``xvfb-run``, as ``make test`` does). Without one
they are skipped with one line saying so.
"""

import os
import time

import numpy as np
import pytest

napari = pytest.importorskip("napari", reason="the [napari] extra is not installed")
pytestmark = pytest.mark.napari

if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    pytest.skip("no display: run the napari tests under xvfb-run (make test does)", allow_module_level=True)

from dendriteseg.io import read_volume, write_volume  # noqa: E402
from dendriteseg.models import build_model  # noqa: E402
from dendriteseg.models.files import ModelInfo, save_model  # noqa: E402
from dendriteseg.napari._reader import get_reader  # noqa: E402
from dendriteseg.napari._sample import make_sample  # noqa: E402
from dendriteseg.napari._widgets import CompareWidget, FinetuneWidget, SegmentWidget  # noqa: E402
from dendriteseg.napari._writer import write_labels  # noqa: E402
from dendriteseg.preprocess import NORMALISATION  # noqa: E402


@pytest.fixture(scope="module")
def scan():
    rng = np.random.default_rng(0)
    label = np.zeros((9, 64, 66), np.uint8)
    label[:, 16:40, 20:30] = 1
    label[:, 44:52, 10:56] = 1
    image = (1.0 - 0.45 * label + 0.03 * rng.standard_normal(label.shape)).astype(np.float32)
    return image, label


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    net = build_model("unet3d", base=4, depth=2, z_levels=2)
    path = tmp_path_factory.mktemp("napari_model") / "tiny.safetensors"
    save_model(
        path,
        net,
        ModelInfo(
            "unet3d",
            {"base": 4, "depth": 2, "z_levels": 2},
            dict(NORMALISATION),
            {"config": {"patch": [4, 32, 32], "batch": 2}},
        ),
    )
    return path


def wait_for(worker, qtbot, timeout=120_000):
    with qtbot.waitSignal(worker.finished, timeout=timeout):
        pass


@pytest.mark.parametrize("suffix", [".tif", ".zarr", ".h5", ".npy"])
def test_reader_and_writer_round_trip_every_format(tmp_path, scan, suffix):
    image, label = scan
    path = tmp_path / f"labels{suffix}"
    assert write_labels(str(path), label, {"scale": (2.0, 0.5, 0.5)}) == [str(path)]
    np.testing.assert_array_equal(read_volume(path), label)
    reader = get_reader(str(path))
    assert reader is not None
    ((data, attributes, kind),) = reader(str(path))
    assert kind == "labels" and np.array_equal(np.asarray(data), label)
    write_volume(tmp_path / f"image{suffix}", image)
    ((data, _, kind),) = get_reader(str(tmp_path / f"image{suffix}"))(str(tmp_path / f"image{suffix}"))
    assert kind == "image" and np.allclose(np.asarray(data), image)
    assert get_reader(str(tmp_path / "notes.txt")) is None


def test_large_volumes_open_lazily(tmp_path, monkeypatch):
    import dask.array as da

    from dendriteseg.napari import _reader

    monkeypatch.setattr(_reader, "LAZY_BYTES", 1000)
    volume = np.arange(20 * 30 * 31, dtype=np.float32).reshape(20, 30, 31)
    write_volume(tmp_path / "big.zarr", volume)
    ((data, _, kind),) = get_reader(str(tmp_path / "big.zarr"))(str(tmp_path / "big.zarr"))
    assert isinstance(data, da.Array) and data.chunks[0][0] == _reader.SLAB
    np.testing.assert_array_equal(np.asarray(data[7]), volume[7])


def test_sample_data_is_a_scan_and_its_exact_label():
    (image, _, kind_image), (label, _, kind_label) = make_sample()
    assert kind_image == "image" and kind_label == "labels" and image.shape == label.shape
    assert set(np.unique(label)) <= {0, 1} and label.any()


def test_segment_paint_finetune_and_segment_again(make_napari_viewer, qtbot, scan, model_file, tmp_path):
    image, label = scan
    viewer = make_napari_viewer()
    viewer.add_image(image, name="scan")
    segment = SegmentWidget(viewer)
    segment.model.setCurrentText(str(model_file))
    segment.scale.setCurrentText("1")
    segment.hysteresis.setValue(0.5)  # every p > 0.5: a tiny network trained for seconds is sure of nothing
    wait_for(segment.run(), qtbot)
    assert "scan labels" in viewer.layers and viewer.layers["scan labels"].data.shape == image.shape
    assert "trust" in segment.verdict.text()
    tune = FinetuneWidget(viewer, segment)
    tune.image.setCurrentText("scan")
    scribbles = tune.new_scribbles()
    painted = np.zeros(image.shape, np.uint8)
    painted[2, ::4, ::4] = label[2, ::4, ::4] + 1  # background 1, dendrite 2, on two slices
    painted[6, ::4, ::4] = label[6, ::4, ::4] + 1
    scribbles.data = painted
    tune.start.setCurrentText(str(model_file))
    tune.minutes.setValue(0.25)
    tune.out.setText(str(tmp_path / "tuned.safetensors"))
    wait_for(tune.run(), qtbot, timeout=300_000)
    assert tune.result is not None, tune.result_text.text()
    assert (tmp_path / "tuned.safetensors").exists() and "validation IoU" in tune.result_text.text()
    old = viewer.layers["scan labels"].data.copy()
    wait_for(tune.segment_again(), qtbot)
    new = viewer.layers["scan labels"].data
    assert new.shape == image.shape
    dendrite, background = painted == 2, painted == 1

    def agreement(labels):
        return (labels[dendrite].sum() + (1 - labels[background]).sum()) / (dendrite.sum() + background.sum())

    # the painted pixels carry their class (a tiny network after seconds of training: most of them)
    assert new[dendrite].mean() > 0.7 and new[background].mean() < 0.3
    assert agreement(new) > agreement(old)
    compare = CompareWidget(viewer)
    viewer.add_labels(old, name="before")
    compare.before.setCurrentText("before")
    compare.after.setCurrentText("scan labels")
    compare.reference.setCurrentText("scribbles")
    compare.scribbles.setChecked(True)
    scores = compare.compare()
    assert set(scores) == {"before", "after"} and scores["after"]["iou"] > scores["before"]["iou"]
    assert any(name.startswith("difference") for name in [layer.name for layer in viewer.layers])


def test_cancel_stops_a_long_segmentation_and_leaves_no_layer(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(1).random((64, 96, 96)).astype(np.float32), name="big")
    segment = SegmentWidget(viewer)

    def slow(batch):  # a slow network: 0.3 s a tile row
        time.sleep(0.3)
        return batch - 0.5

    worker = _run_with_callable(segment, slow)
    qtbot.waitUntil(lambda: segment.progress.value() > 0, timeout=20_000)
    segment.cancel()
    cancelled_at = time.monotonic()
    wait_for(worker, qtbot, timeout=10_000)
    assert time.monotonic() - cancelled_at < 2.0
    assert "cancelled" in segment.verdict.text() and "big labels" not in viewer.layers


def _run_with_callable(widget, predictor):
    """Run the Segment widget with a Python callable as the model (what the widget's run does)."""
    from dendriteseg.infer import segment
    from dendriteseg.napari._widgets import Job, start_job

    layer = widget.image.layer()
    data = layer.data
    widget.job = Job(
        lambda report: segment(
            data,
            predictor,
            sample_mask="none",
            scale=1,
            window=(0.0, 1.0),
            progress=lambda d, t: report(d / t),
        )
    )
    widget._busy(True)
    return start_job(
        widget.job, widget.progress, lambda r: widget._done(layer.name, "slow", r), widget._failed
    )


def test_widgets_work_against_a_viewer_model_without_a_canvas(qtbot, scan, model_file):
    from napari.components import ViewerModel

    image, label = scan
    model = ViewerModel()
    model.add_image(image, name="scan")
    model.add_labels(label, name="truth")
    segment = SegmentWidget(model)
    qtbot.addWidget(segment)
    segment.model.setCurrentText(str(model_file))
    segment.scale.setCurrentText("1")
    wait_for(segment.run(), qtbot)
    assert model.layers["scan labels"].data.shape == image.shape
    compare = CompareWidget(model)
    qtbot.addWidget(compare)
    compare.before.setCurrentText("truth")
    compare.after.setCurrentText("scan labels")
    compare.reference.setCurrentText("truth")
    scores = compare.compare()
    assert scores["before"]["iou"] == pytest.approx(1.0)


def test_the_view_command_docks_the_widgets(make_napari_viewer, tmp_path, scan):
    from dendriteseg.napari.viewer import open_viewer

    image, label = scan
    write_volume(tmp_path / "scan.tif", image)
    write_volume(tmp_path / "labels.tif", label)
    viewer = open_viewer(
        str(tmp_path / "scan.tif"), [str(tmp_path / "labels.tif")], viewer=make_napari_viewer()
    )
    assert [layer.name for layer in viewer.layers] == ["scan.tif", "labels.tif"]
    docked = set(viewer.window.dock_widgets)
    assert {"Segment", "Correct and fine-tune", "Compare"} <= docked


def test_the_manifest_validates():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("dendriteseg")
    assert manifest.name == "dendriteseg"
    assert {w.display_name for w in manifest.contributions.widgets} == {
        "Segment",
        "Correct and fine-tune",
        "Compare",
    }
