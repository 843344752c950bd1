"""Two-step training (pretrain on noisy, fine-tune on exact), reload, resume."""

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dendriteseg.data import LabelledVolume, read_manifest, select  # noqa: E402
from dendriteseg.errors import InputError  # noqa: E402
from dendriteseg.infer import segment  # noqa: E402
from dendriteseg.models.files import load_model, read_model_info  # noqa: E402
from dendriteseg.synth.dataset import build_dataset  # noqa: E402
from dendriteseg.train import load_config, segmentation_loss, train  # noqa: E402
from dendriteseg.train.config import config_from_dict  # noqa: E402


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("data") / "ds", preset="tiny", seed=3)


def tiny(manifest, out, **extra):
    settings = {
        "data": str(manifest),
        "out": str(out),
        "model": "unet3d",
        "model_args": {"base": 4, "depth": 2},
        "patch": [4, 32, 32],
        "batch": 2,
        "epochs": 2,
        "steps_per_epoch": 3,
        "lr": 3e-3,
        "precision": "fp32",
        **extra,
    }
    return config_from_dict(settings)


def test_pretrain_finetune_reload(manifest, tmp_path):
    best = train(tiny(manifest, tmp_path / "pre"))
    assert best.exists()
    log = [json.loads(line) for line in (tmp_path / "pre" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and all("iou" in r["val"] for r in log)
    assert (tmp_path / "pre" / "curve.png").exists()
    fine = train(tiny(manifest, tmp_path / "ft", train_quality="exact", lr=1e-4, epochs=1), parent=best)
    info = read_model_info(fine)
    assert info.architecture == "unet3d" and info.provenance["parent"]["file"] == str(best)
    assert info.provenance["train_quality"] == "exact"
    model, _ = load_model(fine)
    vol = LabelledVolume.from_entry(select(read_manifest(manifest), quality="exact")[0])
    pred = segment(vol.image, model, window=(0.0, 1.0), precision="fp32").labels
    assert pred.shape == vol.label.shape and set(np.unique(pred)) <= {0, 1}


def test_resume_continues_where_it_stopped(manifest, tmp_path):
    config = tiny(manifest, tmp_path / "run", epochs=1)
    train(config)
    history = (
        train(config.replace(epochs=2))
        and json.loads((tmp_path / "run" / "state.json").read_text())["history"]
    )
    assert [h["epoch"] for h in history] == [1, 2]


def test_run_folder_of_another_run_is_not_resumed(manifest, tmp_path):
    config = tiny(manifest, tmp_path / "run", epochs=1)
    best = train(config)
    before = (tmp_path / "run" / "state.json").read_text()
    wider = config.replace(model_args={"base": 8, "depth": 2}, epochs=2)
    with pytest.raises(InputError, match=r"run: holds another training run \(it differs in arguments\)"):
        train(wider)
    # fine-tuning into the folder of the model it starts from would resume that model's pretraining
    finetune = config.replace(train_quality="exact", epochs=2)
    with pytest.raises(InputError, match=r"starting weights \(--from\), train_quality"):
        train(finetune, parent=best)
    assert (tmp_path / "run" / "state.json").read_text() == before  # nothing touched
    other_start = train(config.replace(out=str(tmp_path / "ft"), train_quality="exact"), parent=best)
    with pytest.raises(InputError, match="starting weights"):  # the same settings from other weights
        train(config.replace(out=str(tmp_path / "ft"), train_quality="exact", epochs=2), parent=other_start)


def test_resumed_run_equals_uninterrupted_run(manifest, tmp_path):
    config = tiny(manifest, tmp_path / "whole", epochs=2)
    whole = train(config)
    # the same run, killed after its first epoch
    killed = config.replace(out=str(tmp_path / "killed"))

    def kill(epoch, record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(killed, on_epoch=kill)
    state = json.loads((tmp_path / "killed" / "state.json").read_text())
    assert state["epoch"] == 1
    epochs, steps = [], []
    resumed = train(killed, on_epoch=lambda e, r: epochs.append(e), on_step=lambda s, t, r: steps.append(s))
    assert epochs == [2] and len(steps) == config.steps_per_epoch  # only the missing epoch ran
    log = [json.loads(line)["epoch"] for line in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2]
    wa, _ = load_model(tmp_path / "whole" / "last.safetensors")
    wb, _ = load_model(tmp_path / "killed" / "last.safetensors")
    assert whole.exists() and resumed.exists()
    for (_, pa), (_, pb) in zip(wa.state_dict().items(), wb.state_dict().items(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_learning_rate_schedule(manifest):
    from dendriteseg.train.fit import learning_rate

    config = tiny(manifest, "x", lr=1e-3, epochs=2, steps_per_epoch=50, warmup_steps=10, min_lr=0.1)
    rates = [learning_rate(config, s) for s in range(100)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:], strict=False))  # decays after warm-up
    assert rates[-1] == pytest.approx(1e-4, rel=0.01)  # ends at min_lr x lr
    flat = config.replace(lr_schedule="constant", warmup_steps=0)
    assert {learning_rate(flat, s) for s in range(100)} == {1e-3}
    with pytest.raises(InputError, match="lr_schedule"):
        tiny(manifest, "x", lr_schedule="step")
    with pytest.raises(InputError, match="precision"):
        tiny(manifest, "x", precision="none")
    with pytest.raises(InputError, match="amp: renamed precision"):
        tiny(manifest, "x", amp="none")


def test_deterministic_on_cpu(manifest, tmp_path):
    a = train(tiny(manifest, tmp_path / "a", epochs=1))
    b = train(tiny(manifest, tmp_path / "b", epochs=1))
    wa, _ = load_model(a)
    wb, _ = load_model(b)
    for (_, pa), (_, pb) in zip(wa.state_dict().items(), wb.state_dict().items(), strict=True):
        assert torch.equal(pa, pb)


def test_2d_model_trains_on_single_slices(manifest, tmp_path):
    best = train(tiny(manifest, tmp_path / "u2", model="unet2d", epochs=1, patch=[4, 32, 32]))
    assert read_model_info(best).architecture == "unet2d"


def test_losses():
    logits = torch.randn(2, 2, 4, 8, 8, requires_grad=True)
    target = (torch.rand(2, 4, 8, 8) > 0.5).long()
    plain = segmentation_loss(logits, target)
    weighted = segmentation_loss(logits, target, boundary_weight=2.0)
    assert weighted > plain - 1.0 and torch.isfinite(weighted)
    weighted.backward()
    perfect = torch.stack([1 - target, target], 1).float() * 20
    assert segmentation_loss(perfect, target) < 0.01


def test_boundary_weighting_weighs_label_edges_in_plane():
    from scipy import ndimage

    torch.manual_seed(0)
    logits = torch.randn(2, 2, 3, 12, 12)
    target = torch.zeros(2, 3, 12, 12, dtype=torch.long)
    target[:, :, 3:8, 4:9] = 1
    target[1, 2] = 0  # an empty slice has no edges
    # reference: per-voxel cross-entropy, weighted 1 + w on the in-plane 3 x 3 dilation minus erosion
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none").numpy()
    t = target.numpy().astype(bool)
    square = np.ones((1, 1, 3, 3), bool)  # in-plane only
    edge = ndimage.binary_dilation(t, square) & ~ndimage.binary_erosion(t, square, border_value=1)
    for w in (0.0, 2.0, 5.0):
        expected = float((ce * (1 + w * edge)).mean())
        got = float(segmentation_loss(logits, target, dice_weight=0.0, boundary_weight=w))
        assert got == pytest.approx(expected, rel=1e-5)
    assert edge.sum() > 0 and not edge[1, 2].any()


def test_config_overrides_and_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: d.json\nlr: 0.01\naugment:\n  rotate_deg: 10\n")
    config = load_config(path, ["lr=1e-4", "augment.shear_deg=5", "patch=4,64,64"])
    assert config.lr == 1e-4 and config.augment.rotate_deg == 10 and config.augment.shear_deg == 5
    assert config.patch == (4, 64, 64) and config.data == str(tmp_path / "d.json")
    with pytest.raises(InputError, match="unknown setting 'lrr'"):
        load_config(path, ["lrr=1"])
    with pytest.raises(InputError, match="expected float"):
        load_config(path, ["lr=fast"])


def test_cli_train_finetune_models(manifest, tmp_path):
    from typer.testing import CliRunner

    from dendriteseg.cli import app

    runner = CliRunner()
    sets = [
        "--set",
        f"data={manifest}",
        "--set",
        f"out={tmp_path / 'cli'}",
        "--set",
        "model_args={base: 4, depth: 2}",
        "--set",
        "patch=4,32,32",
        "--set",
        "batch=2",
        "--set",
        "epochs=1",
        "--set",
        "steps_per_epoch=2",
        "--set",
        "precision=fp32",
    ]
    result = runner.invoke(app, ["train", *sets])
    assert result.exit_code == 0, result.output
    best = tmp_path / "cli" / "best.safetensors"
    assert best.exists() and (tmp_path / "cli" / "config.yaml").exists()
    result = runner.invoke(
        app,
        [
            "train",
            "--from",
            str(best),
            *sets[:-8],
            "--set",
            "train_quality=exact",
            "--set",
            f"out={tmp_path / 'cli_ft'}",
            "--set",
            "patch=4,32,32",
            "--set",
            "epochs=1",
            "--set",
            "steps_per_epoch=2",
            "--set",
            "precision=fp32",
            "--set",
            "batch=2",
        ],
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["models", str(tmp_path / "cli_ft" / "best.safetensors")])
    assert "unet3d_default *" in result.output  # the shipped models, with their scores
    assert result.exit_code == 0 and "unet3d" in result.stdout and "exact" in result.stdout
    bad = runner.invoke(app, ["models", str(manifest)])
    assert bad.exit_code == 2 and "not a safetensors file" in bad.stderr
    config = tmp_path / "config.yaml"
    config.write_text(f"data: {manifest}\n")
    dataset_form = runner.invoke(app, ["finetune", str(config)])
    assert (
        dataset_form.exit_code == 2
        and "dendriteseg train" in dataset_form.stderr
        and "--from" in dataset_form.stderr
    )
    # into the folder of the pretraining it starts from
    into_parent = runner.invoke(app, ["train", "--from", str(best), *sets])
    assert into_parent.exit_code == 2 and "holds another training run" in into_parent.stderr
    assert "Traceback" not in into_parent.output


def test_training_precision_rule_keeps_cpu_training_off_bf16_kernels_that_crash_with_amx(monkeypatch):
    import dendriteseg.device as device
    from dendriteseg.device import training_autocast, training_precision

    cpu = torch.device("cpu")
    # "auto" trains in fp32 on every CPU, whatever its bf16 or AMX units
    monkeypatch.setattr(device, "cpu_has_bf16", lambda: True)
    for amx in (False, True):
        assert training_precision("auto", cpu, has_amx=amx, environ={}) == "fp32"
        assert training_precision("fp32", cpu, has_amx=amx, environ={}) == "fp32"
    # bf16 asked for: granted without AMX, refused with it unless oneDNN is capped below AMX
    assert training_precision("bf16", cpu, has_amx=False, environ={}) == "bf16"
    with pytest.raises(InputError, match="AMX.*ONEDNN_MAX_CPU_ISA"):
        training_precision("bf16", cpu, has_amx=True, environ={})
    capped = {"ONEDNN_MAX_CPU_ISA": "avx512_core_bf16"}
    assert training_precision("bf16", cpu, has_amx=True, environ=capped) == "bf16"
    with pytest.raises(InputError, match="AMX"):
        training_precision("bf16", cpu, has_amx=True, environ={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"})
    with pytest.raises(InputError, match="fp16"):
        training_precision("fp16", cpu, has_amx=False, environ={})
    with pytest.raises(InputError, match="precision"):
        training_precision("none", cpu)
    # the machine's own answer is used when none is given
    monkeypatch.setattr(device, "cpu_has_amx", lambda: True)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    with pytest.raises(InputError, match="AMX"):
        training_precision("bf16", cpu)
    ctx, scaler = training_autocast(cpu, training_precision("auto", cpu))
    with ctx:
        assert not torch.is_autocast_enabled("cpu") and scaler is None
    ctx, _ = training_autocast(cpu, "bf16")
    with ctx:
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_training_records_its_precision_and_refuses_bf16_on_amx_before_work(manifest, tmp_path, monkeypatch):
    import dendriteseg.device as device

    best = train(tiny(manifest, tmp_path / "p", epochs=1, steps_per_epoch=1, precision="auto"))
    info = read_model_info(best)
    assert info.provenance["training"] == {"device": "cpu", "precision": "fp32"}
    assert info.provenance["config"]["precision"] == "auto"
    monkeypatch.setattr(device, "cpu_has_amx", lambda: True)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    with pytest.raises(InputError, match="AMX"):
        train(tiny(manifest, tmp_path / "q", epochs=1, steps_per_epoch=1, precision="bf16"))
    assert not (tmp_path / "q" / "last.safetensors").exists()


def _poisoned_fit(manifest, out, poisoned_steps, steps):
    from dendriteseg.data import PatchSampler
    from dendriteseg.models import build_model
    from dendriteseg.models.files import ModelInfo
    from dendriteseg.train.fit import fit

    config = tiny(manifest, out, epochs=1, steps_per_epoch=steps)
    train_volumes = [LabelledVolume.from_entry(e) for e in select(read_manifest(manifest), split="train")]
    torch.manual_seed(0)
    model = build_model("unet3d", base=4, depth=2)
    calls = []

    def poison(grad):  # NaN gradients in the first `poisoned_steps` steps
        calls.append(1)
        return grad * float("nan") if len(calls) <= poisoned_steps else grad

    next(model.parameters()).register_hook(poison)
    sampler = PatchSampler(train_volumes, config.patch, rng=0)
    history = fit(model, sampler, [], config, info=ModelInfo("unet3d", {"base": 4, "depth": 2}), resume=False)
    return model, history


def test_steps_with_non_finite_gradients_are_skipped(manifest, tmp_path):
    model, history = _poisoned_fit(manifest, tmp_path / "nan", poisoned_steps=2, steps=4)
    assert history[-1]["skipped_steps"] == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with pytest.raises(RuntimeError, match="diverged"):
        _poisoned_fit(manifest, tmp_path / "nan2", poisoned_steps=100, steps=12)


def test_thin_z_convolution_equals_the_plain_one():
    from dendriteseg.models.layers import Conv3d

    torch.manual_seed(0)
    ours = Conv3d(3, 5, 3, padding=1)
    plain = torch.nn.Conv3d(3, 5, 3, padding=1)
    plain.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 2, 9, 11, requires_grad=True)
    a, b = ours(x), plain(x)  # training mode, z = 2: our padded path
    assert torch.allclose(a, b, atol=1e-6)
    a.square().sum().backward()
    grad_ours = ours.weight.grad.clone()
    b.square().sum().backward()
    assert torch.allclose(grad_ours, plain.weight.grad, atol=1e-4)


@pytest.mark.parametrize(
    "model,args",
    [("unet3d", {"base": 4, "depth": 2}), ("fcdense3d", {"base": 4, "growth": 2, "layers": [1, 1]})],
)
def test_freeze_encoder_keeps_the_encoder_and_trains_the_rest(manifest, tmp_path, model, args):
    from dendriteseg.models import encoder_parameters

    config = tiny(manifest, tmp_path / "pre", model=model, model_args=args, epochs=1)
    start = train(config)
    before, info = load_model(start)
    frozen = config.replace(out=str(tmp_path / "ft"), freeze_encoder=True, train_quality="exact", lr=1e-2)
    after, _ = load_model(train(frozen, parent=start))
    encoder = {id(p) for p in encoder_parameters(before, info.architecture)}
    names = {n for n, p in before.named_parameters() if id(p) in encoder}
    assert names  # the spec names real modules
    changed = {
        n
        for (n, a), (_, b) in zip(before.named_parameters(), after.named_parameters(), strict=True)
        if not torch.equal(a, b)
    }
    assert changed and not changed & names


def test_recipe_rebuilds_a_model_from_an_empty_folder(tmp_path):
    from dendriteseg.train.recipe import load_recipe, run_recipe

    path = tmp_path / "r.yaml"
    path.write_text(
        "name: tiny_default\nmodel: unet2d\nmodel_args: {base: 4, depth: 2}\npatch: [1, 32, 32]\nbatch: 4\n"
        "preset: tiny\ndatasets: [{seed: 8, generator: image}]\nsettings: {foreground: 0.6}\n"
        "pretrain: {steps: 4, lr: 3.0e-3, epochs: 2}\nfinetune: {steps: 2, lr: 1.0e-3, epochs: 1}\n"
    )
    recipe = load_recipe(path)
    result = run_recipe(recipe, tmp_path / "work")
    info = read_model_info(result.model)
    assert info.architecture == "unet2d" and info.provenance["parent"]["file"] == str(result.pretrained)
    assert any(e.startswith("image8_") for e in info.provenance["train_entries"])
    assert 0 <= result.test_scores["iou"] <= 1 and set(result.test_scores) == {
        "accuracy",
        "iou",
        "bf1",
        "bde",
        "shown",
    }
    assert result.test_scores["shown"]["iou"] == pytest.approx(result.test_scores["iou"])
    small = recipe.scaled(0.5)
    assert small.pretrain.steps == 2 and small.finetune.steps == 1 and len(small.datasets) == 1
    wide = dataclasses.replace(recipe, patch=(4, 96, 96), preset="small")  # a quick check on tiny scans:
    assert wide.scaled(0.5, "tiny").patch == (4, 48, 48) and wide.scaled(0.5).patch == (4, 96, 96)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodel: unet9d\n")
    with pytest.raises(InputError, match="bad.yaml: not a recipe.*unknown model 'unet9d'"):
        load_recipe(bad)
    # a recipe that continues a model: pinned by its hash, checked before any work
    digest = hashlib.sha256(result.model.read_bytes()).hexdigest()
    init = os.path.relpath(result.model, tmp_path)
    path.write_text(path.read_text() + f"init: {init}\ninit_sha256: {digest}\n")
    again = run_recipe(load_recipe(path), tmp_path / "again")
    parent = read_model_info(again.pretrained).provenance["parent"]["file"]
    assert Path(parent) == result.model.resolve()
    path.write_text(path.read_text().replace(digest, "0" * 64))
    with pytest.raises(InputError, match="is not the recipe's init_sha256"):
        run_recipe(load_recipe(path), tmp_path / "never")
    assert not (tmp_path / "never").exists()
    path.write_text(path.read_text().replace(f"init_sha256: {'0' * 64}\n", ""))
    with pytest.raises(InputError, match="init needs init_sha256"):
        load_recipe(path)


def test_scoring_the_test_groups_leaves_out_scans_whose_dendrites_do_not_show(tmp_path):
    from dendriteseg.scoring import score_model
    from dendriteseg.synth.dataset import build_dataset
    from dendriteseg.train.recipe import SHOWN_FLOOR, exact_volumes, score_test_groups, visible_contrasts

    bench = build_dataset(tmp_path / "bench", preset="tiny", seed=3, generator="image")
    names = list(visible_contrasts(bench, "test"))
    assert len(names) >= 2
    hidden = names[0]
    meta_path = tmp_path / "bench" / hidden / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["visible_contrast"] = SHOWN_FLOOR / 2
    meta_path.write_text(json.dumps(meta))
    model = _tiny_model_file(tmp_path)
    scores = score_test_groups(model, bench)
    assert scores["shown"]["scans"] == names[1:]
    rest = [v for v, n in zip(exact_volumes(bench, "test"), names, strict=True) if n != hidden]
    expected = score_model(model, rest, window=(0.0, 1.0), device="cpu", precision="fp32").mean
    assert scores["shown"]["iou"] == pytest.approx(expected["iou"])
    assert scores["shown"]["bde"] == pytest.approx(expected["bde"], nan_ok=True)


def _tiny_model_file(tmp_path: Path) -> Path:
    import torch

    from dendriteseg.models import build_model
    from dendriteseg.models.files import ModelInfo, save_model
    from dendriteseg.preprocess import NORMALISATION

    torch.manual_seed(0)
    path = tmp_path / "tiny.safetensors"
    info = ModelInfo("unet2d", {"base": 4, "depth": 2}, dict(NORMALISATION))
    save_model(path, build_model("unet2d", base=4, depth=2), info)
    return path


def test_ship_refuses_a_model_below_the_rule_unless_told_why(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "scripts"))
    import train_default

    from dendriteseg.train.recipe import score_test_groups

    bench = build_dataset(tmp_path / "bench", preset="tiny", seed=3, generator="image")
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setattr(train_default, "WEIGHTS", weights)
    model = _tiny_model_file(tmp_path)
    today = weights / "tiny_default.safetensors"
    today.write_bytes(model.read_bytes())
    scores = score_test_groups(model, bench)
    worse = {**scores, "iou": scores["iou"] - 2 * train_default.SHIP_TOLERANCE}
    with pytest.raises(SystemExit, match="not shipped"):
        train_default.ship(model, bench, "tiny_default", worse)
    assert not (weights / "tiny_default.json").exists()
    train_default.ship(model, bench, "tiny_default", worse, force="a reason")
    record = json.loads((weights / "tiny_default.json").read_text())
    assert record["shipping_rule"]["shipped_anyway_because"] == "a reason"
    train_default.ship(model, bench, "tiny_default", scores)
    record = json.loads((weights / "tiny_default.json").read_text())
    assert "shipped_anyway_because" not in record["shipping_rule"]


def test_training_keeps_the_heap_while_it_runs(manifest, tmp_path):
    """Each step reuses the memory of the step before (dendriteseg.heap), and only while training runs."""
    from dendriteseg import heap

    depths = []
    train(tiny(manifest, tmp_path / "run", epochs=1), on_step=lambda s, t, r: depths.append(heap._depth))
    assert depths and all(depth >= 1 for depth in depths) and heap._depth == 0


def test_epochs_validation_cannot_tell_apart_keep_the_one_trained_longest(manifest, tmp_path, monkeypatch):
    import importlib

    fit = importlib.import_module("dendriteseg.train.fit")  # the module (the package exports its function)
    saturated = {"accuracy": 1.0, "iou": 1.0, "bf1": float("nan"), "bde": float("nan")}  # e.g. a few strokes
    monkeypatch.setattr(fit, "validate", lambda *a, **k: dict(saturated))
    train(tiny(manifest, tmp_path / "run", epochs=3))
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [bool(r.get("best")) for r in log] == [True, True, True]
    best, last = (tmp_path / "run" / f"{n}.safetensors" for n in ("best", "last"))
    assert best.read_bytes() == last.read_bytes()
    # a worse IoU, or the same IoU with a worse BDE, never replaces the best
    assert not fit._better({"iou": 0.9, "bde": 1.0}, {"iou": 0.95, "bde": 2.0})
    assert not fit._better({"iou": 0.9, "bde": 3.0}, {"iou": 0.9, "bde": 2.0})
    assert fit._better({"iou": 0.9, "bde": 2.0}, {"iou": 0.9, "bde": 2.0})
    assert fit._better({"iou": 0.9, "bde": 2.0}, {"iou": 0.9, "bde": float("nan")})
    assert not fit._better({"iou": 0.9, "bde": float("nan")}, {"iou": 0.9, "bde": 2.0})
