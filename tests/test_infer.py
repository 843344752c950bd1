"""Whole-volume inference: blending, seams, streaming, fast CPU path, series resume, Dask, CLI errors."""

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from dendriteseg.cli import app  # noqa: E402
from dendriteseg.errors import InputError  # noqa: E402
from dendriteseg.infer import Tiling, TorchPredictor, choose_tile, iter_logits, segment, tile_starts  # noqa: E402
from dendriteseg.infer.cpu import optimise_for_cpu  # noqa: E402
from dendriteseg.infer.predictor import BinnedPredictor, CallablePredictor, FlippedPredictor  # noqa: E402
from dendriteseg.infer.series import segment_series  # noqa: E402
from dendriteseg.infer.stream import MAX_PLANE  # noqa: E402
from dendriteseg.io import ArrayVolume, read_volume, write_volume  # noqa: E402
from dendriteseg.models import build_model  # noqa: E402
from dendriteseg.models.files import ModelInfo, save_model  # noqa: E402
from dendriteseg.preprocess import NORMALISATION, normalisation_window  # noqa: E402

SHAPE = (33, 34, 35)
DEPTH = 2


def pointwise(batch):
    """A predictor without spatial context: tiling must not change its output at all."""
    return (batch - 0.5) * 4.0


def tiny_unet(seed=0):
    """A random residual 3D U-Net with decisive logits, about half dendrite on smooth noise."""
    torch.manual_seed(seed)
    model = build_model("unet3d", base=4, depth=DEPTH, z_levels=2).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    x = torch.from_numpy(smooth_noise((8, 32, 32), seed)[None, None] * 0.25 + 0.5)
    with torch.no_grad():
        out = model(x)
        diff = out[:, 1] - out[:, 0]
        model.head.bias[1] -= float(diff.median())
        scale = 4.0 / float(diff.std())
        model.head.weight *= scale
        model.head.bias *= scale
    return model


def smooth_noise(shape, seed=5):
    from scipy import ndimage

    noise = np.random.default_rng(seed).standard_normal(shape)
    field = ndimage.gaussian_filter(noise, 2.5)
    return (field / field.std()).astype(np.float32)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(
        path, tiny_unet(), ModelInfo("unet3d", {"base": 4, "depth": 2, "z_levels": 2}, dict(NORMALISATION))
    )
    return path


def test_tiles_are_as_deep_as_the_training_patches(tmp_path, model_file):
    from dendriteseg.infer.predictor import load_predictor

    assert load_predictor(model_file).tile_depth == 4  # 2 ** z_levels when nothing else is known
    deep = tmp_path / "deep.safetensors"
    provenance = {"config": {"patch": [8, 32, 32]}}
    info = ModelInfo("unet3d", {"base": 4, "depth": 2, "z_levels": 2}, dict(NORMALISATION), provenance)
    save_model(deep, tiny_unet(), info)
    assert load_predictor(deep).tile_depth == 8
    assert load_predictor(deep, tile_depth=4).tile_depth == 4  # an explicit depth wins


@pytest.fixture
def volume():
    return smooth_noise(SHAPE) * 300 + 1000


# -- tiling ---------------------------------------------------------------------------


