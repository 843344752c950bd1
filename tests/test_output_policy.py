"""One output-path policy: no output may be an input or another output; devices are never replaced."""

import os

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from dendriteseg.cli import app
from dendriteseg.errors import InputError
from dendriteseg.infer import segment
from dendriteseg.io.outputs import check_distinct, save_figure


@pytest.fixture
def files(tmp_path):
    labels = np.zeros((6, 24, 26), np.uint8)
    labels[2:5, 5:15, 6:16] = 1
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    image = (1.0 - 0.4 * labels + 0.02 * np.random.default_rng(0).standard_normal(labels.shape)).astype(
        np.float32
    )
    tifffile.imwrite(tmp_path / "scan.tif", image)
    os.symlink(tmp_path / "scan.tif", tmp_path / "link.tif")
    return tmp_path


def _unchanged(path, before):
    return path.read_bytes() == before


@pytest.mark.parametrize(
    "args",
    [
        ["segment", "{d}/scan.tif", "-o", "{d}/scan.tif"],
        ["segment", "{d}/scan.tif", "-o", "{d}/link.tif"],  # the same file through a symlink
        ["segment", "{d}/scan.tif", "-o", "{d}/out.tif", "--probabilities", "{d}/scan.tif"],
        ["segment", "{d}/scan.tif", "-o", "{d}/out.tif", "--probabilities", "{d}/out.tif"],
        ["segment", "{d}/scan.tif", "-o", "{d}/out.tif", "--report", "{d}/scan.tif"],
        ["mesh", "{d}/labels.tif", "-o", "{d}/m.stl", "--png", "{d}/labels.tif"],
        ["mesh", "{d}/labels.tif", "-o", "{d}/m.stl", "--png", "{d}/m.stl"],
        ["analyze", "{d}/labels.tif", "--json", "{d}/labels.tif", "--no-arms"],
        ["analyze", "{d}/labels.tif", "--csv", "{d}/labels.tif", "--no-arms"],
        ["analyze", "{d}/labels.tif", "{d}/scan.tif", "--series", "--plot", "{d}/scan.tif", "--no-arms"],
        ["evaluate", "{d}/labels.tif", "{d}/labels.tif", "--json", "{d}/labels.tif"],
        ["baseline", "otsu", "{d}/scan.tif", "-o", "{d}/scan.tif"],
        ["convert", "{d}/scan.tif", "{d}/link.tif"],
        ["finetune", "{d}/scan.tif", "--labels", "{d}/labels.tif", "-o", "{d}/labels.tif"],
    ],
)
def test_an_output_that_is_an_input_or_another_output_is_refused(files, args):
    before = {p: p.read_bytes() for p in (files / "scan.tif", files / "labels.tif")}
    result = CliRunner().invoke(app, [a.format(d=files) for a in args])
    assert result.exit_code == 2, result.output
    assert ("would overwrite the input" in result.output) or ("name the same file" in result.output)
    assert "Traceback" not in result.output
    assert all(_unchanged(p, b) for p, b in before.items())
    assert not (files / "out.tif").exists()


def test_segment_from_python_keeps_its_input(files):
    with pytest.raises(InputError, match="would overwrite the input"):
        segment(str(files / "scan.tif"), lambda b: b, output=files / "scan.tif")
    with pytest.raises(InputError, match="name the same file"):
        check_distinct([], {"-o": files / "a.h5:/x", "--probabilities": files / "a.h5:/y"})
    check_distinct([files / "scan.tif"], {"--json": "/dev/null", "--csv": "/dev/null"})  # written through


def test_a_png_never_replaces_a_device(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fifo = tmp_path / "pipe"  # a pipe stands in for a device (a test must not risk /dev/null)
    os.mkfifo(fifo)
    fig = plt.figure()
    with pytest.raises(InputError, match="device"):
        save_figure(fig, fifo)
    assert fifo.exists() and not fifo.is_file()
