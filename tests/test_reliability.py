"""Hostile input and hostile conditions: nothing lost, no native crash, no silent acceptance.

Each test reproduces one case of the reliability issue: it fails on the code
before the fix.
"""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from dendriteseg.cli import app
from dendriteseg.errors import InputError, OutputError
from dendriteseg.io import VolumeWriter, read_volume, write_volume

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def image(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "image.tif"
    write_volume(path, (rng.random((5, 24, 26)) * 1000).astype(np.float32))
    return path


# -- 1. never delete what we did not write ----------------------------------------------------------


@pytest.mark.parametrize("command", ["convert", "baseline"])
def test_a_folder_with_other_files_is_never_replaced(tmp_path, image, command):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "keep.txt").write_text("precious")
    args = ["convert", image, keep] if command == "convert" else ["baseline", "otsu", image, "-o", keep]
    code, _, err = run(*args)
    assert code == 2
    assert "keep: is a folder that holds files dendriteseg did not write (keep.txt)" in one_error_line(err)
    assert (keep / "keep.txt").read_text() == "precious" and sorted(os.listdir(keep)) == ["keep.txt"]


def test_a_folder_of_our_own_slices_is_replaced(tmp_path, image):
    out = tmp_path / "slices"
    assert run("convert", image, out)[0] == 0
    assert run("convert", image, out)[0] == 0  # the second run replaces the first's slices
    assert read_volume(out).shape == (5, 24, 26)


def test_a_file_where_a_folder_should_go_and_back(tmp_path, image):
    (tmp_path / "x.tif").mkdir()
    code, _, err = run("convert", image, tmp_path / "x.tif")
    assert code == 2 and "x.tif: is a folder; name a file to write" in one_error_line(err)


# -- 2. devices and symlinks ------------------------------------------------------------------------


def test_devices_are_written_through_never_replaced(tmp_path, image):
    labels = tmp_path / "labels.tif"
    write_volume(labels, np.eye(24, 26, dtype=np.uint8)[None].repeat(5, 0))
    code, _, err = run("evaluate", labels, labels, "--json", "/dev/full")
    assert code == 2 and one_error_line(err) == "error: /dev/full: no space left on device"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
    code, _, _ = run("evaluate", labels, labels, "--json", "/dev/null")
    assert code == 0 and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    code, _, err = run("convert", image, "/dev/full")
    assert code == 2 and "/dev/full" in one_error_line(err)
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_a_symlink_output_is_followed(tmp_path, image):
    real = tmp_path / "real.tif"
    write_volume(real, np.zeros((2, 3, 4), np.uint8))
    link = tmp_path / "link.tif"
    link.symlink_to(real)
    assert run("convert", image, link)[0] == 0
    assert link.is_symlink() and read_volume(real).shape == (5, 24, 26)


# -- 3. full disks ----------------------------------------------------------------------------------


def test_a_short_write_is_a_full_disk_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "pwrite", lambda fd, data, offset: 0)  # the disk takes nothing
    out = tmp_path / "out.npy"
    with pytest.raises(OutputError, match=r"out.npy: no space left on device"):
        write_volume(out, np.ones((4, 8, 8), np.float32))
    assert not out.exists() and not list(tmp_path.glob(".out.npy.partial-*"))


