import json

from dendriteseg.demo import run_demo


def test_demo_writes_everything(tmp_path):
    results = run_demo(tmp_path / "demo", shape=(6, 64, 64), methods=("otsu", "emmpm"))
    out = tmp_path / "demo"
    for name in ("image.tif", "label.tif", "pred_otsu.tif", "pred_emmpm.tif", "metrics.md", "metrics.json"):
        assert (out / name).exists(), name
    assert len(list((out / "overlays").glob("*.png"))) == 4
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved) == {"otsu", "emmpm"} == set(results)
    assert all(0 <= saved[m]["iou"] <= 1 for m in saved)
    assert "| emmpm |" in (out / "metrics.md").read_text()


def test_demo_runs_the_shipped_network_as_make_demo_does(tmp_path):
    """The branch `make demo` shows first: the default model on a realistic scan, ahead of Otsu."""
    results = run_demo(tmp_path / "demo", shape=(8, 96, 96), methods=("otsu", "unet3d"))
    assert (tmp_path / "demo" / "pred_unet3d.tif").exists()
    assert results["unet3d"]["iou"] > max(0.6, results["otsu"]["iou"] + 0.1)