@pytest.mark.parametrize("length,tile,overlap", [(35, 16, 0.25), (34, 34, 0.5), (33, 4, 0.0), (7, 16, 0.25)])
def test_tiles_cover_every_voxel_and_blending_weights_sum_to_one(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    assert starts[0] == 0 and starts[-1] + size == length
    assert all(b > a for a, b in zip(starts, starts[1:], strict=False))
    tiling = Tiling.build((length, length, length), (size, size, size), overlap)
    # explicit sum over tiles of each tile's normalised weight
    total = np.zeros((length,) * 3)
    weights = tiling.tile_weights()
    for z in tiling.z.starts:
        for y in tiling.y.starts:
            for x in tiling.x.starts:
                total[z : z + size, y : y + size, x : x + size] += weights
    expected = tiling.z.total[:, None, None] * tiling.plane_total()[None]
    np.testing.assert_allclose(total, expected, rtol=1e-5)
    normalised = total / expected
    np.testing.assert_allclose(normalised, 1.0, rtol=1e-6)


def test_default_tiles_whole_planes_up_to_896():
    class Deep:
        tile_depth = 4
        size_multiple = (4, 8, 8)

    assert choose_tile((250, 852, 852), Deep()) == (4, 856, 856)  # rounded up to the pooling grid
    assert choose_tile((250, 2000, 1024), Deep()) == (4, 800, 592)  # 3 x 800 and 2 x 592 tiles
    assert choose_tile((3, 20, 20), Deep()) == (4, 24, 24)
    assert choose_tile((250, 852, 852), Deep(), (60, 64)) == (4, 64, 64)


def test_default_plane_tiles_are_as_few_as_the_alignment_allows():
    class Deep:
        tile_depth = 4
        size_multiple = (4, 8, 8)

    # 1260 px: two aligned tiles of 728 cover it (720 would need a third start, at 272 and 544)
    tile = choose_tile((1, 1260, 1260), Deep())
    assert tile == (4, 728, 728)
    assert tile_starts(1260, 728, 0.25, 8) == [0, 536]
    for length in range(897, 4000, 37):  # the fewest tiles a side of at most MAX_PLANE allows, and
        side = choose_tile((4, length, length), Deep())[1]  # the smallest side that gives that count
        count = len(tile_starts(length, side, 0.25, 8))
        assert side <= MAX_PLANE and count == len(tile_starts(length, MAX_PLANE, 0.25, 8))
        assert len(tile_starts(length, side - 8, 0.25, 8)) > count

    # a binned network sees factor times fewer pixels a side: one tile where it fits the same memory
    binned = BinnedPredictor(CallablePredictor(lambda b: b, tile_depth=4), 4)
    assert choose_tile((1, 1260, 1260), binned)[1:] == (1260, 1260)
    assert choose_tile((1, 4000, 4000), binned)[1] <= 4 * MAX_PLANE


def test_tiles_deeper_than_the_model_was_trained_for_are_warned_about(caplog):
    class Deep:
        tile_depth = 4
        size_multiple = (4, 8, 8)

    with caplog.at_level("WARNING"):
        assert choose_tile((250, 852, 852), Deep(), (4, 64, 64)) == (4, 64, 64)
        assert not caplog.records
        assert choose_tile((250, 852, 852), Deep(), (8, 64, 64)) == (8, 64, 64)  # the user's choice stands
    assert "8 slices deep, where this 3D model was trained for 4" in caplog.text


def test_tile_starts_follow_the_pooling_grid():
    starts = tile_starts(852, 256, 0.25, multiple=8)
    assert all(s % 8 == 0 for s in starts) and starts[-1] + 256 >= 852
    assert all(b - a <= 256 - 0.2 * 256 for a, b in zip(starts, starts[1:], strict=False))
    tiling = Tiling.build((33, 34, 35), (4, 16, 16), 0.25, (4, 8, 8))
    assert all(axis.total.min() > 0 for axis in (tiling.z, tiling.y, tiling.x))
    assert tiling.padded()


# -- no seams -------------------------------------------------------------------------


@pytest.mark.parametrize("tile,overlap,overlap_z", [((5, 16, 16), 0.3, 0.4), ((4, 17, 40), 0.0, 0.0)])
def test_tiled_pointwise_prediction_equals_direct(volume, tile, overlap, overlap_z):
    kw = {"tile": tile, "overlap": overlap, "overlap_z": overlap_z, "hysteresis": 0.5}  # labels: p > 0.5
    result = segment(volume, pointwise, probabilities=True, **kw)
    lo, hi = normalisation_window(volume)
    logits = pointwise((volume - lo) / (hi - lo))
    probs = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(result.probabilities.astype(np.float32), probs, atol=1e-3)
    decided = np.abs(logits) > 1e-4
    assert np.array_equal(result.labels[decided], (logits > 0)[decided])
    assert result.labels.dtype == np.uint8 and result.labels.shape == SHAPE


def test_tiled_network_agrees_with_whole_volume(volume):
    model = tiny_unet()
    # fp32 pinned: on CPUs with bf16 units "auto" picks bf16, whose rounding is not what this tests
    kw = {"device": "cpu", "precision": "fp32", "probabilities": True}
    whole = segment(volume, model, tile=(4, 64, 64), **kw)
    tiled = segment(volume, model, tile=(4, 20, 20), overlap=0.5, **kw)
    assert 0.2 < whole.dendrite_fraction < 0.8
    assert (whole.labels == tiled.labels).mean() >= 0.99
    assert np.abs(whole.probabilities.astype(float) - tiled.probabilities).mean() < 0.01


def test_z_range_blocks_are_bit_identical_to_the_whole_run(volume):
    tiling = Tiling.build(SHAPE, (5, 16, 16), (0.4, 0.25, 0.25))
    vol = ArrayVolume(volume)
    window = normalisation_window(volume)
    full = np.concatenate([s for _, _, s in iter_logits(vol, pointwise, tiling, window, batch_size=3)])
    pieces = []
    for c0 in range(0, SHAPE[0], 8):
        for z0, z1, slab in iter_logits(vol, pointwise, tiling, window, batch_size=3, z_range=(c0, c0 + 8)):
            assert c0 <= z0 < z1 <= c0 + 8
            pieces.append(slab)
    assert np.array_equal(np.concatenate(pieces), full)


# -- fast CPU path --------------------------------------------------------------------


@pytest.mark.parametrize("name,kwargs", [("unet3d", {"base": 4, "depth": 2}), ("fcdense3d", {})])
def test_cpu_path_matches_model_and_avoids_slow_conv3d(name, kwargs):
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(1)
    model = build_model(name, **kwargs).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 1, 4, 33, 34)
    fast = optimise_for_cpu(model)
    with torch.inference_mode():
        np.testing.assert_allclose(fast(x).numpy(), model(x).numpy(), atol=1e-4)
    predictor = TorchPredictor(model, device="cpu", precision="fp32")
    batch = np.random.default_rng(0).random((1, 4, 33, 34), dtype=np.float32)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        out = predictor(batch)
    kernels = {event.key for event in prof.key_averages()}
    assert "aten::slow_conv3d_forward" not in kernels
    assert "aten::mkldnn_convolution" in kernels
    assert out.shape == batch.shape and np.isfinite(out).all()


def test_tta_keeps_shape_and_is_close(volume):
    model = tiny_unet()
    plain = segment(volume, model, device="cpu", probabilities=True, tta=False)
    tta = segment(volume, model, device="cpu", probabilities=True, tta=True)
    assert tta.labels.shape == SHAPE and tta.flips and not plain.flips
    assert np.abs(plain.probabilities.astype(float) - tta.probabilities).mean() < 0.2


def test_tta_is_the_mean_over_the_four_in_plane_flips():
    from dendriteseg.infer.predictor import TorchPredictor

    model = tiny_unet()
    batch = smooth_noise((1, 4, 24, 24), seed=3) * 0.25 + 0.5
    x = torch.from_numpy(batch)[:, None]
    with torch.no_grad():  # the reference: flip the input, run the network, flip back, average
        outs = []
        for dims in [(), (-1,), (-2,), (-1, -2)]:
            out = model(x.flip(dims) if dims else x)
            out = out.flip(dims) if dims else out
            outs.append((out[:, 1] - out[:, 0]).numpy())
    expected = np.mean(outs, axis=0)
    got = TorchPredictor(model, device="cpu", precision="fp32", tta=True)(batch)
    plain = TorchPredictor(model, device="cpu", precision="fp32")(batch)
    assert np.allclose(got, expected, atol=1e-4)
    assert np.abs(plain - expected).max() > 1e-2  # the network is not flip-symmetric: TTA changes logits
    wrapped = FlippedPredictor(TorchPredictor(model, device="cpu", precision="fp32"))(batch)
    assert np.allclose(wrapped, expected, atol=1e-4)  # the wrapper segment adds flips the same way


def test_flips_by_default_on_small_volumes_for_networks_only(volume, monkeypatch):
    import dendriteseg.infer.settings as settings_module

    model = tiny_unet()
    auto = segment(volume, model, device="cpu", precision="fp32", probabilities=True)
    on = segment(volume, model, device="cpu", precision="fp32", probabilities=True, tta=True)
    assert auto.flips and np.array_equal(auto.probabilities, on.probabilities)
    monkeypatch.setattr(settings_module, "TTA_AUTO_MAX_VOXELS", volume.size - 1)
    large = segment(volume, model, device="cpu", precision="fp32", probabilities=True)
    off = segment(volume, model, device="cpu", precision="fp32", probabilities=True, tta=False)
    assert not large.flips and np.array_equal(large.probabilities, off.probabilities)
    assert not np.array_equal(large.probabilities, auto.probabilities)

    calls = []

    def callable_model(batch):
        calls.append(batch.copy())
        return np.zeros_like(batch)

    monkeypatch.undo()
    assert not segment(volume, callable_model, sample_mask="none", scale=1).flips
    plain_calls = len(calls)
    assert segment(volume, callable_model, sample_mask="none", scale=1, tta=True).flips
    assert len(calls) == 5 * plain_calls  # a callable is flipped only when told: four calls a batch


