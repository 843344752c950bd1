"""Optional parts behind extras: a missing one is one line naming the extra, exit 2."""

import sys

import pytest
from typer.testing import CliRunner

from dendriteseg.cli import app
from dendriteseg.errors import MissingExtra, require


def test_require_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "numba", None)  # as if not installed
    with pytest.raises(
        MissingExtra,
        match=r"the phase-field model needs the 'synth' extra: pip install 'dendriteseg\[synth\]'",
    ):
        require("numba", "synth", "the phase-field model")
    assert require("numpy", "core", "arrays").__name__ == "numpy"


def test_commands_whose_extra_is_missing_exit_2_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.setitem(sys.modules, "distributed", None)
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["synth", "volume", str(tmp_path / "pf"), "--structure", "phasefield", "--shape", "4", "16", "16"],
    )
    assert result.exit_code == 2, result.output
    assert "pip install 'dendriteseg[synth]'" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    import numpy as np

    np.save(tmp_path / "v.npy", np.zeros((4, 40, 40), np.float32))
    result = runner.invoke(
        app, ["segment", str(tmp_path / "v.npy"), "-o", str(tmp_path / "o.zarr"), "--dask", "local:1"]
    )
    assert result.exit_code == 2 and "dendriteseg[dask]" in result.output
