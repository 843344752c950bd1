"""Hostile inputs, round 2: what cannot teach a fine-tune, numbers out of range, thin or full solids."""

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from dendriteseg.cli import app
from dendriteseg.errors import InputError
from dendriteseg.morphology import surface_mesh
from dendriteseg.tune import finetune as finetune_module
from dendriteseg.tune.labels import user_scan

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    label = np.zeros((5, 33, 35), np.uint8)
    label[:, 8:20, 10:22] = 1
    image = (1.0 - 0.4 * label + 0.03 * rng.standard_normal(label.shape)).astype(np.float32)
    tifffile.imwrite(folder / "img.tif", image)
    tifffile.imwrite(folder / "lab.tif", label)
    tifffile.imwrite(folder / "zeros.tif", np.zeros_like(label))
    tifffile.imwrite(folder / "ones.tif", np.ones_like(label))
    tifffile.imwrite(folder / "scrib01.tif", label)  # a 0/1 label file given as scribbles
    return folder


def _one_line_exit_2(result, expected):
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize(
    "extra,expected",
    [
        (["--labels", "{d}/zeros.tif"], "no dendrite among the labelled voxels"),
        (["--labels", "{d}/ones.tif"], "no background among the labelled voxels"),
        (["--scribbles", "{d}/scrib01.tif"], "scribbles with no dendrite"),
        (["--labels", "{d}/lab.tif", "--minutes", "0"], "minutes"),
        (["--labels", "{d}/lab.tif", "--minutes", "-1"], "minutes"),
        (["--labels", "{d}/lab.tif", "--minutes", "nan"], "minutes"),
        (["--labels", "{d}/lab.tif", "--minutes", "inf"], "minutes"),
        (["--labels", "{d}/lab.tif", "--epochs", "0"], "epochs: a budget of at least 1 epoch"),
        (["--labels", "{d}/lab.tif", "--epochs", "3", "--minutes", "1"], "not both"),
        (["--labels", "{d}/lab.tif", "--trials", "0"], "trials"),
        (["--labels", "{d}/lab.tif", "--trials", "-2"], "trials"),
    ],
)
def test_finetune_refuses_what_cannot_teach_it_before_work(files, tmp_path, extra, expected):
    out = tmp_path / "m.safetensors"
    args = ["finetune", str(files / "img.tif"), *[a.format(d=files) for a in extra], "-o", str(out)]
    _one_line_exit_2(runner.invoke(app, args), expected)
    assert not out.exists()


def test_nan_voxels_are_read_as_segment_reads_them_and_counted(files, caplog):
    image = tifffile.imread(files / "img.tif")
    image[2, 5, 5] = np.nan
    image[3, 6, 6] = np.inf
    with caplog.at_level(logging.WARNING):
        scan = user_scan(image, tifffile.imread(files / "lab.tif"))
    assert np.isfinite(scan.image).all()
    assert "2 non-finite voxels" in caplog.text


def test_an_unwritable_output_folder_is_refused_before_training(files, tmp_path, monkeypatch):
    monkeypatch.setattr(finetune_module.os, "access", lambda path, mode: False)
    with pytest.raises(InputError, match="not writable"):
        finetune_module._check_output(tmp_path / "m.safetensors")


def test_a_trial_only_beats_the_start_on_iou_itself():
    beats = finetune_module._beats
    assert not beats({"iou": 0.0, "accuracy": 0.99}, {"iou": 0.0, "accuracy": 0.5})  # the tie-breaker alone
    assert not beats({"iou": math.nan}, {"iou": 0.2})
    assert beats({"iou": 0.31}, {"iou": 0.3}) and beats({"iou": 0.1}, {"iou": math.nan})


def test_hpo_refuses_numbers_out_of_range_and_leaves_no_run_folder(tmp_path):
    run = tmp_path / "run"
    for args, expected in ((["--minutes", "0"], "minutes"), (["--trials", "-2"], "trials")):
        result = runner.invoke(
            app, ["hpo", "pretrain", "--run", str(run), "--set", f"data={tmp_path}/m.json", *args]
        )
        _one_line_exit_2(result, expected)
        assert not run.exists()