def test_a_predictor_that_flips_already_is_not_flipped_again():
    from dendriteseg.infer.predictor import TorchPredictor, flips, with_flips

    flipping = TorchPredictor(tiny_unet(), device="cpu", tta=True)
    assert with_flips(flipping, True, 10) is flipping and flips(flipping)
    plain = TorchPredictor(tiny_unet(), device="cpu")
    wrapped = with_flips(plain, "auto", 10)
    assert isinstance(wrapped, FlippedPredictor) and with_flips(wrapped, True, 10) is wrapped
    assert with_flips(plain, False, 10) is plain


# -- streaming to files ---------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["tif", "zarr", "h5", "npy"])
def test_streamed_output_equals_in_memory(tmp_path, volume, model_file, suffix):
    write_volume(tmp_path / "in.tif", volume.astype(np.uint16))
    memory = segment(tmp_path / "in.tif", model_file, device="cpu", probabilities=True)
    result = segment(
        tmp_path / "in.tif",
        model_file,
        output=tmp_path / f"out.{suffix}",
        probabilities=tmp_path / f"p.{suffix}",
        device="cpu",
    )
    labels = read_volume(tmp_path / f"out.{suffix}")
    assert labels.dtype == np.uint8 and np.array_equal(labels, memory.labels)
    probs = read_volume(tmp_path / f"p.{suffix}")
    assert probs.dtype == np.float16
    np.testing.assert_allclose(probs.astype(np.float32), memory.probabilities, atol=1e-3)  # float16 rounding
    decided = np.abs(probs.astype(np.float32) - 0.5) > 1e-3  # float16 rounds near 0.5
    # labels lie where p > 0.5; hysteresis may leave out unsure pieces there, never add any
    assert not labels.astype(bool)[decided & (probs < 0.5)].any() and labels.any()
    assert result.labels is None and result.dendrite_fraction == pytest.approx(labels.mean())
    assert not [p for p in os.listdir(tmp_path) if ".partial-" in p]


def test_failed_run_leaves_no_output(tmp_path, volume):
    calls = []

    def failing(batch):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("boom")
        return pointwise(batch)

    with pytest.raises(RuntimeError):
        segment(volume, failing, output=tmp_path / "out.tif", tile=(4, 34, 35))
    assert os.listdir(tmp_path) == []


# -- many volumes ---------------------------------------------------------------------


@pytest.fixture
def scans(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "scans"
    folder.mkdir()
    for t in range(3):
        write_volume(folder / f"t{t:03d}.h5", (rng.random((9, 24, 25)) * 3000).astype(np.uint16))
    return folder


def test_series_skips_finished_and_summarises(scans, tmp_path, model_file):
    out = tmp_path / "out"
    statuses = []
    rows = segment_series(
        [f"{scans}/t*.h5:/exchange/data"],
        out,
        model_file,
        device="cpu",
        on_volume=lambda i, n, spec, status: statuses.append(status),
    )
    assert statuses == ["run"] * 3 and [r["status"] for r in rows] == ["done"] * 3
    assert sorted(os.listdir(out)) == ["summary.csv", "t000.tif", "t001.tif", "t002.tif"]
    (out / "t001.tif").unlink()
    (out / ".t001.tif.partial-deadbeef").write_bytes(b"half")  # as a killed run leaves it
    statuses.clear()
    rows = segment_series(
        [f"{scans}/t*.h5"], out, model_file, device="cpu", on_volume=lambda *a: statuses.append(a[3])
    )
    assert statuses == ["skipped", "run", "skipped"]
    assert sorted(os.listdir(out)) == ["summary.csv", "t000.tif", "t001.tif", "t002.tif"]
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("input,output,status,shape,seconds") and len(summary) == 4
    table = list(csv.DictReader(summary))
    assert all(float(r["dendrite_fraction"]) >= 0 and r["scale"] == "1" for r in table)  # small: never binned
    assert all(r["trust"] in ("ok", "low") and (r["trust"] == "low") == bool(r["reasons"]) for r in table)


def test_a_series_is_segmented_at_the_binning_its_first_volume_chose(tmp_path):
    rng = np.random.default_rng(1)
    clean = np.full((2, 200, 200), 0.7, np.float32)
    clean[:, 40:160, 60:140] = 0.3
    noisy = clean + rng.normal(0, 0.4, clean.shape).astype(np.float32)
    np.save(tmp_path / "t0.npy", noisy)
    np.save(tmp_path / "t1.npy", clean)
    options = dict(window=(0.0, 1.0), sample_mask="none")
    assert segment(clean, _noise_averaged, **options).scale.scale == 1  # alone: unbinned
    assert segment(noisy, _noise_averaged, **options).scale.scale == 2
    rows = segment_series([f"{tmp_path}/t*.npy"], tmp_path / "out", _noise_averaged, **options)
    assert [r["scale"] for r in rows] == [2, 2]
    binned = segment(clean, _noise_averaged, scale=2, **options).labels
    np.testing.assert_array_equal(read_volume(tmp_path / "out" / "t1.tif"), binned)
    (tmp_path / "out" / "t1.tif").unlink()  # resumed: the binning comes from the summary
    rows = segment_series([f"{tmp_path}/t*.npy"], tmp_path / "out", _noise_averaged, **options)
    assert [r["status"] for r in rows] == ["skipped", "done"] and rows[1]["scale"] == 2


def test_a_series_keeps_the_flips_its_first_volume_had(tmp_path, monkeypatch):
    import dendriteseg.infer.settings as settings_module

    model = tiny_unet()
    rng = np.random.default_rng(3)
    small, large = (rng.random(shape, dtype=np.float32) for shape in [(4, 40, 40), (8, 40, 40)])
    np.save(tmp_path / "t0.npy", small)
    np.save(tmp_path / "t1.npy", large)
    monkeypatch.setattr(settings_module, "TTA_AUTO_MAX_VOXELS", small.size)  # alone, t1 gets one pass
    options = dict(window=(0.0, 1.0), sample_mask="none", scale=1, device="cpu", precision="fp32")
    assert not segment(large, model, **options).flips
    rows = segment_series([f"{tmp_path}/t*.npy"], tmp_path / "out", model, **options)
    assert [r["flips"] for r in rows] == ["on", "on"]
    flipped = segment(large, model, tta=True, **options).labels
    np.testing.assert_array_equal(read_volume(tmp_path / "out" / "t1.tif"), flipped)
    (tmp_path / "out" / "t1.tif").unlink()  # resumed: the flips come from the summary
    rows = segment_series([f"{tmp_path}/t*.npy"], tmp_path / "out", model, **options)
    assert [r["status"] for r in rows] == ["skipped", "done"] and rows[1]["flips"] == "on"


def _noise_averaged(batch):
    """Surer the less pixel noise it sees, as a network on a scan much finer than its training."""
    noise = np.abs(np.diff(batch, axis=-1)).mean() + 1e-3
    return (0.5 - batch) * 2.0 / noise


@pytest.mark.slow
def test_killed_series_resumes_without_redoing_volumes(scans, tmp_path, model_file):
    out = tmp_path / "out"
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            import numpy as np
            from dendriteseg.infer.series import segment_series
            from dendriteseg.infer.predictor import resolve_predictor
            net = resolve_predictor({str(model_file)!r}, device="cpu")
            def slow(batch):
                time.sleep(0.3)
                return net(batch)
            segment_series([{str(scans)!r} + "/t*.h5"], {str(out)!r}, slow,
                           on_volume=lambda i, n, s, st: print(st, s, flush=True))
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "t000.tif").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.4)  # inside the second volume
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "t000.tif").exists() and not (out / "t002.tif").exists()
    first = read_volume(out / "t000.tif")
    statuses = []
    segment_series(
        [f"{scans}/t*.h5"], out, model_file, device="cpu", on_volume=lambda i, n, s, st: statuses.append(st)
    )
    assert statuses[0] == "skipped" and statuses[2] == "run"
    assert sorted(os.listdir(out)) == ["summary.csv", "t000.tif", "t001.tif", "t002.tif"]
    assert np.array_equal(read_volume(out / "t000.tif"), first)
    for name in ("t001.tif", "t002.tif"):
        assert read_volume(out / name).shape == (9, 24, 25)


