"""Fine-tuning on a user's labels and the two-step search: tiny models, a few steps."""

import subprocess
import sys

import numpy as np
import pytest
import tifffile

torch = pytest.importorskip("torch")
optuna = pytest.importorskip("optuna")

from dendriteseg.data import UNLABELLED, LabelledVolume, PatchSampler  # noqa: E402
from dendriteseg.errors import InputError  # noqa: E402
from dendriteseg.metrics import score_labelled  # noqa: E402
from dendriteseg.models import build_model  # noqa: E402
from dendriteseg.models.files import ModelInfo, load_model, save_model  # noqa: E402
from dendriteseg.preprocess import NORMALISATION  # noqa: E402
from dendriteseg.synth.scan import make_scan  # noqa: E402
from dendriteseg.train.fit import segmentation_loss  # noqa: E402
from dendriteseg.tune.finetune import finetune_on_labels  # noqa: E402
from dendriteseg.tune.labels import read_user_scan, split_labels  # noqa: E402


def _tiny_model(path, arch):
    patch = [1, 32, 32] if arch == "unet2d" else [2, 32, 32]
    torch.manual_seed(0)
    model = build_model(arch, base=4, depth=2)
    save_model(
        path,
        model,
        ModelInfo(
            arch, {"base": 4, "depth": 2}, dict(NORMALISATION), {"config": {"patch": patch, "batch": 2}}
        ),
    )
    return path


@pytest.fixture(scope="module")
def scan_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user")
    scan = make_scan((5, 40, 40), rng=2)
    tifffile.imwrite(folder / "img.tif", scan["image"])
    tifffile.imwrite(folder / "lab.tif", scan["label"] * 255)
    tifffile.imwrite(folder / "img2d.tif", scan["image"][2])
    tifffile.imwrite(folder / "lab2d.tif", scan["label"][2])
    tifffile.imwrite(folder / "img2d_b.tif", scan["image"][4])
    tifffile.imwrite(folder / "lab2d_b.tif", scan["label"][4])
    scribbles = np.zeros(scan["label"].shape, np.uint8)
    for z in (0, 4):
        scribbles[z, ::3, ::3] = scan["label"][z, ::3, ::3] + 1  # 1 background, 2 dendrite
    tifffile.imwrite(folder / "scribbles.tif", scribbles)
    _tiny_model(folder / "m2d.safetensors", "unet2d")
    _tiny_model(folder / "m3d.safetensors", "unet3d")
    return folder, scan


def test_user_labels_whole_some_slices_and_scribbles(scan_files):
    folder, scan = scan_files
    whole = read_user_scan(folder / "img.tif", folder / "lab.tif")
    assert whole.labelled_slices == [0, 1, 2, 3, 4] and set(np.unique(whole.label)) <= {0, 1}
    some = read_user_scan(folder / "img.tif", folder / "lab.tif", slices=[1, 3])
    assert some.labelled_slices == [1, 3] and np.all(some.label[0] == UNLABELLED)
    np.testing.assert_array_equal(some.label[3], scan["label"][3])
    tifffile.imwrite(folder / "two.tif", scan["label"][[1, 3]])
    stack = read_user_scan(folder / "img.tif", folder / "two.tif", slices=[1, 3])
    np.testing.assert_array_equal(stack.label, some.label)
    scribbled = read_user_scan(folder / "img.tif", scribbles=folder / "scribbles.tif")
    assert scribbled.labelled_slices == [0, 4]
    assert (scribbled.label[0, ::3, ::3] == scan["label"][0, ::3, ::3]).all()
    assert (scribbled.label[0, 1::3] == UNLABELLED).all()
    flat = read_user_scan(folder / "img2d.tif", folder / "lab2d.tif")
    assert flat.was_2d and flat.image.shape == (1, 40, 40)
    with pytest.raises(InputError, match="lab.tif: scribbles must be 0"):
        read_user_scan(folder / "img.tif", scribbles=folder / "lab.tif")
    with pytest.raises(InputError, match="two.tif: labels of shape"):
        read_user_scan(folder / "img.tif", folder / "two.tif", slices=[1, 2, 3])


def _labelled(volume: LabelledVolume, z_offset: int = 0) -> set:
    return {
        (volume.name.split(":")[0], z + z_offset, y, x) for z, y, x in np.argwhere(volume.label != UNLABELLED)
    }


