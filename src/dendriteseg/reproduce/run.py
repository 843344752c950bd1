"""Run the paper's study end to end, one step at a time, each step's result one file.

``OUT/data/``: the synthetic benchmark dataset (noisy-label scans and the
exact groups); ``OUT/work/``: every training run and search (each resumes
where it was killed); ``OUT/steps/<step>.json``: a finished step's rows,
settings and times (written atomically: a step with its file is done and is
not run again); ``OUT/labels/``: each method's labels of the first test
group (seed 0), for the figures.

Rows per seed and architecture: ``<arch>_noisy`` (trained on the noisy
labels only, fixed settings: the paper's untuned rows; the 2D one stands
in for its 2D SegNet), ``<arch>_fixed`` (the same model fine-tuned on the
exact labels at fixed settings) and ``<arch>_searched`` (the two-step
search: step 1 on the noisy labels, step 2 on the exact ones). The searched
rows train exactly as many epochs as the fixed ones, step by step: every
trial's epochs count, pruned ones included; a share of each step goes to
the search's trials (ASHA), the rest to training the winner on from its
best epoch, with its settings. Step 2 may also choose not to fine-tune: where
nothing it trained beats the step-1 model on the exact validation groups,
the step-1 model stays.

A CNN's labels are its own (p > 0.5, ``STUDY_HYSTERESIS``, one pass without
test-time flips): the paper's argmax, and the rule by which validation, and so the search and step 2's
choice, judge; not ``segment``'s default hysteresis, which leaves out every
piece without a sure voxel, and so whole test groups of a model trained for
minutes. Each row also records its IoU per test group (``group_iou``; not a
column of the table).
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dendriteseg.errors import InputError
from dendriteseg.io.outputs import write_text_atomic
from dendriteseg.reproduce.plan import BASELINES, Step, StudyBudget, plan_steps, study_budget

STEPS_DIR, WORK_DIR, LABELS_DIR, DATA_DIR = "steps", "work", "labels", "data"
STUDY_HYSTERESIS = 0.5  # a CNN's labels: p > 0.5, as validation (and so the search) judges them


@dataclass
class StudyResult:
    """A finished run: its table's rows and the report's files."""

    out: Path
    rows: list[dict[str, Any]]
    files: list[Path]


class _Study:
    """The run's folder, budget and seeds, and what each kind of step does."""

    def __init__(self, out: Path, budget: StudyBudget, seeds: int, command: str, data: Path | None):
        self.out, self.budget, self.seeds, self.command, self.data = out, budget, seeds, command, data
        self.manifest = data if data is not None else out.resolve() / DATA_DIR / "manifest.json"
        self._tests: list | None = None

    # ------------------------------------------------------------------ data
    def tests(self) -> list:
        """The exact test groups, normalised (what every method is scored on)."""
        from dendriteseg.data import LabelledVolume, read_manifest, select

        if self._tests is None:
            entries = select(read_manifest(self.manifest), quality="exact", split="test")
            self._tests = [LabelledVolume.from_entry(e) for e in entries]
        return self._tests

    def exact_train(self) -> tuple[np.ndarray, np.ndarray]:
        from dendriteseg.data import LabelledVolume, read_manifest, select

        volumes = [
            LabelledVolume.from_entry(e)
            for e in select(read_manifest(self.manifest), quality="exact", split="train")
        ]
        return np.concatenate([v.image for v in volumes]), np.concatenate([v.label for v in volumes])

    def keep_labels(self, method: str, labels: np.ndarray) -> None:
        folder = self.out / LABELS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        temp = folder / f".{method}.partial.npy"  # np.save adds .npy to other names
        np.save(temp, np.asarray(labels, np.uint8))
        temp.replace(folder / f"{method}.npy")

    # ----------------------------------------------------------------- steps
    def run_step(self, step: Step) -> dict[str, Any]:
        start = time.perf_counter()
        if step.kind == "dataset":
            result = self.dataset()
        elif step.kind == "baseline":
            result = self.baseline(step.name.removeprefix("baseline_"))
        elif step.kind == "fixed":
            result = self.fixed(step.architecture, step.seed)
        elif step.kind == "searched":
            result = self.searched(step.architecture, step.seed)
        else:
            from dendriteseg.reproduce.figures import draw_figures

            result = {"files": [str(p.relative_to(self.out)) for p in draw_figures(self)]}
        return {
            "step": step.name,
            "kind": step.kind,
            "seconds": time.perf_counter() - start,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": self.command,
            "hardware": hardware(),
            **result,
        }

    def dataset(self) -> dict[str, Any]:
        from dendriteseg.data import read_manifest, select
        from dendriteseg.synth.dataset import build_dataset

        if self.data is None:
            build_dataset(self.out / DATA_DIR, preset=self.budget.preset, seed=0)
            return {"manifest": f"{DATA_DIR}/manifest.json", "preset": self.budget.preset}
        entries = read_manifest(self.data)
        for quality, split in (("noisy", "train"), ("exact", "train"), ("exact", "val"), ("exact", "test")):
            if not select(entries, quality=quality, split=split):
                raise InputError(
                    f"{self.data}: the study needs {quality} {split} entries; the manifest has none"
                )
        return {"manifest": str(self.data), "preset": None}

    def baseline(self, name: str) -> dict[str, Any]:
        from dendriteseg.baselines import segment_with_baseline
        from dendriteseg.scoring import score_predictions

        start = time.perf_counter()
        tests = self.tests()
        if name == "forest":  # learns from the exact training groups once, then labels every test group
            image, label = self.exact_train()
            stack = np.concatenate([v.image for v in tests])
            labels = segment_with_baseline(name, stack, train_image=image, train_label=label, rng=0)
            predictions = np.split(labels, np.cumsum([v.image.shape[0] for v in tests])[:-1])
        else:  # the unsupervised methods fit each test group itself
            predictions = [segment_with_baseline(name, v.image, rng=0) for v in tests]
        seconds = time.perf_counter() - start
        scores = score_predictions(zip(predictions, (v.label for v in tests), strict=True))
        self.keep_labels(name, predictions[0])
        row = _row(name, None, hpo=False, finetune=False, seed=0, scores=scores, seconds=seconds)
        return {"rows": [row]}

    def _config(self, arch: str, seed: int, out: Path, **changes: Any) -> Any:
        from dendriteseg.train.config import config_from_dict

        fixed = self.budget.fixed[arch]
        depth = 1 if arch == "unet2d" else 4
        config = config_from_dict(
            {
                "data": str(self.manifest),
                "model": arch,
                "model_args": dict(fixed.model_args),
                "patch": [depth, fixed.width, fixed.width],
                "batch": fixed.batch,
                "steps_per_epoch": self.budget.steps_per_epoch,
                "foreground": 0.6,
                "boundary_weight": 1.0,
                "seed": seed,
                "precision": "fp32",
                "out": str(out),
            }
        )
        return config.replace(**changes)

    def _score(self, method: str, model: Path, seed: int) -> Any:
        from dendriteseg.scoring import score_model

        scores = score_model(
            model,
            self.tests(),
            window=(0.0, 1.0),
            precision="fp32",
            hysteresis=STUDY_HYSTERESIS,
            tta=False,
            keep_labels=seed == 0,
        )
        if seed == 0:
            self.keep_labels(method, scores.labels[0])
        return scores

    def fixed(self, arch: str, seed: int) -> dict[str, Any]:
        """Untuned: step 1 on the noisy labels, then step 2 on the exact ones, at fixed settings."""
        from dendriteseg.train import train

        b, fixed, work = self.budget, self.budget.fixed[arch], self.out / WORK_DIR / f"{arch}_fixed_s{seed}"
        start = time.perf_counter()
        models, pre_seconds = {}, 0.0
        for part, lr, epochs, quality in (
            ("pretrain", fixed.pretrain_lr, b.pretrain_epochs, "noisy"),
            ("finetune", fixed.finetune_lr, b.finetune_epochs, "exact"),
        ):
            config = self._config(arch, seed, work / part, lr=lr, epochs=epochs, train_quality=quality)
            models[part] = train(config, parent=models.get("pretrain"))
            pre_seconds = pre_seconds or time.perf_counter() - start
        pre, ft = models["pretrain"], models["finetune"]
        seconds = time.perf_counter() - start
        rows = [
            _row(
                f"{arch}_{name}",
                arch,
                hpo=False,
                finetune=finetuned,
                seed=seed,
                scores=self._score(f"{arch}_{name}", model, seed),
                seconds=took,
            )
            for name, model, finetuned, took in (
                ("noisy", pre, False, pre_seconds),
                ("fixed", ft, True, seconds),
            )
        ]
        settings = {
            "patch": f"{fixed.width}x{fixed.width}x{1 if arch == 'unet2d' else 4}",
            "pretrain_lr": fixed.pretrain_lr,
            "pretrain_epochs": b.pretrain_epochs,
            "finetune_lr": fixed.finetune_lr,
            "finetune_epochs": b.finetune_epochs,
            "batch": fixed.batch,
        }
        return {
            "rows": rows,
            "settings": settings,
            "epochs": {"pretrain": b.pretrain_epochs, "finetune": b.finetune_epochs},
        }

    def searched(self, arch: str, seed: int) -> dict[str, Any]:
        """The two-step search at the fixed rows' epochs: each step a search, then its winner trained on."""
        b, work = self.budget, self.out / WORK_DIR / f"{arch}_searched_s{seed}"
        start = time.perf_counter()
        base = self._config(arch, seed, work)
        pre = _search_step("pretrain", base, work, None, b.pretrain_epochs, b, seed)
        ft = _search_step(
            "finetune", base, work, work / pre["model"], b.finetune_epochs, b, seed, keep=_step_score(pre)
        )
        seconds = time.perf_counter() - start
        scores = self._score(f"{arch}_searched", work / ft["model"], seed)
        row = _row(
            f"{arch}_searched", arch, hpo=True, finetune=True, seed=seed, scores=scores, seconds=seconds
        )
        for part in (pre, ft):
            part["model"] = str(Path(WORK_DIR) / work.name / part["model"])
        return {"rows": [row], "pretrain": pre, "finetune": ft, "work": str(Path(WORK_DIR) / work.name)}


