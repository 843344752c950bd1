"""Robust fine-tuning by weight interpolation (dendriteseg.train.wise) and recipes that use it."""

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from dendriteseg.errors import InputError  # noqa: E402
from dendriteseg.models import build_model  # noqa: E402
from dendriteseg.models.files import ModelInfo, load_model, read_model_info, save_model  # noqa: E402
from dendriteseg.train.wise import Interpolation, blend_weights, choose_alpha, interpolate  # noqa: E402

TINY = "name: tiny_default\nmodel: unet2d\nmodel_args: {base: 4, depth: 2}\npatch: [1, 32, 32]\nbatch: 4\n"
STEPS = "pretrain: {steps: 4, lr: 3.0e-3, epochs: 2}\nfinetune: {steps: 2, lr: 1.0e-3, epochs: 1}\n"


def _model_file(path: Path, seed: int, note: str) -> Path:
    torch.manual_seed(seed)
    model = build_model("unet2d", base=4, depth=2)
    save_model(path, model, ModelInfo("unet2d", {"base": 4, "depth": 2}, {}, {"data": note}))
    return path


def test_blend_weights_is_the_straight_line_between_two_models():
    start = {"w": torch.tensor([0.0, 2.0]), "n": torch.tensor(3)}
    tuned = {"w": torch.tensor([4.0, 6.0]), "n": torch.tensor(7)}
    assert torch.equal(blend_weights(start, tuned, 0.0)["w"], start["w"])
    assert torch.equal(blend_weights(start, tuned, 1.0)["w"], tuned["w"])
    assert torch.allclose(blend_weights(start, tuned, 0.25)["w"], torch.tensor([1.0, 3.0]))
    assert int(blend_weights(start, tuned, 0.25)["n"]) == 7  # counters are not averaged
    with pytest.raises(InputError, match="same layers"):
        blend_weights(start, {"w": tuned["w"]}, 0.5)


def test_interpolated_model_keeps_both_provenances(tmp_path):
    a = _model_file(tmp_path / "a.safetensors", 0, "datasets of a")
    b = _model_file(tmp_path / "b.safetensors", 1, "datasets of b")
    out = interpolate(a, b, 0.5, tmp_path / "m.safetensors")
    model, info = load_model(out)
    wise = info.provenance["wise_ft"]
    assert wise["alpha"] == 0.5
    assert wise["start"]["provenance"]["data"] == "datasets of a"
    assert info.provenance["data"] == "datasets of b"  # the fine-tuned model's provenance is the file's
    ma, _ = load_model(a)
    mb, _ = load_model(b)
    key = next(k for k, v in ma.state_dict().items() if v.is_floating_point() and v.abs().sum() > 0)
    mid = (ma.state_dict()[key] + mb.state_dict()[key]) / 2
    assert torch.allclose(model.state_dict()[key], mid, atol=1e-6)


def test_a_start_in_the_fine_tuned_models_parents_is_not_copied_again(tmp_path):
    a = _model_file(tmp_path / "a.safetensors", 0, "datasets of a")
    torch.manual_seed(1)
    lineage = {"data": "datasets of b", "parent": {"file": str(a), "provenance": {"data": "datasets of a"}}}
    b = tmp_path / "b.safetensors"
    save_model(
        b, build_model("unet2d", base=4, depth=2), ModelInfo("unet2d", {"base": 4, "depth": 2}, {}, lineage)
    )
    info = read_model_info(interpolate(a, b, 0.5, tmp_path / "m.safetensors"))
    assert info.provenance["parent"]["provenance"]["data"] == "datasets of a"  # still there, once
    assert "parent" in info.provenance["wise_ft"]["start"]["provenance"]
    assert json.dumps(info.provenance).count("datasets of a") == 1
    other = _model_file(tmp_path / "other.safetensors", 2, "datasets of another")  # not b's parent: kept
    info = read_model_info(interpolate(other, b, 0.5, tmp_path / "n.safetensors"))
    assert info.provenance["wise_ft"]["start"]["provenance"]["data"] == "datasets of another"