# -- Dask -----------------------------------------------------------------------------


@pytest.mark.slow
def test_dask_local_cluster_matches_single_process(tmp_path, volume, model_file):
    pytest.importorskip("distributed")
    from dendriteseg.infer.distributed import segment_dask

    write_volume(tmp_path / "in.tif", volume.astype(np.uint16))
    sure = 0.99  # strict enough that pieces go, some vouched for from across a block's edge
    single = segment(
        tmp_path / "in.tif", model_file, output=tmp_path / "one.zarr", device="cpu", hysteresis=sure
    )
    result = segment_dask(
        tmp_path / "in.tif",
        tmp_path / "many.zarr",
        model_file,
        scheduler="local:2",
        block_depth=8,
        device="cpu",
        hysteresis=sure,
    )
    assert result.blocks == 5
    assert np.array_equal(read_volume(tmp_path / "many.zarr"), read_volume(tmp_path / "one.zarr"))
    every = segment(tmp_path / "in.tif", model_file, device="cpu", hysteresis=0.5)
    assert not np.array_equal(every.labels, read_volume(tmp_path / "one.zarr"))  # hysteresis had work to do
    assert result.dendrite_fraction == pytest.approx(single.dendrite_fraction)


# -- command line ---------------------------------------------------------------------

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_segments_one_volume(tmp_path, volume, model_file):
    write_volume(tmp_path / "in.h5", volume.astype(np.uint16))
    code, out, err = run("segment", tmp_path / "in.h5", "-o", tmp_path / "seg.tif", "--model", model_file)
    assert code == 0, err
    assert "wrote" in out and read_volume(tmp_path / "seg.tif").shape == SHAPE
    assert "averaged over 4 in-plane flips" in out  # a small volume: flips by default, and the line says so
    code, out, err = run(
        "segment", tmp_path / "in.h5", "-o", tmp_path / "s2.tif", "--model", model_file, "--no-tta"
    )
    assert code == 0 and "averaged over 4 in-plane flips" not in out, err


def test_cli_series_folder(scans, tmp_path, model_file):
    code, out, err = run(
        "segment", f"{scans}/*.h5:/exchange/data", "-o", tmp_path / "o", "--model", model_file
    )
    assert code == 0, err
    assert "3 segmented" in out and (tmp_path / "o" / "summary.csv").exists()