def _row(
    method: str, arch: str | None, *, hpo: bool, finetune: bool, seed: int, scores: Any, seconds: float
) -> dict:
    """A table row from ``scores`` (:class:`~dendriteseg.scoring.ModelScores`: the mean over the test
    groups, and each group's IoU)."""
    return {
        "method": method,
        "architecture": arch or "",
        "hpo": "yes" if hpo else "no",
        "finetune": "yes" if finetune else "no",
        "seed": seed,
        **{k: float(scores.mean[k]) for k in ("accuracy", "iou", "bf1", "bde")},
        "seconds": round(float(seconds), 2),
        "group_iou": [float(v.iou) for v in scores.volumes],
    }


def _epochs_used(study: Any) -> int:
    from dendriteseg.tune.search import DONE

    return sum(
        int(t.user_attrs.get("epochs_run", len(t.intermediate_values))) for t in study.get_trials(states=DONE)
    )


def _search_step(
    step: str,
    base: Any,
    work: Path,
    parent: Path | None,
    epochs: int,
    budget: StudyBudget,
    seed: int,
    keep: float | None = None,
) -> dict[str, Any]:
    """One step of the search in ``work``: trials for the budget's share of ``epochs``, then the winner
    trained on (from its best epoch, with its settings) for the epochs left; returns what it chose.

    ``keep``: the parent's validation score. Not fine-tuning is one of the step's choices: where no
    trial nor the continuation beats the parent on validation, the parent stays the model
    (``kept_parent``), as ``dendriteseg finetune`` keeps its starting model."""
    from dendriteseg.train import load_config, train
    from dendriteseg.tune.hpo import export_best, search
    from dendriteseg.tune.search import open_study

    trials = replace(budget.trials, steps_per_epoch=budget.steps_per_epoch)
    share = max(1, min(epochs, round(epochs * budget.search_share)))
    study = open_study(work, step, seed=seed)
    left = share - _epochs_used(study)
    if left > 0:
        result = search(step, base, work, parent=parent, trials=1000, budget=trials, epochs=left, seed=seed)
    else:
        result = export_best(study, work / step / "best.safetensors", work)
    if result.best_model is None:
        raise InputError(f"{work}: the {step} search finished no trial")
    study = open_study(work, step, seed=seed)
    used, best = _epochs_used(study), study.best_trial
    chosen = {
        "params": dict(best.params),
        "trial": best.number,
        "trial_score": float(best.value),
        "trials": len(study.get_trials()),
        "search_epochs": used,
        "continued_epochs": 0,
        "model": str(result.best_model.relative_to(work)),
    }
    rest = epochs - used
    if rest > 0:
        trial_out = work / step / f"trial_{best.number:04d}"
        config = load_config(trial_out / "config.yaml").replace(
            out=str(work / f"{step}_winner"), epochs=rest, warmup_steps=0
        )
        model = train(config, parent=result.best_model)
        chosen["continued_epochs"] = rest
        score = _best_score(work / f"{step}_winner")
        chosen["continued_score"] = score
        if score >= best.value:  # else the trial's best epoch stays the step's model
            chosen["model"] = str(Path(model).relative_to(work))
    chosen["score"] = max(float(best.value), chosen.get("continued_score", -math.inf))
    if parent is not None and keep is not None and keep > chosen["score"]:
        chosen["kept_parent"] = True
        chosen["model"] = str(parent.relative_to(work))
    return chosen