def test_validation_never_sees_training_voxels(scan_files):
    folder, _ = scan_files
    for scan in (
        read_user_scan(folder / "img.tif", folder / "lab.tif"),
        read_user_scan(folder / "img2d.tif", folder / "lab2d.tif"),
        read_user_scan(folder / "img.tif", scribbles=folder / "scribbles.tif"),
    ):
        train, val, how = split_labels([scan], depth=2)
        trained = _labelled(train[0])
        held = set()
        for v in val:
            z = int(v.name.split(":z")[1])
            offset = z - int(np.flatnonzero((v.label != UNLABELLED).any(axis=(1, 2)))[0])
            held |= _labelled(v, offset)
        known = _labelled(LabelledVolume(scan.name, scan.image, scan.label))
        assert held and trained and not held & trained and held | trained == known, how


def test_one_slice_holds_out_a_quarter_of_a_coarse_grid_and_finer_ones_for_sparse_labels():
    from dendriteseg.tune.labels import UserScan

    image = np.zeros((3, 160, 152), np.float32)
    label = np.full(image.shape, UNLABELLED, np.uint8)
    label[1] = (np.arange(152) % 7 == 0)[None, :]
    train, val, how = split_labels([UserScan("s", image, label, False)], depth=3)
    held = val[0].label[1] != UNLABELLED
    assert how["by"] == "pixels" and how["grid"] == 4 and held.sum() == how["validation_pixels"]
    tiles = (np.arange(160)[:, None] // 40) * 4 + np.arange(152)[None, :] // 38  # the 4 x 4 grid
    assert len(np.unique(tiles[held])) == 4  # a quarter of 16 tiles, each held out whole:
    assert all(held[(tiles == t) & (label[1] != UNLABELLED)].all() for t in np.unique(tiles[held]))
    assert not (train[0].label[1][held] != UNLABELLED).any()
    sparse = np.full(image.shape, UNLABELLED, np.uint8)
    sparse[1, 10:14, 10:14] = 1  # both in one tile of the 4 x 4 grid: it would hold out all or nothing
    sparse[1, 12:16, 22:26] = 0
    train, val, how = split_labels([UserScan("s", image, sparse, False)], depth=3)
    assert how["grid"] == 8 and how["validation_pixels"] == 16
    assert (train[0].label[1] != UNLABELLED).sum() == 16
    lonely = np.full(image.shape, UNLABELLED, np.uint8)
    lonely[1, 5, 5] = 1
    with pytest.raises(InputError, match="too few labelled pixels"):
        split_labels([UserScan("s", image, lonely, False)], depth=3)


def test_unlabelled_voxels_add_nothing_to_the_loss_and_are_skipped_in_scores():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 3, 8, 8, generator=gen)
    target = torch.randint(0, 2, (2, 3, 8, 8), generator=gen)
    partial = target.clone()
    partial[:, 1:] = UNLABELLED
    changed = logits.clone()
    changed[:, :, 1:] = -changed[:, :, 1:]  # what the unlabelled voxels see does not matter
    a = segmentation_loss(logits, partial, boundary_weight=1.0)
    assert torch.allclose(a, segmentation_loss(changed, partial, boundary_weight=1.0))
    assert not torch.allclose(a, segmentation_loss(changed, target, boundary_weight=1.0))
    assert float(segmentation_loss(logits, torch.full_like(target, UNLABELLED))) == 0.0
    truth = np.full((2, 4, 4), UNLABELLED, np.uint8)
    truth[0, :2] = [[1, 1, 0, 0], [0, 0, 0, 0]]
    pred = np.zeros((2, 4, 4), bool)
    pred[0, 0, :3] = True
    pred[1] = True  # unlabelled: never counted
    e = score_labelled(pred, truth)
    assert e.iou == pytest.approx(2 / 3) and e.accuracy == pytest.approx(7 / 8)
    assert np.isnan(e.bf1) and e.counts == {"labelled_voxels": 8, "whole_slices": 0}


def test_sparse_patches_are_centred_on_labelled_voxels():
    label = np.full((6, 40, 40), UNLABELLED, np.uint8)
    label[3, 30:, 30:] = 0
    sampler = PatchSampler(
        [LabelledVolume("v", np.zeros((6, 40, 40), np.float32), label)], (2, 8, 8), foreground=0.5, rng=0
    )
    for _ in range(30):
        _, patch = sampler.sample()
        assert (patch != UNLABELLED).any()