@pytest.mark.parametrize("case", ["unreadable", "4d", "dataset", "model", "suffix", "scale"])
def test_cli_bad_input_one_line_exit_2_no_output(tmp_path, volume, model_file, case):
    write_volume(tmp_path / "in.h5", volume.astype(np.uint16))
    args = [tmp_path / "in.h5", "--model", model_file]
    if case == "unreadable":
        (tmp_path / "bad.tif").write_bytes(b"not a tiff at all")
        args = [tmp_path / "bad.tif", "--model", model_file]
    elif case == "4d":
        np.save(tmp_path / "series.npy", np.zeros((2, 3, 20, 21), np.uint16))
        args = [tmp_path / "series.npy", "--model", model_file]
    elif case == "dataset":
        args = [f"{tmp_path / 'in.h5'}:/no/such", "--model", model_file]
    elif case == "model":
        (tmp_path / "other.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
        args = [tmp_path / "in.h5", "--model", tmp_path / "other.safetensors"]
    elif case == "scale":
        args = [tmp_path / "in.h5", "--model", model_file, "--scale", "two"]
    out_name = "seg.xyz" if case == "suffix" else "seg.tif"
    before = set(os.listdir(tmp_path))
    code, _, err = run("segment", *args, "-o", tmp_path / out_name)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
    assert set(os.listdir(tmp_path)) == before


# -- torch.compile --------------------------------------------------------------------


@pytest.mark.slow
def test_compiled_predictor_matches_eager(volume):
    model = tiny_unet()
    kw = {"device": "cpu", "precision": "fp32", "probabilities": True}
    eager = segment(volume, model, compile=False, **kw)
    compiled = segment(volume, model, compile=True, batch_size=2, **kw)
    assert (eager.labels == compiled.labels).mean() > 0.999
    assert np.abs(eager.probabilities.astype(float) - compiled.probabilities).max() < 0.01


def test_compile_failure_falls_back_to_eager(volume, monkeypatch, caplog):
    def broken(module, **kwargs):
        def fail(*args):
            raise RuntimeError("no compiler here")

        return fail

    monkeypatch.setattr(torch, "compile", broken)
    model = tiny_unet()
    eager = segment(volume, model, device="cpu", compile=False)
    fallback = segment(volume, model, device="cpu", compile=True)
    assert np.array_equal(eager.labels, fallback.labels)
    assert "torch.compile failed" in caplog.text


def test_compile_auto_only_for_big_volumes():
    predictor = TorchPredictor(tiny_unet(), device="cpu", compile="auto")
    predictor.prepare(1000)
    assert not predictor.compiled
    predictor.prepare(10**9)
    assert predictor.compiled


def test_2d_model_segments_slice_by_slice(volume):
    torch.manual_seed(3)
    model = build_model("unet2d", base=4, depth=2).eval()
    result = segment(volume, model, device="cpu", probabilities=True, tta=False)
    lo, hi = normalisation_window(volume)
    x = torch.from_numpy((volume - lo) / (hi - lo))[:, None]
    with torch.no_grad():
        out = model(x)
    direct = torch.sigmoid(out[:, 1] - out[:, 0]).numpy()
    assert result.tile == (8, 36, 36)  # 8 slices a row; in-plane rounded up to the pooling grid (4)
    np.testing.assert_allclose(result.probabilities.astype(np.float32), direct, atol=2e-3)


# -- the shipped default model --------------------------------------------------------


def test_shipped_default_model_segments_a_fresh_scan():
    from dendriteseg.infer.predictor import default_model_path
    from dendriteseg.metrics import score_slices, summarize
    from dendriteseg.models.files import read_model_info
    from dendriteseg.synth.scan import make_scan

    info = read_model_info(default_model_path())
    assert info.architecture == "unet3d" and "test_scores" in info.provenance
    assert default_model_path().stat().st_size < 8 * 2**20  # small enough to keep in the repository
    scan = make_scan((8, 96, 96), preset="easy", rng=21)
    result = segment(scan["image"], device="cpu")  # no model named: the shipped one
    scores = summarize(score_slices(result.labels, scan["label"]))
    assert scores.iou > 0.7 and scores.bf1 > 0.85


# -- ensembles ------------------------------------------------------------------------


def test_ensemble_averages_the_members_probabilities(volume, model_file, tmp_path):
    from dendriteseg.infer.predictor import EnsemblePredictor, ensemble_members, load_predictor

    assert ensemble_members("unet3d_default") is None and ensemble_members(model_file) is None
    assert ensemble_members("a.safetensors + unet2d_default") == ["a.safetensors", "unet2d_default"]
    odd = tmp_path / "odd+name.safetensors"  # a file whose name holds a "+" is one model
    odd.write_bytes(model_file.read_bytes())
    assert ensemble_members(odd) is None
    with pytest.raises(InputError, match="MODEL\\+MODEL"):
        ensemble_members("unet3d_default+")

    torch.manual_seed(3)
    flat = build_model("unet2d", base=4, depth=2).eval()
    pair = load_predictor(f"{model_file}+{model_file}", device="cpu")
    assert isinstance(pair, EnsemblePredictor) and pair.tile_depth == 4
    mixed = EnsemblePredictor([pair.members[0], TorchPredictor(flat, device="cpu")])
    assert mixed.tile_depth == 4 and mixed.size_multiple == (4, 4, 4)  # the deeper member's tiles
    batch = np.random.default_rng(0).random((2, 4, 20, 24), dtype=np.float32)
    a, b = (np.asarray(m(batch), np.float64) for m in mixed.members)
    mean = (1 / (1 + np.exp(-a)) + 1 / (1 + np.exp(-b))) / 2
    expected = np.log(np.clip(mean, 1e-6, 1 - 1e-6) / (1 - np.clip(mean, 1e-6, 1 - 1e-6)))
    np.testing.assert_allclose(mixed(batch), expected, rtol=1e-4, atol=1e-4)
    # an ensemble of one model twice segments as that model does
    alone = segment(volume, model_file, device="cpu", probabilities=True)
    twice = segment(volume, f"{model_file}+{model_file}", device="cpu", probabilities=True)
    np.testing.assert_allclose(twice.probabilities, alone.probabilities, atol=2e-3)


def test_cli_segments_with_an_ensemble_and_names_a_bad_member(tmp_path, volume, model_file):
    write_volume(tmp_path / "in.tif", volume.astype(np.uint16))
    code, out, err = run(
        "segment", tmp_path / "in.tif", "-o", tmp_path / "seg.tif", "--model", f"{model_file}+unet2d_default"
    )
    assert code == 0, err
    assert read_volume(tmp_path / "seg.tif").shape == SHAPE
    code, _, err = run(
        "segment", tmp_path / "in.tif", "-o", tmp_path / "no.tif", "--model", f"{model_file}+nosuch_model"
    )
    assert code == 2 and err.strip().startswith("error: nosuch_model: not a .safetensors model file")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "no.tif").exists()


# -- tiling details -----------------------------------------------------------------------


def test_tile_starts_checks_its_arguments_and_keeps_gaps_within_a_tile():
    assert tile_starts(1, 1, 0.0) == [0] and tile_starts(5, 5, 0.5) == [0] and tile_starts(5, 9, 0.0) == [0]
    assert tile_starts(6, 1, 0.0) == [0, 1, 2, 3, 4, 5]
    for length, tile, overlap, multiple in [
        (100, 16, 0.0, 1),
        (100, 16, 0.5, 1),
        (852, 256, 0.25, 8),
        (37, 8, 0.9, 4),
    ]:
        starts = tile_starts(length, tile, overlap, multiple)
        gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
        assert starts[0] == 0 and starts[-1] + tile >= length and starts[-1] + tile - length < multiple
        assert all(s % multiple == 0 for s in starts) and max(gaps) <= tile
        assert max(gaps) <= max(tile * (1 - overlap), 1) + multiple
        assert len(starts) == len(set(starts))
    assert tile_starts(100, 16, 0.5) != tile_starts(100, 16, 0.0)  # overlap adds tiles
    for bad in [(0, 4, 0.0), (4, 0, 0.0), (4, 4, 0.0, 0), (8, 4, 1.0), (8, 4, -0.1)]:
        with pytest.raises(ValueError):
            tile_starts(*bad)