def test_errors_name_the_users_path_not_the_temporary_one(tmp_path, monkeypatch):
    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(tifffile, "TiffWriter", refuse)
    with pytest.raises(OutputError) as info:
        VolumeWriter(tmp_path / "x.tif", (2, 3, 4), np.uint8)
    assert str(info.value) == f"{tmp_path / 'x.tif'}: permission denied" and ".partial" not in str(info.value)


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode:
        pytest.skip("cannot mount a small tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


@pytest.mark.parametrize("suffix", ["npy", "h5", "tif", "zarr"])
def test_a_full_disk_is_one_line_and_no_file(tmp_path, small_disk, suffix):
    big = tmp_path / "big.npy"
    np.save(
        big, np.random.default_rng(0).random((20, 64, 64)).astype(np.float32)
    )  # 330 kB, random: incompressible
    out = small_disk / f"out.{suffix}"
    code, _, err = run("convert", big, out)
    assert code == 2 and one_error_line(err).startswith(f"error: {out}: no space left on device")
    assert not out.exists() and os.listdir(small_disk) in ([], ["lost+found"])


# -- 4. SIGTERM and stale temporary files -----------------------------------------------------------


def test_sigterm_cleans_up_and_exits_143(tmp_path):
    np.save(tmp_path / "big.npy", np.random.default_rng(0).random((48, 256, 256)).astype(np.float32))
    out = tmp_path / "out.tif"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dendriteseg", "segment", str(tmp_path / "big.npy"), "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not list(tmp_path.glob(".out.tif.partial-*")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert one_error_line(err) == "error: terminated (SIGTERM); no partial output was left"
    assert not out.exists() and not list(tmp_path.glob(".out.tif.partial-*"))


def test_an_interrupt_while_the_outputs_open_leaves_no_partial(tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM) after the labels' file is opened but before the probabilities' is: the
    labels' partial is removed too."""
    import importlib

    from dendriteseg.infer import segment

    segment_module = importlib.import_module("dendriteseg.infer.segment")  # the name is the function

    opened = []

    class Interrupted(VolumeWriter):
        def __init__(self, *args, **kwargs):
            if opened:
                raise KeyboardInterrupt
            super().__init__(*args, **kwargs)
            opened.append(self.temp)

    monkeypatch.setattr(segment_module, "VolumeWriter", Interrupted)
    volume = np.random.default_rng(0).random((5, 33, 34)).astype(np.float32)
    with pytest.raises(KeyboardInterrupt):
        segment(
            volume, lambda b: b - 0.5, output=tmp_path / "l.tif", probabilities=tmp_path / "p.tif", scale=1
        )
    assert opened and sorted(p.name for p in tmp_path.iterdir()) == []


def test_stale_partials_of_dead_runs_are_removed(tmp_path, image):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f".out.tif.partial-{dead.stdout.strip()}-0badc0de"
    stale.write_bytes(b"half a volume")
    alive = tmp_path / f".out.tif.partial-{os.getppid()}-0badc0de"  # a running process's: kept
    alive.write_bytes(b"being written")
    assert run("convert", image, tmp_path / "out.tif")[0] == 0
    assert not stale.exists() and alive.exists()


def test_a_figure_clears_the_partial_a_killed_run_left(tmp_path):
    """A training run killed while it drew ``curve.png`` leaves its temporary file; the next drawing
    of that figure (the resumed run's) removes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dendriteseg.io.outputs import save_figure

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f".curve.png.partial-{dead.stdout.strip()}-0badc0de"
    stale.write_bytes(b"half a png")
    save_figure(plt.figure(), tmp_path / "curve.png")
    assert not stale.exists() and (tmp_path / "curve.png").exists()


# -- 5. and 7. training settings --------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from dendriteseg.synth.dataset import build_dataset

    return build_dataset(tmp_path_factory.mktemp("data") / "ds", preset="tiny", seed=4)


def test_a_patch_larger_than_the_images_is_refused_before_training(dataset, tmp_path):
    code, _, err = run(
        "train",
        "--set",
        f"data={dataset}",
        "--set",
        f"out={tmp_path / 'r'}",
        "--set",
        "patch=[4,128,128]",
        "--set",
        "model_args={base: 4, depth: 2}",
    )
    assert code == 2
    assert "patch: [4, 128, 128] is larger than training volume noisy_000 (8x48x48)" in one_error_line(err)
    assert not (tmp_path / "r" / "resume.safetensors").exists()


@pytest.mark.parametrize(
    "setting,message",
    [
        ("epochs=0", "epochs: must be >= 1, got 0"),
        ("epochs=-3", "epochs: must be >= 1, got -3"),
        ("steps_per_epoch=0", "steps_per_epoch: must be >= 1, got 0"),
        ("batch=0", "batch: must be >= 1, got 0"),
        ("lr=-0.01", "lr: must be > 0.0 and <= 1.0, got -0.01"),
        ("foreground=1.5", "foreground: must be >= 0.0 and <= 1.0, got 1.5"),
        ("augment.noise=-1", "augment.noise: must be >= 0.0, got -1.0"),
        ("patch=[0,8,8]", "patch: three sizes Z, W, W of at least 1, got [0, 8, 8]"),
    ],
)
def test_every_numeric_setting_is_range_checked(setting, message, tmp_path):
    code, _, err = run("train", "--set", setting, "--set", f"out={tmp_path / 'r'}")
    assert code == 2 and one_error_line(err) == f"error: {message}"
    assert not (tmp_path / "r").exists()


# -- 6. NaN and infinities: filled, counted, said ---------------------------------------------------


def test_nan_in_an_image_is_filled_counted_and_said(tmp_path, phantom):
    data = phantom[0].astype(np.float32)
    nan = data.copy()
    nan[:, :3, :] = np.nan  # the rows outside a reconstruction circle, say
    nan[2, 50, 50] = np.inf
    write_volume(tmp_path / "nan.tif", nan)
    count = 9 * 3 * 97 + 1
    for args in (
        ["segment", tmp_path / "nan.tif", "-o", tmp_path / "l.tif"],
        ["baseline", "otsu", tmp_path / "nan.tif", "-o", tmp_path / "b.tif"],
        ["overlay", tmp_path / "nan.tif", tmp_path / "l.tif", "-o", tmp_path / "ov"],
        ["convert", tmp_path / "nan.tif", tmp_path / "c.npy"],
    ):
        code, _, err = run(*args)
        assert code == 0 and f"{count:,} voxels" in err and "NaN or infinite" in err, (args[0], err)
    assert np.isnan(read_volume(tmp_path / "c.npy")).sum() == 9 * 3 * 97  # convert changes no value
    assert list((tmp_path / "ov").glob("*.png"))


def test_an_all_nan_volume_is_refused(tmp_path):
    write_volume(tmp_path / "nan.tif", np.full((4, 16, 16), np.nan, np.float32))
    for args in (
        ["segment", tmp_path / "nan.tif", "-o", tmp_path / "l.tif"],
        ["baseline", "otsu", tmp_path / "nan.tif", "-o", tmp_path / "b.tif"],
    ):
        code, _, err = run(*args)
        assert code == 2 and "no finite voxels" in one_error_line(err) and "nan.tif" in one_error_line(err)
    assert not (tmp_path / "l.tif").exists() and not (tmp_path / "b.tif").exists()


# -- 8. truncated TIFF ------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_a_truncated_tiff_is_one_line(tmp_path, compression):
    data = (np.random.default_rng(1).random((10, 64, 64)) * 1000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "full.tif", data, compression=compression)
    raw = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(raw[: len(raw) // 2])
    for args in (["info", tmp_path / "cut.tif"], ["segment", tmp_path / "cut.tif", "-o", tmp_path / "l.tif"]):
        code, _, err = run(*args)
        assert code == 2 and "cut.tif: truncated TIFF" in one_error_line(err)


# -- 10. overlay ------------------------------------------------------------------------------------


def test_overlay_checks_every_label_slice_and_leaves_no_empty_folder(tmp_path, image):
    labels = np.zeros((5, 24, 26), np.uint8)
    labels[4, 3, 3] = 2  # on a slice the default overlays do not draw
    write_volume(tmp_path / "bad.tif", labels)
    code, _, err = run("overlay", image, tmp_path / "bad.tif", "-o", tmp_path / "ov", "--z", "1")
    assert code == 2 and "bad.tif" in one_error_line(err) and "0/1" in one_error_line(err)
    assert not (tmp_path / "ov").exists()


# -- 13. training killed for real -------------------------------------------------------------------


def test_training_killed_mid_epoch_resumes_without_doing_anything_twice(dataset, tmp_path):
    out = tmp_path / "run"
    settings = [
        f"data={dataset}",
        f"out={out}",
        "model_args={base: 4, depth: 2}",
        "patch=[4,32,32]",
        "batch=2",
        "epochs=3",
        "steps_per_epoch=40",
        "precision=fp32",
    ]
    command = [sys.executable, "-m", "dendriteseg", "train"] + [a for s in settings for a in ("--set", s)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "resume.safetensors").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # into the second epoch
    proc.kill()  # SIGKILL: no handler runs
    proc.wait(timeout=30)
    state = json.loads((out / "state.json").read_text())
    assert state["epoch"] == 1, "killed too late: the second epoch had already finished"
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "epoch 1:" not in again.stderr and "epoch 2:" in again.stderr and "epoch 3:" in again.stderr
    log = [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3]
    assert json.loads((out / "state.json").read_text())["epoch"] == 3
    assert not list(Path(out).glob(".*partial*"))


def test_a_damaged_checkpoint_is_one_line(dataset, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "resume.safetensors").write_bytes(b"\x00" * 100)
    code, _, err = run(
        "train",
        "--set",
        f"data={dataset}",
        "--set",
        f"out={out}",
        "--set",
        "model_args={base: 4, depth: 2}",
        "--set",
        "patch=[4,32,32]",
    )
    assert code == 2 and "resume.safetensors: damaged training checkpoint" in one_error_line(err)


def test_input_error_is_still_a_value_error():
    assert issubclass(InputError, ValueError) and issubclass(OutputError, OSError)


# -- 2D images through every command ----------------------------------------------------------------


def test_a_2d_image_goes_through_every_command_and_stays_2d(tmp_path, phantom):
    image, label = phantom[0][4], phantom[1][4]
    tifffile.imwrite(tmp_path / "slice.tif", image)  # a plain 2D TIFF, as other programs write it
    write_volume(tmp_path / "truth.npy", label)
    code, out, err = run(
        "segment", tmp_path / "slice.tif", "-o", tmp_path / "pred.tif", "--report", tmp_path / "r.json"
    )
    assert code == 0 and "repeated" not in err  # no model named: the 2D default, made for single slices
    assert "pred.tif (unet2d_default):" in out  # and the line says which model it was
    assert "--from unet2d_default" in json.loads((tmp_path / "r.json").read_text())["finetune_command"]
    pred = read_volume(tmp_path / "pred.tif")
    assert pred.shape == image.shape and set(np.unique(pred)) <= {0, 1}
    code, _, err = run(
        "segment", tmp_path / "slice.tif", "-o", tmp_path / "p2.zarr", "--model", "unet3d_default"
    )
    assert code == 0 and "a 2D image; the 3D model sees it repeated to 4 slices" in err
    assert read_volume(tmp_path / "p2.zarr").shape == image.shape
    code, out, _ = run(
        "evaluate", tmp_path / "pred.tif", tmp_path / "truth.npy", "--json", tmp_path / "s.json"
    )
    assert code == 0 and json.loads((tmp_path / "s.json").read_text())["counts"]["slices"] == 1
    assert json.loads((tmp_path / "s.json").read_text())["iou"] > 0.5
    assert run("baseline", "otsu", tmp_path / "slice.tif", "-o", tmp_path / "otsu.npy")[0] == 0
    assert read_volume(tmp_path / "otsu.npy").shape == image.shape
    code, out, _ = run(
        "overlay",
        tmp_path / "slice.tif",
        tmp_path / "pred.tif",
        tmp_path / "truth.npy",
        "-o",
        tmp_path / "ov",
    )
    assert code == 0 and [p.name for p in (tmp_path / "ov").iterdir()] == ["z0000.png"]


@pytest.mark.parametrize("suffix", ["tif", "npy", "h5", "zarr"])
def test_a_one_slice_volume_and_a_2d_image_survive_the_round_trip(tmp_path, suffix):
    for shape in [(1, 5, 6), (5, 6)]:
        data = np.arange(30, dtype=np.uint8).reshape(shape)
        write_volume(tmp_path / f"x.{suffix}", data)
        back = read_volume(tmp_path / f"x.{suffix}")
        assert back.shape == shape and np.array_equal(back, data)