def _user_case(folder, arch, kind):
    """A user's scans (two 2D images with full labels, or 3D with scribbles in two slices) and the tiny
    model to start from."""
    if kind == "labels":
        scans = [read_user_scan(folder / f"img2d{n}.tif", folder / f"lab2d{n}.tif") for n in ("", "_b")]
    else:
        scans = [read_user_scan(folder / "img.tif", scribbles=folder / "scribbles.tif")]
    return scans, folder / ("m2d.safetensors" if arch == "unet2d" else "m3d.safetensors")


@pytest.mark.parametrize("arch,kind", [("unet2d", "labels"), ("unet3d", "scribbles")])
def test_finetune_searches_then_refits_the_winner_on_every_label(
    scan_files, tmp_path, arch, kind, monkeypatch
):
    import dendriteseg.tune.finetune as finetune

    monkeypatch.setattr(finetune, "_beats", lambda scores, before: True)  # every trial beats the start
    refits, train_on = [], finetune.train_on

    def spy(config, train, val, **kwargs):
        if not val:
            refits.append([v.label.copy() for v in train])
        return train_on(config, train, val, **kwargs)

    monkeypatch.setattr(finetune, "train_on", spy)
    folder, _ = scan_files
    scans, model = _user_case(folder, arch, kind)
    lines = []
    out = tmp_path / "tuned.safetensors"
    result = finetune_on_labels(
        scans, out, start=model, epochs=14, trials=3, budget="tiny", on_trial=lines.append, finish="refit"
    )
    assert len(lines) == 3 and lines[0].startswith("trial 0: lr 0.0003")  # no continuation trial
    _, info = load_model(out)
    record = info.provenance["finetune"]
    assert record["finish"] == "refit" and len(record["trials"]) == 3
    finished = [t for t in record["trials"] if t["state"] == "complete"]
    winner = max(finished, key=lambda t: t["score"])
    refit = record["on_every_label"]
    assert refit["trial"] == winner["number"] and result.every_label_epochs == refit["epochs"] >= 1
    assert refit["epochs"] <= refit["winner_best_epoch"] <= winner["epochs_run"]
    assert "refit on every label" in record["kept"] and result.after == winner["val"]
    trained = info.provenance["config"]
    assert trained["lr"] == pytest.approx(winner["params"]["lr"])  # the winner's settings
    assert info.provenance["val_entries"] == [] and info.provenance["train_entries"] == [
        s.name for s in scans
    ]
    assert len(info.provenance["history"]) == refit["epochs"]
    assert len(refits) == 1
    trained, given = refits[0][0][: scans[0].label.shape[0]], scans[0].label
    assert np.array_equal(trained[given != UNLABELLED], given[given != UNLABELLED])  # every label given