def test_gaussian_window_is_the_floored_normal_curve():
    from dendriteseg.infer.tiling import WEIGHT_FLOOR, gaussian_window

    for size in (1, 8, 9, 64):
        window = gaussian_window(size)
        i = np.arange(size)
        expected = np.maximum(np.exp(-0.5 * ((i - (size - 1) / 2) / (0.125 * size)) ** 2), WEIGHT_FLOOR)
        assert window.dtype == np.float32 and np.allclose(window, expected, rtol=1e-6)
        assert np.allclose(window, window[::-1]) and window.max() <= 1.0
    assert gaussian_window(64).min() == pytest.approx(WEIGHT_FLOOR)


def test_tiling_sums_work_ratio_padding_and_alignment():
    from dendriteseg.infer.tiling import AxisTiling, alignment

    axis = AxisTiling.build(12, 4, 0.0)  # tiles that do not overlap: flat windows, every voxel once
    assert axis.starts == (0, 4, 8) and axis.window.dtype == np.float32 and np.all(axis.window == 1)
    assert axis.total.dtype == np.float32 and np.all(axis.total == 1)
    blended = AxisTiling.build(10, 4, 0.5)
    assert np.allclose(blended.total, sum(np.pad(blended.window, (s, 10 - s - 4)) for s in blended.starts))
    assert AxisTiling.build(10, 16, 0.25).size == 10 and AxisTiling.build(10, 16, 0.25, 8).size == 16
    tiling = Tiling.build((6, 12, 10), (6, 4, 5), 0.0)
    assert tiling.count == 6 and tiling.work_ratio() == pytest.approx(1.0) and not tiling.padded()
    overlapping = Tiling.build((6, 10, 10), (6, 4, 4), 0.0)
    assert overlapping.count == 9 and overlapping.work_ratio() == pytest.approx(9 * 6 * 16 / 600)
    assert Tiling.build((6, 10, 10), (8, 4, 4), 0.0, (8, 1, 1)).padded()
    assert Tiling.build((6, 10, 10), (6, 4, 4), (0.0, 0.5, 0.0)).y.starts != overlapping.y.starts
    with pytest.raises(ValueError):
        Tiling.build((6, 10, 10), (6, 4), 0.0)
    assert alignment(pointwise) == (1, 1, 1)
    assert alignment(type("P", (), {"size_multiple": (4, 8)})()) == (1, 4, 8)
    assert alignment(type("P", (), {"size_multiple": (2, 4, 8)})()) == (2, 4, 8)


def test_binned_predictor_sees_block_means_and_returns_every_pixel():
    seen = []

    def inner(batch):
        seen.append(batch.shape)
        return batch * 10.0

    binned = BinnedPredictor(inner, 3)
    batch = np.repeat(np.repeat(np.arange(8, dtype=np.float32).reshape(1, 1, 2, 4), 3, 2), 3, 3)
    out = binned(batch)
    assert seen == [(1, 1, 2, 4)] and out.shape == batch.shape
    np.testing.assert_allclose(out[0, 0, 4, 4], 10 * batch[0, 0, 4, 4])  # a block's centre keeps its value
    assert binned.size_multiple[1:] == (3, 3)
    with pytest.raises(InputError, match="scale: a whole number"):
        BinnedPredictor(inner, 1.5)


def test_segment_at_a_coarser_scale_keeps_the_shape_and_finds_large_features():
    image = np.full((3, 61, 58), 1.0, np.float32)
    image[:, 10:40, 12:44] = 0.2  # a large dark region: "dendrite" to the rule below
    rule = lambda batch: (0.5 - batch) * 20  # noqa: E731 - dark is dendrite
    plain = segment(image, rule, window=(0.0, 1.0), sample_mask="none")
    coarse = segment(image, rule, window=(0.0, 1.0), sample_mask="none", scale=2)
    assert coarse.labels.shape == image.shape
    assert (coarse.labels != plain.labels).mean() < 0.03  # only the region's edge may move


def test_scale_auto_bins_where_the_network_is_surest_and_only_large_slices():
    from dendriteseg.infer.scale_choice import candidates_for, mean_entropy

    assert candidates_for((4, 191, 300)) == [1] and candidates_for((1, 200, 250)) == [1, 2]
    assert candidates_for((1, 400, 400)) == [1, 2, 3, 4]
    assert mean_entropy(np.full((2, 3, 3), 0.5)) == pytest.approx(np.log(2))
    mask = np.zeros((3, 3), bool)
    mask[0, 0] = True
    probs = np.full((2, 3, 3), 0.5)
    probs[:, 0, 0] = 1.0
    assert mean_entropy(probs, mask) == pytest.approx(0.0, abs=1e-4)

    rng = np.random.default_rng(0)
    image = np.full((2, 200, 200), 0.7, np.float32)
    image[:, 40:160, 60:140] = 0.3  # a large dark region under pixel noise as strong as its contrast
    image += rng.normal(0, 0.4, image.shape).astype(np.float32)

    noise_averaged = _noise_averaged
    auto = segment(image, noise_averaged, window=(0.0, 1.0), sample_mask="none")
    choice = auto.scale
    assert set(choice.entropies) == {1, 2} and choice.scale == 2
    binned = segment(image, noise_averaged, window=(0.0, 1.0), sample_mask="none", scale=2)
    np.testing.assert_array_equal(auto.labels, binned.labels)

    unsure = lambda batch: np.zeros_like(batch)  # noqa: E731 - as unsure at every binning: stays at 1
    assert segment(image, unsure, window=(0.0, 1.0), sample_mask="none").scale.scale == 1
    small = segment(image[:, :150, :150], noise_averaged, window=(0.0, 1.0), sample_mask="none")
    assert small.scale.scale == 1 and not small.scale.entropies  # nothing probed
    for bad in (0, "x", 1.5):
        with pytest.raises(InputError, match="scale"):
            segment(image, unsure, window=(0.0, 1.0), scale=bad)