@pytest.mark.parametrize(
    "args,expected",
    [
        (["mesh", "{d}/lab.tif", "-o", "{t}/m.stl", "--voxel-size", "0"], "--voxel-size"),
        (["mesh", "{d}/lab.tif", "-o", "{t}/m.stl", "--smooth", "-5"], "smooth"),
        (["mesh", "{d}/lab.tif", "-o", "{t}/m.stl", "--smooth", "1000"], "smooth"),
        (["mesh", "{d}/lab.tif", "-o", "{t}/m.stl", "--largest", "0"], "largest"),
        (["analyze", "{d}/lab.tif", "{d}/lab.tif", "--series", "--jump", "-1", "--no-arms"], "jump"),
        (["analyze", "{d}/lab.tif", "{d}/lab.tif", "--series", "--jump", "nan", "--no-arms"], "jump"),
    ],
)
def test_morphology_numbers_out_of_range(files, tmp_path, args, expected):
    result = runner.invoke(app, [a.format(d=files, t=tmp_path) for a in args])
    _one_line_exit_2(result, expected)
    assert not (tmp_path / "m.stl").exists()


@pytest.mark.parametrize(
    "solid",
    [
        np.pad(np.ones((1, 1, 1), np.uint8), 3),  # one voxel
        np.pad(np.ones((2, 2, 2), np.uint8), 3),
        np.pad(np.ones((1, 1, 7), np.uint8), 3),  # a line one voxel thick
        np.pad(np.ones((1, 7, 7), np.uint8), 3),  # a sheet
    ],
)
def test_thin_solids_are_meshed_closed(solid):
    surface = surface_mesh(solid)
    assert surface.mesh.is_watertight and surface.mesh.volume > 0


def test_an_all_solid_volume_has_no_interface_and_smoothing_keeps_the_volume():
    full = surface_mesh(np.ones((8, 9, 10), np.uint8))
    assert full.interface_area == 0.0
    from dendriteseg.synth import procedural_dendrites

    label, _ = procedural_dendrites((24, 32, 32), n_seeds=2, rng=1)
    plain = surface_mesh(label).mesh.volume
    assert surface_mesh(label, smooth=100).mesh.volume == pytest.approx(plain, rel=0.01)


def test_work_folders_of_killed_jobs_are_removed_by_the_next(tmp_path, monkeypatch):
    import os
    import tempfile

    from dendriteseg.io.outputs import work_folder

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = tmp_path / "dendriteseg-finetune-999999999-x1"  # a process that no longer runs
    alive = tmp_path / f"dendriteseg-finetune-{os.getppid()}-x2"  # one that still does
    other = tmp_path / "dendriteseg-adapt-999999999-x3"  # another kind of job: left to its own
    for folder in (dead, alive, other):
        folder.mkdir()
        (folder / "trial.safetensors").write_bytes(b"weights")
    with work_folder("finetune") as work:
        assert Path(work).name.startswith(f"dendriteseg-finetune-{os.getpid()}-")
        assert not dead.exists() and alive.exists() and other.exists()
    assert not Path(work).exists()


def test_ctrl_c_in_a_finetune_exits_130_in_one_line_and_leaves_nothing(files, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "m.safetensors"
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # its work folder lands here, to be checked
    cmd = [sys.executable, "-m", "dendriteseg", "finetune", str(files / "img.tif"), "--labels"]
    cmd += [str(files / "lab.tif"), "--budget", "tiny", "--epochs", "1000", "-o", str(out)]
    # a pytest-xdist worker ignores SIGINT, and a child would inherit that: a user's Ctrl-C is not ignored
    restore = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=restore
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("dendriteseg-finetune-*/trial_*")) and time.monotonic() < deadline:
        time.sleep(0.2)  # until the first trial is training
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["error: interrupted; no partial output was left"], err
    assert not out.exists() and not list(tmp_path.glob("dendriteseg-finetune-*"))