def test_finetune_all_labels_trains_the_winner_on_every_label_for_the_time_left(
    scan_files, tmp_path, monkeypatch
):
    import dendriteseg.tune.finetune as finetune
    import dendriteseg.tune.search as search

    calls, train_on, scored = [], finetune.train_on, iter(range(10**6))
    monkeypatch.setattr(search, "objective_value", lambda scores: next(scored))  # the latest trial is best
    monkeypatch.setattr(finetune, "_beats", lambda scores, before: True)  # and every trial beats the start
    monkeypatch.setattr(finetune, "ANCHOR_SURE", 0.5)  # every answer of the starting model is sure

    def spy(config, train, val, **kwargs):
        if not val:
            calls.append((config, [v.label.copy() for v in train], kwargs["parent"]))
        return train_on(config, train, val, **kwargs)

    monkeypatch.setattr(finetune, "train_on", spy)
    folder, _ = scan_files
    scans, model = _user_case(folder, "unet3d", "scribbles")
    lines = []
    out = tmp_path / "tuned.safetensors"
    result = finetune_on_labels(
        scans,
        out,
        start=model,
        epochs=14,
        trials=3,
        budget="tiny",
        on_trial=lines.append,
        finish="all-labels",
    )
    assert len(lines) == 3  # the search's trials only
    _, info = load_model(out)
    record = info.provenance["finetune"]
    selection = record["selections"][0]  # the last trial is best; the plain first one its rival
    assert (selection["best"], selection["plain"]) == (2, 0) and selection["tiles"] >= 1
    clear = selection["difference"] > selection["standard_error"]
    assert selection["chosen"] == (2 if clear else 0)
    winner = record["trials"][selection["chosen"]]
    step = record["on_every_label"]
    assert step["trial"] == winner["number"] and step["from"] == "the trial's best epoch"
    assert "then trained on every label" in record["kept"] and result.after == winner["val"]
    assert len(calls) == 1
    config, labels, parent = calls[0]
    assert parent.parent.name == f"trial_{winner['number']:04d}"  # from the winner's checkpoint
    assert config.lr == pytest.approx(winner["params"]["lr"]) and config.lr_schedule == "cosine"
    assert config.epochs >= step["epochs"] >= 1 and result.every_label_epochs == step["epochs"]
    # the budget counts every epoch trained: the search's trials, then the rest on every label
    assert sum(t["epochs_run"] for t in record["trials"]) + step["epochs"] == 14
    assert record["budget_epochs"] == 14 and record["budget_minutes"] is None
    assert len(info.provenance["history"]) == step["epochs"]
    strokes = scans[0].label
    trained = labels[0][: strokes.shape[0]]
    painted = strokes != UNLABELLED
    assert np.array_equal(trained[painted], strokes[painted])  # the held-out strokes too
    # the gaps of the scribbled slices filled by the starting model's answers (sure of all: ANCHOR_SURE)
    every = [LabelledVolume(s.name, s.image, s.label) for s in scans]
    answers = finetune.partial_slice_answers(scans, model)
    assert np.array_equal(trained, finetune.anchor_sparse_labels(every, scans, answers)[0].label)
    partial = sorted(answers[0])
    assert (trained[partial][~painted[partial]] != UNLABELLED).sum() > 0


@pytest.mark.parametrize("arch,kind", [("unet2d", "labels"), ("unet3d", "scribbles")])
def test_finetune_searches_keeps_the_best_on_validation_and_records_it(scan_files, tmp_path, arch, kind):
    folder, _ = scan_files
    scans, model = _user_case(folder, arch, kind)
    lines = []
    out = tmp_path / "tuned.safetensors"
    result = finetune_on_labels(
        scans, out, start=model, epochs=14, trials=3, budget="tiny", on_trial=lines.append, finish="continue"
    )
    # three search trials, then the winner trained on for the time left
    assert len(lines) == 4 and lines[0].startswith("trial 0: lr 0.0003")
    assert "continued" in lines[3]
    assert result.after["iou"] >= result.before["iou"]
    loaded, info = load_model(out)
    record = info.provenance["finetune"]
    assert info.architecture == arch and len(record["trials"]) == 4
    selection = record["selections"][0]
    winner = record["trials"][selection["chosen"]]  # the best, or plain within one SE
    best = max((t for t in record["trials"][:3] if t["score"] is not None), key=lambda t: t["score"])
    assert selection["best"] == best["number"]
    if best["number"] == 0:  # the plain trial is the best: no comparison to make
        assert "plain" not in selection and winner["number"] == 0
    else:  # the one-standard-error rule, as recorded
        clear = selection["difference"] > selection["standard_error"]
        assert selection["plain"] == 0 and winner["number"] == (best["number"] if clear else 0)
    assert record["trials"][3]["continues"] == winner["number"]
    assert record["trials"][3]["params"] == winner["params"]
    assert record["labelled_slices"][scans[0].name] == scans[0].labelled_slices
    assert record["kept"].startswith("the average") == bool(record["soup"])
    assert record["before"]["iou"] == pytest.approx(result.before["iou"])
    assert not list(tmp_path.glob(".*partial*"))


def test_one_labelled_slice_trains_the_plain_settings_without_a_search(scan_files, tmp_path):
    folder, _ = scan_files
    scans = [read_user_scan(folder / "img2d.tif", folder / "lab2d.tif")]  # one slice: tiles held out
    lines = []
    out = tmp_path / "one.safetensors"
    finetune_on_labels(
        scans,
        out,
        start=folder / "m2d.safetensors",
        epochs=12,
        trials=3,
        budget="tiny",
        on_trial=lines.append,
        finish="continue",
    )
    assert len(lines) == 2 and lines[0].startswith("trial 0: lr 0.0003") and "continued" in lines[1]
    record = load_model(out)[1].provenance["finetune"]
    assert record["split"]["by"] == "pixels" and record["settings_searched"] is False
    assert "anchored" not in record["split"]  # whole labels: nothing filled in
    assert "one labelled slice" in record["kept"]  # said whichever model was kept
    improved = record["after"]["iou"] > record["before"]["iou"] + 1e-9
    assert record["kept"].startswith("trial") == improved
    assert record["kept"].startswith("the starting model") == (not improved)