def test_scale_auto_does_not_bin_away_thin_arms():
    """A network much surer binned (as on a scan far finer than its training) still stays at full
    resolution where its dendrite, binned, is too thin to bin (the width rule), or where binned it calls
    blobs around arms found thin unbinned (the share rule); a block is not."""
    from dendriteseg.infer.scale_choice import (
        MIN_UNBINNED_SHARE,
        WIDTH_PER_BIN,
        dendrite_width,
        unbinned_share,
    )

    def surer_binned(batch):
        return (0.5 - batch) * (40.0 if batch.shape[-1] < 200 else 2.0)  # binned tiles are 100 px

    thin = np.full((2, 200, 200), 0.7, np.float32)
    for x in range(25, 180, 25):
        thin[:, 20:180, x : x + 5] = 0.3  # arms 5 px wide
    options = dict(window=(0.0, 1.0), sample_mask="none")
    choice = segment(thin, surer_binned, **options).scale
    assert choice.entropies[2] < 0.5 * choice.entropies[1]  # the entropy alone would bin
    assert choice.widths[2] < WIDTH_PER_BIN * 2 and choice.scale == 1
    block = np.full((2, 200, 200), 0.7, np.float32)
    block[:, 40:160, 40:160] = 0.3
    assert segment(block, surer_binned, **options).scale.scale == 2
    assert np.isnan(dendrite_width(np.zeros((1, 20, 20))))  # nothing found

    from scipy import ndimage

    def haloed_binned(batch):  # binned, a sure blob around each arm, wide enough to pass binned
        if batch.shape[-1] >= 200:
            return (0.5 - batch) * 2.0
        return (0.5 - ndimage.minimum_filter(batch, size=(1,) * (batch.ndim - 2) + (7, 7))) * 40.0

    thinner = np.full((2, 200, 200), 0.7, np.float32)
    for x in range(25, 180, 25):
        thinner[:, 20:180, x : x + 4] = 0.3  # arms 4 px wide
    choice = segment(thinner, haloed_binned, **options).scale
    assert choice.widths[2] >= WIDTH_PER_BIN * 2 and choice.entropies[2] < 0.5 * choice.entropies[1]
    assert choice.shares[2] < MIN_UNBINNED_SHARE  # binned, blobs several times the arms found unbinned
    assert choice.scale == 1 and "share of it found unbinned 2: 0." in choice.describe()
    assert segment(block, haloed_binned, **options).scale.scale == 2
    assert np.isnan(unbinned_share(np.ones((1, 4, 4)), np.zeros((1, 4, 4))))  # the binning calls nothing
    binned, unbinned, mask = np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), np.ones((4, 4), bool)
    binned[0, :2], unbinned[0, 0], mask[1] = 1.0, 1.0, False
    assert unbinned_share(unbinned, binned) == 0.5 and unbinned_share(unbinned, binned, mask) == 1.0
    bar = np.zeros((1, 40, 40))
    bar[0, 10:30, 15:21] = 1.0
    assert 5 <= dendrite_width(bar) <= 7


def test_scale_probe_is_cropped_on_shallow_large_planes_and_reused_when_it_is_the_volume():
    """A single large slice: the finer binnings are compared on a crop where the coarse look found
    dendrite, and the run reuses the probe's logits at the binning chosen (no second pass)."""
    from collections import Counter

    from dendriteseg.infer.scale_choice import (
        FALLBACK_CROP,
        MIN_CROP,
        PROBE_SHARE,
        probe_crop,
        probe_plan,
        probe_work,
    )

    def share(shape, depth, side, scales=(1, 2, 3, 4)):  # of a run at the coarsest binning, 4-deep tiles
        run = probe_work(shape, shape[0], 0, (max(scales),), 4)
        return probe_work(shape, depth, side, scales, 4) / run

    # a run's default tiles are consecutive in z: 250 slices are 63 tiles of 4, 252 slices seen
    assert probe_work((250, 852, 852), 250, 0, (4,), 4) == 252 * 213 * 213

    # the bound is a share of a run at the coarsest binning, the cheapest the probe can choose
    assert probe_plan((4000, 852, 852), 4) == (8, 852)  # very deep: whole planes are a small share of it
    depth, side = probe_plan((1000, 852, 852), 4)
    assert depth == 8 and MIN_CROP < side < 852 and side % 12 == 0  # the largest crop that fits
    assert share((1000, 852, 852), 8, side) <= PROBE_SHARE < share((1000, 852, 852), 8, side + 12)
    depth, side = probe_plan((250, 852, 852), 4)  # 8 slices would not fit even on the smallest crop
    assert depth == 4 and side >= MIN_CROP and share((250, 852, 852), 4, side) <= PROBE_SHARE
    assert share((250, 852, 852), 8, MIN_CROP) > PROBE_SHARE
    assert probe_plan((250, 852, 852), 1) == (1, 852)  # a 2D model's tile is one slice: whole planes fit
    assert probe_plan((250, 852, 852), 4, (1, 2))[0] == 8  # binned 2 x, the cheapest run costs 4 x more
    assert probe_plan((24, 512, 512), 4) == (8, 512)  # nothing fits a shallow volume: the deeper probe
    assert probe_plan((1, 1260, 1260), 4) == (1, FALLBACK_CROP)  # one slice: nothing fits, a steady crop
    assert probe_plan((1, 500, 500), 4) == (1, 500)  # a crop would hold most of the plane: whole
    coarse = np.zeros((1, 1000, 1000), np.float32)
    coarse[0, 700:760, 100:180] = 1.0  # the coarse look's dendrite, near a corner
    ys, xs = probe_crop(coarse, None, 384)
    assert ys.start <= 700 and ys.stop >= 760 and xs.start <= 100 and xs.stop >= 180
    assert ys.start % 12 == 0 and xs.start % 12 == 0 and ys.stop - ys.start == 384

    rng = np.random.default_rng(1)
    image = np.full((800, 800), 0.7, np.float32)
    image[420:700, 80:380] = 0.3  # one large dark region off centre
    image += rng.normal(0, 0.4, image.shape).astype(np.float32)
    calls = []

    def counted(batch):
        calls.append(batch.size)
        return _noise_averaged(batch)

    auto = segment(image, counted, window=(0.0, 1.0), sample_mask="none")
    auto_calls = Counter(calls)
    choice = auto.scale
    assert choice.crop is not None and choice.scale > 1 and set(choice.entropies) == {1, 2, 3, 4}
    y0, y1, x0, x1 = choice.crop
    assert y0 < 700 and y1 > 420 and x0 < 380 and x1 > 80  # the crop holds the dark region
    full_res = image.size * 4  # what a scale-1 pass over the whole slice would send (4 slices deep)
    assert sum(calls) < 0.5 * full_res  # the finer binnings saw the crop, not the whole slice
    calls.clear()
    forced = segment(image, counted, window=(0.0, 1.0), sample_mask="none", scale=choice.scale)
    np.testing.assert_array_equal(auto.labels, forced.labels)  # the reused logits are the run's
    assert calls and all(auto_calls[size] == n for size, n in Counter(calls).items())  # computed once
    tiled = segment(image, counted, window=(0.0, 1.0), sample_mask="none", tile=(4, 256, 256))
    assert tiled.scale.scale == choice.scale  # other tiles: the run's own pass, not the probe's


