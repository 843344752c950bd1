"""``dendriteseg reproduce``: the paper's study at the tiny budget, its table, report and resumption."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import subprocess

import pytest
from PIL import Image
from typer.testing import CliRunner

from dendriteseg.cli import app
from dendriteseg.reproduce.plan import ARCHITECTURES, BASELINES, TABLE2_COLUMNS, study_budget
from dendriteseg.reproduce.report import Summary, claims, diagnoses, group_record, noisy_label_record

runner = CliRunner()
METHODS = [*BASELINES, *(f"{a}_{k}" for a in ARCHITECTURES for k in ("noisy", "fixed", "searched"))]


def _cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "run"
    result = _cli("reproduce", out, "--budget", "tiny")
    assert result.exit_code == 0, result.output
    return out, result.output


def _table(out):
    with open(out / "table2.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_table2_has_a_row_per_method_and_seed(study):
    out, _ = study
    rows = _table(out)
    assert list(rows[0]) == list(TABLE2_COLUMNS)
    assert [r["method"] for r in rows] == METHODS
    for r in rows:
        assert r["hpo"] == ("yes" if r["method"].endswith("_searched") else "no")
        assert r["finetune"] == ("yes" if r["method"].endswith(("_searched", "_fixed")) else "no")
        assert r["architecture"] == ("" if r["method"] in BASELINES else r["method"].rpartition("_")[0])
        assert r["seed"] == "0"
        for key in ("accuracy", "iou", "bf1"):
            assert 0.0 <= float(r[key]) <= 1.0
        assert float(r["seconds"]) > 0 or r["method"] in ("otsu", "emmpm")


def test_searched_rows_train_the_fixed_rows_epochs(study):
    out, _ = study
    b = study_budget("tiny")
    for arch in ARCHITECTURES:
        step = json.loads((out / "steps" / f"{arch}_searched_s0.json").read_text())
        fixed = json.loads((out / "steps" / f"{arch}_fixed_s0.json").read_text())
        assert step["pretrain"]["search_epochs"] + step["pretrain"]["continued_epochs"] == b.pretrain_epochs
        assert step["finetune"]["search_epochs"] + step["finetune"]["continued_epochs"] == b.finetune_epochs
        assert fixed["epochs"] == {"pretrain": b.pretrain_epochs, "finetune": b.finetune_epochs}
        # the fixed runs' logs hold exactly those epochs
        for part, epochs in (("pretrain", b.pretrain_epochs), ("finetune", b.finetune_epochs)):
            log = (out / "work" / f"{arch}_fixed_s0" / part / "log.jsonl").read_text().splitlines()
            assert len(log) == epochs


def test_searched_step_2_keeps_the_step_1_model_unless_a_fine_tune_beats_it(study):
    out, _ = study
    for arch in ARCHITECTURES:
        step = json.loads((out / "steps" / f"{arch}_searched_s0.json").read_text())
        pre, ft = step["pretrain"], step["finetune"]
        assert ft.get("kept_parent", False) == (pre["score"] > ft["score"])
        assert (ft["model"] == pre["model"]) == ft.get("kept_parent", False)
        assert ft["score"] >= ft["trial_score"]


def test_rows_record_each_test_group_and_a_cnn_labels_what_it_finds_more_likely_than_not(study):
    import numpy as np

    from dendriteseg.reproduce.run import _Study

    out, _ = study
    run = _Study(out, study_budget("tiny"), 1, "test", None)
    groups = len(run.tests())
    for step in (out / "steps").glob("*_s0.json"):
        for row in json.loads(step.read_text())["rows"]:
            assert (
                len(row["group_iou"]) == groups and 0 <= min(row["group_iou"]) <= max(row["group_iou"]) <= 1
            )
    otsu = json.loads((out / "steps" / "baseline_otsu.json").read_text())["rows"][0]
    assert otsu["iou"] == pytest.approx(np.mean(otsu["group_iou"]))
    # a network 73 % sure of dendrite everywhere: p > 0.5 calls it all (segment's hysteresis, nothing)
    scores = run._score("unsure", lambda batch: np.ones_like(batch), seed=1)
    assert all(v.iou > 0 for v in scores.volumes)


def test_report_holds_both_tables_every_figure_and_the_claims(study):
    out, _ = study
    md = (out / "report.md").read_text()
    for heading in ("Table 2", "Table 1", "The paper's claims", "Figures", "Steps: time, hardware, command"):
        assert f"## {heading}" in md
    for method in METHODS:
        assert f"| {method} |" in md
    assert "99.84 / 95.56 / 98.59 / 0.58" in md  # the paper's 3D U-Net HPO+FT row beside ours
    assert "456x456x4" in md  # the paper's Table 1
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert {
        "overlays.png",
        "xz_sections.png",
        "learning_curves.png",
        "search_history.png",
        "importances.png",
    } <= set(figures)
    for name in figures:
        assert f"](figures/{name})" in md
    assert "Command: `dendriteseg reproduce" in md and "torch " in md
    assert md.count("Supported.") + md.count("Not supported.") + md.count("Ahead, but") >= 4


def test_html_embeds_every_figure_as_a_png(study):
    out, _ = study
    page = (out / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(list((out / "figures").glob("*.png")))
    for data in images:
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            assert im.size[0] > 100 and im.size[1] > 50
    assert "<table>" in page and 'src="figures/' not in page  # self-contained


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (Debian package)")
def test_html_renders_in_headless_chromium_with_every_image_shown(study, tmp_path):
    out, _ = study
    dom = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            (out / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    shown = re.search(r'data-images-shown="(\d+)"', dom)
    total = re.search(r'data-images="(\d+)"', dom)
    assert shown and total, dom[:500]
    assert int(total.group(1)) == len(list((out / "figures").glob("*.png"))) > 0
    assert shown.group(1) == total.group(1)


def test_a_rerun_resumes_and_a_lost_step_alone_runs_again(study):
    out, _ = study
    before = _table(out)
    lost = out / "steps" / "unet3d_fixed_s0.json"
    lost.unlink()
    result = _cli("reproduce", out, "--budget", "tiny")
    assert result.exit_code == 0, result.output
    assert "unet3d_fixed_s0: " in result.output and "unet3d_fixed_s0: done before" not in result.output
    assert "unet2d_fixed_s0: done before" in result.output
    assert lost.exists()
    after = _table(out)
    assert [r["method"] for r in after] == [r["method"] for r in before]
    # the lost step's training runs were finished: it reads them back, same model, same scores
    row = next(r for r in after if r["method"] == "unet3d_fixed")
    assert row["iou"] == next(r for r in before if r["method"] == "unet3d_fixed")["iou"]


def test_refusals_are_one_line(tmp_path):
    result = _cli("reproduce", tmp_path / "a", "--budget", "huge")
    assert result.exit_code == 2 and "--budget: unknown 'huge'" in result.output
    assert "Traceback" not in result.output
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    result = _cli("reproduce", busy, "--budget", "tiny")
    assert result.exit_code == 2 and "not empty and not a study's folder" in result.output
    assert (busy / "notes.txt").read_text() == "mine" and len(list(busy.iterdir())) == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / "study.json").write_text(json.dumps({"budget": "cpu", "seeds": 3}))
    result = _cli("reproduce", other, "--budget", "tiny")
    assert result.exit_code == 2 and "holds a run with --budget cpu" in result.output
    result = _cli("reproduce", tmp_path / "b", "--budget", "tiny", "--seeds", "0")
    assert result.exit_code == 2 and "--seeds: a count from 1 to 20" in result.output


def _summary(method, iou, bde, n=3, sd=0.01):
    mean = {"accuracy": 0.9, "iou": iou, "bf1": 0.9, "bde": bde, "seconds": 1.0}
    return Summary(method, "no", "no", n, mean, {k: sd for k in mean})


def test_claims_weigh_differences_against_the_spread_over_seeds():
    rows = {
        "otsu": _summary("otsu", 0.5, 3.0),
        "unet2d_noisy": _summary("unet2d_noisy", 0.7, 2.0),
        "unet2d_fixed": _summary("unet2d_fixed", 0.80, 1.5),
        "unet2d_searched": _summary("unet2d_searched", 0.805, 1.4),  # ahead by less than the spread
        "unet3d_noisy": _summary("unet3d_noisy", 0.7, float("nan")),  # found nothing: BDE undefined
        "unet3d_searched": _summary("unet3d_searched", 0.9, 1.0),
    }
    found = {text: ok for text, ok, _ in claims(rows)}
    assert (
        found["Every CNN segments better than every classical method (IoU and BDE)."] is False
    )  # the NaN BDE
    assert (
        found[
            "2D U-Net: the search earns its time: searched beats fixed settings, both fine-tuned on the "
            "exact labels, at the same epochs."
        ]
        is False
    )
    assert (
        found[
            "3D U-Net: the search and fine-tuning beat the untuned model trained on noisy labels "
            "(the paper's comparison)."
        ]
        is True
    )
    assert found["The best 3D model places boundaries better than the 2D U-Net (BDE)."] is True
    rows["unet3d_noisy"] = _summary("unet3d_noisy", 0.7, 2.5)
    assert claims(rows)[0][1] is True
    one_seed = {k: _summary(v.method, v.mean["iou"], v.mean["bde"], n=1, sd=0.0) for k, v in rows.items()}
    found = {text: ok for text, ok, _ in claims(one_seed)}
    assert (
        found[
            "3D U-Net: the search and fine-tuning beat the untuned model trained on noisy labels "
            "(the paper's comparison)."
        ]
        is None
    )  # ahead, but no spread to weigh it against


def test_diagnoses_name_a_fine_tune_that_hurt_and_a_wide_spread():
    rows = {
        "unet3d_noisy": _summary("unet3d_noisy", 0.70, 2.0),
        "unet3d_fixed": _summary("unet3d_fixed", 0.60, 2.5, sd=0.08),
        "unet3d_searched": _summary("unet3d_searched", 0.72, 1.9),
    }
    steps = [{"kind": "searched", "rows": [{"architecture": "unet3d"}], "finetune": {"params": {"lr": 3e-5}}}]
    found = diagnoses(rows, steps, study_budget("cpu"))
    assert len(found) == 2
    assert "3D U-Net: fine-tuning on the exact labels at the fixed settings (lr 0.0005" in found[0]
    assert "IoU 0.6000 vs 0.7000" in found[0] and "3e-05 to 3e-05" in found[0]
    assert "widest unet3d_fixed 0.080" in found[1]
    rows["unet3d_fixed"] = _summary("unet3d_fixed", 0.75, 1.8)
    assert diagnoses(rows, steps, study_budget("cpu")) == []


def test_diagnoses_say_how_close_the_noisy_labels_are_and_when_step_1_stayed():
    rows = {
        "unet3d_noisy": _summary("unet3d_noisy", 0.70, 2.0),
        "unet3d_fixed": _summary("unet3d_fixed", 0.60, 2.5),
        "unet3d_searched": _summary("unet3d_searched", 0.71, 1.9),
    }
    kept = {"params": {"lr": 3e-5}, "kept_parent": True}
    steps = [
        {"kind": "searched", "rows": [{"architecture": "unet3d"}], "finetune": kept},
        {"kind": "searched", "rows": [{"architecture": "unet3d"}], "finetune": {"params": {"lr": 1e-4}}},
    ]
    labels = {"iou": 0.9, "noisy_volumes": 9, "exact_groups": 6}
    found = diagnoses(rows, steps, study_budget("cpu"), labels)
    assert "at IoU 0.90 on average (9 noisy training volumes, 6 exact training groups)" in found[1]
    assert "3D U-Net, searched: in 1 of 2 run(s) no step-2 trial beat the step-1 model" in found[2]
    assert "Labels this close" in found[1]
    far = diagnoses(rows, steps, study_budget("cpu"), {**labels, "iou": 0.78})
    assert "at IoU 0.78" in far[1] and "Labels this close" not in far[1]
    rows["unet3d_fixed"] = _summary("unet3d_fixed", 0.75, 1.8)  # fine-tuning helped: nothing on the labels
    assert not any(
        "noisy training labels" in text for text in diagnoses(rows, steps, study_budget("cpu"), labels)
    )


def test_diagnoses_say_where_cnn_rows_lose_whole_test_groups():
    rows = {
        "otsu": _summary("otsu", 0.55, 3.0),
        "unet2d_noisy": _summary("unet2d_noisy", 0.45, 2.0),
        "unet2d_searched": _summary("unet2d_searched", 0.70, 1.5),
    }
    table = [
        {"method": "otsu", "architecture": "", "group_iou": [0.6, 0.5, 0.55]},
        {"method": "kmeans", "architecture": "", "group_iou": [0.5, 0.6, 0.5]},
        {"method": "unet2d_noisy", "architecture": "unet2d", "group_iou": [0.7, 0.0, 0.65]},
        {"method": "unet2d_searched", "architecture": "unet2d", "group_iou": [0.8, 0.62, 0.55]},
    ]
    record = group_record(table)
    assert record == {
        "groups": 3,
        "cnn_scores": 6,
        "cnn_missed": 1,
        "cnn_missed_groups": 1,
        "base_scores": 6,
        "base_missed": 0,
        "cnn_found": 5,
        "cnn_found_beat_base": 4,  # 0.7, 0.65, 0.8, 0.62 above the best baseline of their group; 0.55 ties
    }
    steps = [{"kind": "fixed", "rows": table}]
    found = diagnoses(rows, steps, study_budget("cpu"))
    assert found[0].startswith("Behind the best classical method (IoU 0.5500, otsu; BDE 3.00 px, otsu): ")
    assert "unet2d_noisy (IoU 0.4500, BDE 2.00 px)." in found[0] and "Each is a fine-tune" not in found[0]
    assert "found next to nothing (IoU under 0.05) in 1 of its 6 group scores" in found[1]
    assert "in 4 of 5 scores" in found[1]
    table[2]["group_iou"][1] = 0.3  # no group missed: the sentence has nothing to explain
    assert not any("Per test group" in text for text in diagnoses(rows, steps, study_budget("cpu")))
    table[2]["group_iou"][1] = 0.0
    rows["unet2d_noisy"] = _summary("unet2d_noisy", 0.60, 2.0)  # every CNN above Otsu: nothing to explain
    assert not any("Per test group" in text for text in diagnoses(rows, steps, study_budget("cpu")))
    assert (
        group_record([{**r, "group_iou": r["group_iou"][:2]} if r["method"] == "otsu" else r for r in table])
        is None
    )


def test_diagnoses_say_when_the_cnn_rows_behind_the_classical_ones_are_fine_tunes_that_hurt():
    rows = {
        "otsu": _summary("otsu", 0.55, 3.0),
        "unet3d_noisy": _summary("unet3d_noisy", 0.62, 2.4),
        "unet3d_fixed": _summary("unet3d_fixed", 0.50, 3.2),
        "unet3d_searched": _summary("unet3d_searched", 0.63, 2.5),
    }
    found = diagnoses(rows, [], study_budget("cpu"))
    assert found[0] == (
        "Behind the best classical method (IoU 0.5500, otsu; BDE 3.00 px, otsu): unet3d_fixed (IoU 0.5000, "
        "BDE 3.20 px). Each is a fine-tune at the fixed settings that left its model worse than before it "
        "(below)."
    )
    assert "3D U-Net: fine-tuning on the exact labels at the fixed settings" in found[1]
    rows["unet3d_noisy"] = _summary(
        "unet3d_noisy", 0.45, 2.4
    )  # fine-tuning helped; the untuned row is behind
    assert "Each is a fine-tune" not in diagnoses(rows, [], study_budget("cpu"))[0]


def test_noisy_label_record_reads_the_dataset_it_was_built_with(study):
    out, _ = study
    record = noisy_label_record(out / "data" / "manifest.json")
    assert 0.3 < record["iou"] < 1.0
    assert record["noisy_volumes"] >= 1 and record["exact_groups"] == 6
    assert noisy_label_record(out / "missing.json") is None
    md = (out / "report.md").read_text()
    assert ("noisy training labels agree with the exact ones" in md) == ("made it worse than no" in md)


def test_a_given_dataset_is_checked_not_timed(study, tmp_path):
    from dendriteseg.reproduce import reproduce

    out, _ = study
    lines = []

    def first_line_only(line):
        lines.append(line)
        raise KeyboardInterrupt  # stop after the dataset step: what it printed is what is tested

    with pytest.raises(KeyboardInterrupt):
        reproduce(
            tmp_path / "run", budget="tiny", data=out / "data" / "manifest.json", on_progress=first_line_only
        )
    assert re.fullmatch(r"\[1/\d+\] dataset: \d+ s", lines[0])  # no estimate from a step that trained nothing
    assert json.loads((tmp_path / "run" / "steps" / "dataset.json").read_text())["preset"] is None