def test_the_search_leaves_its_share_of_the_budget_to_the_finish(scan_files, tmp_path, monkeypatch):
    import dendriteseg.tune.finetune as finetune

    monkeypatch.setattr(finetune, "_beats", lambda scores, before: True)  # the trial beats the start
    folder, _ = scan_files
    scans = [read_user_scan(folder / "img2d.tif", folder / "lab2d.tif")]  # one slice: the plain trial
    out = tmp_path / "one.safetensors"
    finetune_on_labels(scans, out, start=folder / "m2d.safetensors", epochs=2, budget="tiny")
    record = load_model(out)[1].provenance["finetune"]
    # the plain trial would train 2 epochs; the search has half the budget: 1, the finish the other
    assert [t["epochs_run"] for t in record["trials"]] == [1] and record["trials"][0]["params"]["epochs"] == 2
    assert record["on_every_label"]["epochs"] == 1 and "then trained on every label" in record["kept"]


def test_finetune_command_line(scan_files, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dendriteseg.cli import app

    folder, _ = scan_files
    out = tmp_path / "cli.safetensors"
    run = subprocess.run(  # the real command, in its own process
        [sys.executable, "-m", "dendriteseg", "finetune"]
        + [
            str(folder / "img.tif"),
            "--labels",
            str(folder / "lab.tif"),
            "--slices",
            "0,2,4",
            "--from",
            str(folder / "m3d.safetensors"),
            "--budget",
            "tiny",
            "--trials",
            "2",
            "--epochs",
            "8",  # the winner trains on every label for what the two trials leave
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "validation (held-out slices img.tif z2)" in run.stdout and out.is_file()
    assert load_model(out)[1].provenance["finetune"]["budget_epochs"] == 8

    def refused(*args: str) -> str:  # what the command says, in one line, when it refuses before any work
        result = CliRunner().invoke(app, ["finetune", *args])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1 and "trial" not in result.output
        return result.output

    image, labels = str(folder / "img.tif"), str(folder / "lab.tif")
    assert "lab2d.tif" in refused(image, "--labels", str(folder / "lab2d.tif"), "-o", str(out))
    both = refused(
        image, "--labels", labels, "--minutes", "1", "--epochs", "3", "-o", str(tmp_path / "b.safetensors")
    )
    assert "give one budget" in both
    monkeypatch.chdir(tmp_path)
    assert "x.pt: model files end in .safetensors" in refused(
        image, "--labels", labels, "--minutes", "5", "-o", "x.pt"
    )
    odd = refused(image, "--labels", labels, "--finish", "later", "-o", str(out))
    assert "finish: expected one of all-labels, continue, refit" in odd
    assert "dendriteseg train config.yaml --from MODEL" in refused("config.yaml")


def test_greedy_soup_averages_weights_and_keeps_only_what_helps(tmp_path):
    from dendriteseg.tune.soup import average_weights, greedy_soup

    paths = []
    for name, offset in (("a", 1.0), ("b", -1.0), ("c", 5.0)):  # best first by the score below
        path = _tiny_model(tmp_path / f"{name}.safetensors", "unet2d")
        model, info = load_model(path)
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(offset)
        save_model(path, model, info)
        paths.append(path)
    first = lambda m: next(m.parameters())  # noqa: E731
    soup = greedy_soup(paths, lambda m: -abs(float(first(m).detach().mean())))  # best: weights at zero
    assert soup.members == paths[:2] and soup.value == pytest.approx(0.0)  # c would move it off zero
    assert float(first(soup.model).detach().abs().max()) == pytest.approx(0.0)
    states = [
        {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(7)},
        {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(9)},
    ]
    mean = average_weights(states)
    assert torch.equal(mean["w"], torch.tensor([2.0, 4.0])) and int(mean["n"]) == 7


def test_tile_counts_and_the_one_standard_error_rule():
    from dendriteseg.tune.select import compare, tile_counts

    label = np.full((3, 40, 40), UNLABELLED, np.uint8)
    label[1] = 0
    label[1, :, :10] = 1  # dendrite in the left quarter
    volume = LabelledVolume("v", np.zeros(label.shape, np.float32), label)
    exact = np.zeros(label.shape, np.uint8)
    exact[1, :, :10] = 1
    exact[0] = exact[2] = 1  # unlabelled slices: never counted
    counts = tile_counts([exact], [volume])
    assert counts.shape == (16, 2) and counts[:, 0].sum() == counts[:, 1].sum() == 400
    sloppy = exact.copy()
    sloppy[1, :, 10:12] = 1  # 80 false positives, spread over the 4 tiles of the second column
    loose = tile_counts([sloppy], [volume])
    assert loose[:, 1].sum() == 480 and loose[:, 0].sum() == 400
    ahead = compare(counts, loose)
    assert ahead.difference == pytest.approx(1 - 400 / 480) and ahead.clear and ahead.tiles == 16
    assert not compare(loose, counts).clear
    lucky = exact.copy()
    lucky[1, :10, 10:14] = 1  # wrong, in one tile only
    one_tile = tile_counts([lucky], [volume])
    luckier = compare(one_tile, loose)  # ahead overall, far behind on one tile
    assert luckier.difference > 0 and not luckier.clear


def test_an_epoch_budget_counts_epochs_and_its_share_ends_sooner_on_the_same_clock():
    from dendriteseg.tune.search import Deadline

    budget = Deadline(epochs=10)
    search = budget.share(0.5)
    assert (budget.unit, budget.left(), search.left(), budget.seconds_left()) == ("epochs", 10, 5, None)
    for _ in range(5):
        search.tick()  # an epoch trained in the search is spent from the whole budget too
    assert search.passed() and not budget.passed() and budget.left() == 5 and budget.used() == 0.5
    for _ in range(5):
        budget.tick()
    assert budget.passed() and budget.used() == 1.0
    timed = Deadline(60)
    assert timed.unit == "seconds" and 59 < timed.seconds_left() <= 60 and 29 < timed.share(0.5).left() <= 30
    timed.tick()  # epochs cost nothing on a clock of seconds
    assert timed.left() > 59 and not Deadline(None).passed() and Deadline(None).used() == 0.0
    with pytest.raises(ValueError, match="not both"):
        Deadline(60, epochs=3)


def test_the_start_is_the_2d_default_for_one_labelled_slice_and_the_3d_one_for_more():
    from dendriteseg.models.files import WEIGHTS
    from dendriteseg.tune.finetune import starting_model
    from dendriteseg.tune.labels import UserScan

    image = np.zeros((5, 33, 34), np.float32)
    one, two = (np.full(image.shape, UNLABELLED, np.uint8) for _ in range(2))
    one[2] = 0
    two[1] = two[3] = 0
    assert starting_model([UserScan("a", image, one, False)], None) == WEIGHTS / "unet2d_default.safetensors"
    assert starting_model([UserScan("a", image, two, False)], None) == WEIGHTS / "unet3d_default.safetensors"
    both = [UserScan("a", image, one, False), UserScan("b", image, one, False)]  # two slices in all
    assert starting_model(both, None) == WEIGHTS / "unet3d_default.safetensors"
    flat = [UserScan("a", image[:1], one[2:3], True), UserScan("b", image[:1], one[2:3], True)]
    assert starting_model(flat, None) == WEIGHTS / "unet2d_default.safetensors"
    named = starting_model([UserScan("a", image, one, False)], "unet3d_default")
    assert named == WEIGHTS / "unet3d_default.safetensors"


def test_scribbled_slices_keep_the_starting_models_sure_answers_away_from_contradicting_strokes():
    from dendriteseg.tune.finetune import ANCHOR_CLEARANCE, anchor_sparse_labels, partial_slice_answers
    from dendriteseg.tune.labels import UserScan

    image = np.full((3, 45, 47), 0.8, np.float32)
    image[:, 10:20, 10:20] = 0.2  # dendrite the model finds
    image[:, 30:40, 30:40] = 0.2  # melt the model calls dendrite, and the user says is not

    def model(batch):  # dark is dendrite, surely
        return np.where(batch < 0.5, 10.0, -10.0).astype(np.float32)

    label = np.full(image.shape, UNLABELLED, np.uint8)
    label[1, 14:16, 14:16] = 1  # agrees with the model
    label[1, 34:36, 34:36] = 0  # contradicts it
    label[1, 2:4, 40:42] = 0  # held out for validation
    scans = [
        UserScan("s", image, label, False),
        UserScan("whole", image, np.where(image < 0.5, 1, 0).astype(np.uint8), False),
    ]
    train_label = label.copy()
    train_label[1, 2:4, 40:42] = UNLABELLED
    train = [LabelledVolume("s", image, train_label), LabelledVolume("whole", image, scans[1].label)]
    answers = partial_slice_answers(scans, model)
    assert [sorted(a) for a in answers] == [[1], []]  # only the slice labelled in part
    anchored, kept = anchor_sparse_labels(train, scans, answers)
    assert kept is train[1] and (anchored.label[[0, 2]] == UNLABELLED).all()  # only labelled slices
    filled = anchored.label[1]
    assert (filled[2:4, 40:42] == UNLABELLED).all() and filled[6, 41] == UNLABELLED  # nor what is held out
    assert (filled[14:16, 14:16] == 1).all() and (filled[34:36, 34:36] == 0).all()  # strokes kept
    assert (filled[10:20, 10:20] == 1).all() and filled[0, 0] == 0  # the model's sure answers
    near = np.zeros(filled.shape, bool)
    r = ANCHOR_CLEARANCE // 2  # a square well inside the clearance disc
    near[34 - r : 36 + r, 34 - r : 36 + r] = True
    near[34:36, 34:36] = False
    assert (filled[near] == UNLABELLED).all()  # not taught the answer the user contradicted
    assert filled[34 - 2 * ANCHOR_CLEARANCE, 34] == 0  # and sure of the rest beyond it
    every = [LabelledVolume(s.name, s.image, s.label) for s in scans]  # the finish's: nothing held out
    filled = anchor_sparse_labels(every, scans, answers)[0].label[1]
    assert (filled[2:4, 40:42] == 0).all() and filled[6, 41] == 0  # the stroke and its gaps filled too
    assert (filled[near] == UNLABELLED).all() and (filled[10:20, 10:20] == 1).all()


def test_a_trials_epochs_that_score_alike_report_the_latest_as_best():
    import optuna

    from dendriteseg.tune.search import Deadline, epoch_reporter

    trial = optuna.create_study(direction="maximize").ask()
    callback, best = epoch_reporter(trial, Deadline(epochs=5), prune=False)
    saturated = {"accuracy": 1.0, "iou": 1.0, "bf1": float("nan"), "bde": float("nan")}
    for epoch in (1, 2, 3):
        callback(epoch, {"val": dict(saturated)})
    callback(4, {"val": {**saturated, "iou": 0.9}})
    assert trial.user_attrs["best_epoch"] == 3 and trial.user_attrs["epochs_run"] == 4
    assert best[0] > 1.0


def test_a_trial_stops_at_the_epoch_end_nearest_its_deadline(monkeypatch):
    import optuna

    import dendriteseg.tune.search as search

    now = [0.0]  # the budget's clock, in seconds
    monkeypatch.setattr(search.time, "monotonic", lambda: now[0])
    deadline = search.Deadline(10.0)
    trial = optuna.create_study(direction="maximize").ask()
    callback, _ = search.epoch_reporter(trial, deadline, prune=False)
    scores = {"accuracy": 0.9, "iou": 0.5, "bf1": 0.5, "bde": 1.0}
    now[0] = 4.0
    callback(1, {"val": scores})  # 4 s an epoch, 6 s left: another fits
    now[0] = 7.5
    callback(2, {"val": scores})  # 3.5 s an epoch, 2.5 s left: the next ends nearer the deadline (at 11 s)
    now[0] = 9.5
    with pytest.raises(search.OutOfTime):  # 2 s an epoch, 0.5 s left: stopping here is nearer
        callback(3, {"val": scores})


def test_no_trial_starts_after_one_the_budget_stopped():
    import optuna

    from dendriteseg.tune.search import Deadline, run_trials

    study = optuna.create_study(direction="maximize")

    def objective(trial, device):
        trial.set_user_attr("stopped_by_budget", trial.number == 1)  # ended at the epoch end nearest it
        return 0.5

    run_trials(study, objective, trials=5, deadline=Deadline(3600.0), devices=["cpu"])
    assert len(study.trials) == 2
