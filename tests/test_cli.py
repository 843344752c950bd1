"""The command line: outputs, and one-line errors with exit code 2."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dendriteseg.cli import app
from dendriteseg.io import read_volume, write_volume

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def pair(tmp_path, phantom):
    image, label = phantom
    pred = np.roll(label, 1, axis=2)
    write_volume(tmp_path / "image.tif", image)
    write_volume(tmp_path / "gt.tif", label)
    write_volume(tmp_path / "pred.zarr", pred)
    return tmp_path


def test_evaluate_table_json_and_csv(pair):
    code, out, _ = run(
        "evaluate",
        pair / "pred.zarr",
        pair / "gt.tif",
        "--json",
        pair / "m.json",
        "--per-slice",
        pair / "s.csv",
    )
    assert code == 0
    assert "IoU %" in out and "BF1 %" in out and "BDE px" in out
    data = json.loads((pair / "m.json").read_text())
    for key in ("accuracy", "iou", "bf1", "bde", "per_slice", "counts"):
        assert key in data
    assert 0 < data["iou"] < 1 and data["bde"] > 0
    assert len(data["per_slice"]) == 9
    rows = (pair / "s.csv").read_text().splitlines()
    assert rows[0].startswith("z,accuracy,iou,bf1,bde") and len(rows) == 10


def test_evaluate_3d_mode(pair):
    code, out, _ = run(
        "evaluate",
        pair / "pred.zarr",
        pair / "gt.tif",
        "--mode",
        "3d",
        "--spacing",
        2,
        1,
        1,
        "--json",
        pair / "m.json",
    )
    assert code == 0
    assert json.loads((pair / "m.json").read_text())["mode"] == "3d"


def _assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in err


def test_evaluate_shape_mismatch(pair):
    write_volume(pair / "small.npy", np.zeros((9, 10, 11), np.uint8))
    code, _, err = run("evaluate", pair / "small.npy", pair / "gt.tif")
    _assert_one_line_error(code, err, "small.npy", "shape")


def test_evaluate_non_binary(pair):
    code, _, err = run("evaluate", pair / "image.tif", pair / "gt.tif")
    _assert_one_line_error(code, err, "image.tif", "binary")


def test_evaluate_nan(pair, phantom):
    bad = phantom[1].astype(np.float32)
    bad[3, 4, 5] = np.nan
    write_volume(pair / "nan.npy", bad)
    code, _, err = run("evaluate", pair / "nan.npy", pair / "gt.tif")
    _assert_one_line_error(code, err, "nan.npy", "NaN")


def test_evaluate_missing_file(pair):
    code, _, err = run("evaluate", pair / "nothere.tif", pair / "gt.tif")
    _assert_one_line_error(code, err, "nothere.tif", "no such file")


def test_evaluate_unknown_suffix_and_bad_dataset(pair):
    (pair / "notes.txt").write_text("x")
    code, _, err = run("evaluate", pair / "notes.txt", pair / "gt.tif")
    _assert_one_line_error(code, err, "notes.txt", "unsupported format")
    write_volume(pair / "g.h5:/labels", read_volume(pair / "gt.tif"))
    code, _, err = run("evaluate", pair / "g.h5:/wrong", pair / "gt.tif")
    _assert_one_line_error(code, err, "g.h5", "/wrong")


def test_evaluate_accepts_0_255_masks(pair, phantom):
    write_volume(pair / "gt255.tif", phantom[1] * 255)
    code, out, _ = run("evaluate", pair / "gt.tif", pair / "gt255.tif")
    assert code == 0 and "100.00" in out


def test_overlay_with_and_without_gt(pair):
    code, out, _ = run(
        "overlay",
        pair / "image.tif",
        pair / "pred.zarr",
        pair / "gt.tif",
        "-o",
        pair / "ov",
        "--z",
        "2,6",
        "--y",
        "40",
    )
    assert code == 0
    assert sorted(p.name for p in (pair / "ov").iterdir()) == ["xz_y0040.png", "z0002.png", "z0006.png"]
    code, _, _ = run("overlay", pair / "image.tif", pair / "pred.zarr", "-o", pair / "ov2")
    assert code == 0 and len(list((pair / "ov2").glob("*.png"))) == 4
    code, _, err = run("overlay", pair / "image.tif", pair / "pred.zarr", "-o", pair / "ov3", "--z", 99)
    _assert_one_line_error(code, err, "--z 99")


def test_baseline_cli_and_errors(pair):
    code, out, _ = run("baseline", "otsu", pair / "image.tif", "-o", pair / "otsu.h5")
    assert code == 0
    labels = read_volume(pair / "otsu.h5")
    assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1}
    code, _, err = run("baseline", "magic", pair / "image.tif", "-o", pair / "m.tif")
    _assert_one_line_error(code, err, "magic", "otsu")
    code, _, err = run("baseline", "forest", pair / "image.tif", "-o", pair / "f.tif")
    _assert_one_line_error(code, err, "--train-image")
    code, _, err = run("baseline", "emmpm", pair / "image.tif", "-o", pair / "e.tif", "--option", "wobble=3")
    _assert_one_line_error(code, err, "wobble")
    assert not (pair / "m.tif").exists() and not (pair / "f.tif").exists()


def test_info_and_convert(pair):
    code, out, _ = run("info", pair / "gt.tif")
    assert code == 0 and json.loads(out)["shape"] == [9, 96, 97]
    code, _, _ = run("convert", pair / "gt.tif", pair / "gt.h5:/exchange/data")
    assert code == 0
    np.testing.assert_array_equal(read_volume(pair / "gt.h5"), read_volume(pair / "gt.tif"))