def _step_score(chosen: dict[str, Any]) -> float:
    """The validation score of a step's model (results written before ``score`` was kept: the trial's)."""
    return float(chosen.get("score", chosen["trial_score"]))


def _best_score(run: Path) -> float:
    """The best validation score (as the search ranks trials) of a training run, from its log."""
    from dendriteseg.tune.search import objective_value

    lines = (run / "log.jsonl").read_text().splitlines()
    return max(
        (objective_value(json.loads(line)["val"]) for line in lines if line.strip()), default=-math.inf
    )


def hardware() -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": _cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "python": platform.python_version(),
    }


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("dendriteseg", "torch", "numpy", "scipy", "scikit-image", "optuna", "trimesh", "matplotlib"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _check_out(out: Path, budget_name: str, seeds: int, data: Path | None) -> None:
    """A folder of an earlier run resumes only with the same budget (its rows would mix otherwise)."""
    settings = out / "study.json"
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if settings.exists():
        saved = json.loads(settings.read_text())
        if saved.get("budget") != budget_name:
            raise InputError(
                f"{out}: holds a run with --budget {saved.get('budget')}; "
                f"use another folder for --budget {budget_name}"
            )
        if saved.get("data") != (str(data) if data else None):
            raise InputError(
                f"{out}: holds a run on {saved.get('data') or 'its own synthetic data'}; use another folder"
            )
    elif out.exists() and any(out.iterdir()):
        raise InputError(f"{out}: not empty and not a study's folder; name a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    saved = {"budget": budget_name, "seeds": seeds, "data": str(data) if data else None}
    write_text_atomic(settings, json.dumps(saved, indent=1) + "\n")


def reproduce(
    out: str | Path,
    *,
    budget: str = "cpu",
    seeds: int | None = None,
    data: str | Path | None = None,
    on_progress: Callable[[str], None] | None = None,
    command: str | None = None,
) -> StudyResult:
    """Run the study into ``out`` (or resume it there) and write its table and report.

    Parameters
    ----------
    out : path
        A new or empty folder, or the folder of a killed run of the same budget (it resumes).
    budget : {"tiny", "cpu", "gpu"}
        ``tiny``: a smoke run of minutes; ``cpu``: about an hour on 2 CPU cores; ``gpu``: the paper's sizes.
    seeds : int, optional
        Seeds per CNN row (default: the budget's, 1 for tiny, 3 otherwise). A rerun with more seeds adds them.
    data : path, optional
        A dataset manifest (noisy training scans, exact training, validation and test groups) to run
        the study on instead of the budget's synthetic dataset.
    on_progress : callable(str), optional
        Called with a line per step (what it did, how long, about how long is left).
    """
    from dendriteseg.reproduce.report import write_report

    b = study_budget(budget)
    seeds = b.seeds if seeds is None else seeds
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= 20:
        raise InputError(f"--seeds: a count from 1 to 20, got {seeds!r}")
    out = Path(out)
    if data is not None:
        data = Path(data).resolve()
        if not data.is_file():
            raise InputError(f"{data}: no such dataset manifest")
    _check_out(out, budget, seeds, data)
    command = command or f"dendriteseg reproduce {out} --budget {budget} --seeds {seeds}"
    study = _Study(out, b, seeds, command, data)
    steps = plan_steps(b, seeds)
    (out / STEPS_DIR).mkdir(exist_ok=True)
    say = on_progress or (lambda line: None)
    results, spent, cost_done = [], 0.0, 0.0
    for i, step in enumerate(steps, 1):
        path = out / STEPS_DIR / f"{step.name}.json"
        if path.exists():
            results.append(json.loads(path.read_text()))
            say(f"[{i}/{len(steps)}] {step.name}: done before")
            continue
        result = study.run_step(step)
        write_text_atomic(path, json.dumps(result, indent=1) + "\n")
        results.append(result)
        if step.kind != "dataset" or data is None:  # a dataset given is only checked: no rate to learn from
            spent, cost_done = spent + result["seconds"], cost_done + step.cost
        left = (
            f"; about {_duration(sum(s.cost for s in steps[i:]) * spent / cost_done)} left"
            if cost_done
            else ""
        )
        say(f"[{i}/{len(steps)}] {step.name}: {result['seconds']:.0f} s{left}")
    files = write_report(out, results, budget=budget, seeds=seeds, versions=versions())
    rows = [row for r in results for row in r.get("rows", [])]
    return StudyResult(out, rows, files)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


__all__ = ["BASELINES", "StudyResult", "reproduce"]