def test_on_a_crop_the_unbinned_look_sees_its_centre_and_chooses_as_the_whole_crop(monkeypatch):
    """The unbinned look costs the most a pixel: on a crop it sees the crop's central UNBINNED_SIDE
    pixels (with context) only, and the binning chosen is the one a look over the whole crop chose."""
    from dendriteseg.infer import scale_choice
    from dendriteseg.io import as_volume

    rng = np.random.default_rng(3)
    image = np.full((800, 800), 0.7, np.float32)
    image[300:520, 250:480] = 0.3
    image += rng.normal(0, 0.4, image.shape).astype(np.float32)
    shapes = []

    def counted(batch):
        shapes.append(batch.shape)
        return _noise_averaged(batch)

    def choose():
        shapes.clear()
        return scale_choice.choose_scale(as_volume(image[None]), CallablePredictor(counted), (0.0, 1.0))

    # the callable sees what the network would: each look's batch, binned (the crop with its context of
    # 24 binned pixels: 528 / 3, 480 / 2, the whole slice / 4) and unbinned
    centre = choose()
    unbinned = scale_choice.UNBINNED_SIDE + 2 * scale_choice.CONTEXT
    assert centre.crop is not None and sorted(s[-1] for s in shapes) == [176, 200, 240, unbinned]
    monkeypatch.setattr(scale_choice, "UNBINNED_SIDE", 10_000)
    whole = choose()
    assert sorted(s[-1] for s in shapes) == [176, 200, 240, scale_choice.FALLBACK_CROP + 48]
    assert whole.scale == centre.scale > 1 and whole.crop == centre.crop
    assert centre.entropies[2] == whole.entropies[2] and centre.entropies[1] != whole.entropies[1]


@pytest.mark.parametrize("side", [300, 800])
def test_a_scale_probe_of_part_runs_one_pass_and_of_the_whole_runs_as_the_run(side):
    """Where the run flips: a probe that sees part of the volume (a large slice: a crop) compares the
    binnings in one pass a tile, then the run flips; one that sees all of it flips as the run does, and
    its logits at the binning chosen are the run's (no second pass)."""
    from dendriteseg.infer.scale_choice import choose_scale, probe_is_whole
    from dendriteseg.io import as_volume

    rng = np.random.default_rng(2)
    image = np.full((side, side), 0.7, np.float32)
    image[side // 3 : side // 3 + 120, 60:200] = 0.3
    image += rng.normal(0, 0.4, image.shape).astype(np.float32)
    calls = []

    def counted(batch):  # not the same flipped: a slope across x
        calls.append(batch.shape)
        return _noise_averaged(batch) + np.linspace(-0.5, 0.5, batch.shape[-1], dtype=np.float32)

    options = {"window": (0.0, 1.0), "sample_mask": "none", "probabilities": True}
    one_pass = segment(image, counted, tta=False, **options)
    probe_calls = len(calls)  # whole: the probe and the run at once; part: the probe, then the run
    calls.clear()
    flipped = segment(image, counted, tta=True, **options)
    flipped_calls = len(calls)
    calls.clear()
    forced = segment(image, counted, tta=True, scale=flipped.scale.scale, **options)
    run_calls = len(calls)  # the run alone, four passes
    assert flipped.flips and flipped.scale.scale == one_pass.scale.scale > 1
    np.testing.assert_array_equal(flipped.labels, forced.labels)
    np.testing.assert_allclose(flipped.probabilities, forced.probabilities, atol=1e-3)
    assert np.abs(flipped.probabilities.astype(float) - one_pass.probabilities).max() > 0.05  # flips mattered
    if probe_is_whole((1, side, side), 1):  # the probe, flipped, was the run
        assert side == 300 and flipped.scale.logits is not None and flipped_calls == 4 * probe_calls
    else:  # the probe in one pass (as without flips); its coarsest look, on whole planes and chosen, is
        # the run's unflipped pass: the run adds the three flipped ones
        assert side == 800 and flipped.scale.crop is not None and flipped.scale.scale == 4
        calls.clear()
        choose_scale(as_volume(image[None]), CallablePredictor(counted), (0.0, 1.0))
        assert flipped_calls == len(calls) + run_calls * 3 // 4 and run_calls % 4 == 0


def test_a_low_trust_run_in_one_pass_names_the_flips():
    from dendriteseg.infer.run import FLIPS_HINT, SegmentRun
    from dendriteseg.infer.trust import TrustReport

    def line(trust: str, flipped: bool) -> str:
        verdict = TrustReport(trust, ["high mean uncertainty"], [1], "dendriteseg finetune ...")
        result = segment_result(trust=verdict, flips=flipped)
        return SegmentRun("out.tif", result=result).describe()

    assert FLIPS_HINT in line("low", False)
    assert FLIPS_HINT not in line("low", True) and FLIPS_HINT not in line("ok", False)


def segment_result(**fields):
    from dendriteseg.infer.segment import SegmentResult

    base = dict(shape=(2, 8, 8), seconds=1.0, dendrite_fraction=0.1, tile=(1, 8, 8), work_ratio=1.0)
    return SegmentResult(**base, window=(0.0, 1.0), **fields)


def test_the_run_line_gives_the_share_of_the_volume_and_of_the_sample_region():
    from dendriteseg.infer.run import SegmentRun
    from dendriteseg.infer.trust import TrustReport
    from dendriteseg.sample_region import SampleRegion

    verdict = TrustReport("ok", [], [1], "dendriteseg finetune ...", measures={"dendrite_share": 0.25})
    region = SampleRegion(np.eye(8, dtype=bool), "given")
    with_region = SegmentRun("out.tif", result=segment_result(trust=verdict, sample_region=region)).describe()
    shares = "dendrite 10.00 % of the volume (25.00 % of the sample region), grey window 0 to 1, "
    assert shares in with_region
    assert with_region.count("grey window") == 1
    without = SegmentRun("out.tif", result=segment_result(trust=verdict)).describe()
    assert "dendrite 10.00 % of the volume," in without and "sample region" not in without