def test_choose_alpha_takes_the_largest_within_tolerance_and_scores_each_once(tmp_path):
    a = _model_file(tmp_path / "a.safetensors", 0, "a")
    b = _model_file(tmp_path / "b.safetensors", 1, "b")
    calls = []

    def score(path: Path) -> float:  # the start scores 0.9; each 0.1 of alpha costs 0.004, except 0.4
        calls.append(path.name)
        if path == a:
            return 0.9
        alpha = float(read_model_info(path).provenance["wise_ft"]["alpha"])
        return 0.5 if alpha == 0.4 else 0.9 - 0.04 * alpha

    grid = Interpolation((0.2, 0.4, 0.6, 0.8), tolerance=0.025)
    kept = choose_alpha(a, b, score, tmp_path / "w", grid)
    assert kept.alpha == 0.6 and kept.model == tmp_path / "w" / "alpha_0.6.safetensors"
    assert set(kept.val_iou) == {0.0, 0.2, 0.4, 0.6, 0.8} and kept.val_iou[0.0] == 0.9
    assert len(calls) == 5
    again = choose_alpha(a, b, score, tmp_path / "w", grid)  # a rerun reads the scores kept
    assert again.alpha == 0.6 and len(calls) == 5
    none = choose_alpha(a, b, lambda p: 0.9 if p == a else 0.1, tmp_path / "v", grid)
    assert none.alpha == 0.0 and none.model == a
    with pytest.raises(InputError, match="alphas must lie in"):
        Interpolation((0.0, 0.5))


def test_recipe_continues_another_recipe_and_interpolates(tmp_path):
    from dendriteseg.train.recipe import load_recipe, run_recipe

    (tmp_path / "base.yaml").write_text(TINY + "preset: tiny\n" + STEPS)
    path = tmp_path / "r.yaml"
    path.write_text(
        TINY.replace("tiny_default", "tiny_continued") + "preset: tiny\ninit_recipe: base.yaml\n"
        "datasets: [{seed: 8, generator: image}]\n" + STEPS + "wise: {alphas: [0.5, 1.0], tolerance: 1.0}\n"
    )
    result = run_recipe(
        load_recipe(path).scaled(0.5, "tiny"), tmp_path / "work"
    )  # a quick check shrinks both
    start = tmp_path / "work" / "init" / "ft" / "best.safetensors"
    assert start.is_file() and result.wise.alpha == 1.0  # a tolerance of 1 allows every alpha
    first_steps = read_model_info(start).provenance["config"]
    assert first_steps["epochs"] * first_steps["steps_per_epoch"] == 1  # the base recipe was shrunk too
    assert result.model == tmp_path / "work" / "wise" / "alpha_1.safetensors"
    assert set(result.wise.val_iou) == {0.0, 0.5, 1.0}
    trained = read_model_info(result.model).provenance  # the fine-tuned model's, and the wise step
    wise = trained["wise_ft"]
    assert Path(wise["start"]["file"]) == start and isinstance(wise["start"]["provenance"], str)  # not copied
    assert any(e.startswith("image8_") for e in trained["train_entries"])  # every dataset is listed
    assert Path(trained["parent"]["provenance"]["parent"]["file"]) == start
    for text, message in [
        ("wise: {tolerance: -1}\n", "tolerance must be at least 0"),
        ("wise: {alpha: 0.5}\n", "unknown keys"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(TINY + "init_recipe: base.yaml\n" + STEPS + text)
        with pytest.raises(InputError, match=message):
            load_recipe(bad)
    bad.write_text(TINY + STEPS + "wise: {tolerance: 0.01}\n")
    with pytest.raises(InputError, match="needs init or init_recipe"):
        load_recipe(bad)
    bad.write_text(TINY + STEPS + f"init_recipe: base.yaml\ninit: base.yaml\ninit_sha256: {'0' * 64}\n")
    with pytest.raises(InputError, match="not both"):
        load_recipe(bad)
