"""The paper's two-step hyperparameter search on manifest datasets.

``pretrain``: trials train from scratch on the noisy labels over the step-1
space (:func:`~dendriteseg.tune.spaces.pretrain_space`); ``finetune``:
trials continue a model on the exact labels over the step-2 space, patch
and batch fixed as the model was trained. Each trial is scored on the exact
validation split after every epoch; ASHA stops the weak ones. Everything
lives in the run folder: ``study.journal`` (both studies; a killed search
started again keeps its finished trials and runs only the missing ones),
``<step>/trial_NNNN/`` (each trial's training run) and
``<step>/best.safetensors`` (the best trial's best epoch, an ordinary
model file). With a Dask scheduler address, each of its workers runs
trials into the same study.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna

from dendriteseg.errors import InputError, require
from dendriteseg.models import spec_for
from dendriteseg.models.files import read_model_info
from dendriteseg.train.config import TrainConfig, config_from_dict, config_to_dict
from dendriteseg.train.run import train
from dendriteseg.tune.search import Deadline, finished, open_study, run_trials, train_trial
from dendriteseg.tune.spaces import Budget, finetune_space, pretrain_space
from dendriteseg.tune.spaces import budget as budget_named

STEPS = ("pretrain", "finetune")


@dataclass
class SearchResult:
    """A finished (or stopped) search: the best model file and the study."""

    best_model: Path | None
    best_value: float
    best_params: dict[str, Any]
    trials: int
    pruned: int


def _parent_settings(parent: Path) -> dict[str, Any]:
    """Patch and batch the parent model was trained with (step 2 keeps them)."""
    config = read_model_info(parent).provenance.get("config", {})
    out = {}
    if "patch" in config:
        out["patch"] = tuple(config["patch"])
    if "batch" in config:
        out["batch"] = int(config["batch"])
    return out


def make_objective(
    step: str, base: TrainConfig, run: Path, budget: str | Budget, parent: Path | None, deadline: Deadline
) -> Callable[[optuna.Trial, str], float]:
    """The trial function of a step: settings from its space, training, per-epoch reports."""
    b = budget_named(budget)
    fixed = _parent_settings(parent) if parent is not None else {}

    def objective(trial: optuna.Trial, device: str) -> float:
        if step == "pretrain":
            settings = pretrain_space(trial, b, spec_for(base.model).dims)
        else:
            settings = {**finetune_space(trial, b), **fixed}
        out = run / step / f"trial_{trial.number:04d}"
        config = base.replace(
            **settings,
            steps_per_epoch=b.steps_per_epoch,
            out=str(out),
            device=device,
            train_quality="noisy" if step == "pretrain" else "exact",
        )
        path, score = train_trial(
            trial, deadline, out, lambda on_epoch: train(config, parent=parent, on_epoch=on_epoch)
        )
        trial.set_user_attr("model", str(path.relative_to(run)))  # the run folder may move
        return score

    return objective


def search(
    step: str,
    base: TrainConfig,
    run: str | Path,
    *,
    parent: str | Path | None = None,
    trials: int = 30,
    budget: str | Budget = "cpu",
    seconds: float | None = None,
    epochs: int | None = None,
    dask: str | None = None,
    seed: int = 0,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
) -> SearchResult:
    """Run (or continue) step ``pretrain`` or ``finetune`` of the search in ``run``.

    ``base`` gives everything not searched (data manifest, architecture,
    loss, seed); ``parent`` is the model step 2 starts from. ``budget``
    names the trials' sizes (or is a :class:`~dendriteseg.tune.spaces.Budget`);
    ``seconds`` or ``epochs`` (every trial's epochs together, pruned ones
    included) end the search before ``trials`` where they run out.
    """
    if step not in STEPS:
        raise InputError(f"step: expected pretrain or finetune, got {step!r}")
    if step == "finetune" and parent is None:
        raise InputError("hpo finetune: name the model to start from (--from MODEL)")
    if not base.data:
        raise InputError("config: 'data' (a dataset manifest) is required")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise InputError(f"trials: at least 1, got {trials!r}")
    if seconds is not None and not (isinstance(seconds, (int, float)) and 0 < seconds < math.inf):
        raise InputError(f"minutes: a time limit greater than 0 (or none), got {seconds / 60!r}")
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise InputError(f"epochs: a budget of at least 1 epoch (or none), got {epochs!r}")
    if seconds is not None and epochs is not None:
        raise InputError("a search budget of minutes or of epochs, not both")
    if epochs is not None and dask:
        raise InputError("an epoch budget is counted in one process: give minutes with --dask")
    run = Path(run)
    sizes = budget_named(budget)
    fixed = _parent_settings(Path(parent)) if step == "finetune" else {}
    settings = {
        "architecture": read_model_info(parent).architecture if parent else base.model,
        "config": config_to_dict(base.replace(**fixed)),  # as the trials train
        "parent": str(parent) if parent else None,
        "budget": budget if isinstance(budget, str) else json.loads(json.dumps(asdict(sizes))),
    }
    study = open_study(run, step, seed=seed)
    _check_resumed(study, settings, run, step)
    for key, value in settings.items():
        study.set_user_attr(key, value)
    if dask:
        _search_on_dask(dask, step, base, run, parent, trials, budget, seconds, seed)
    else:
        deadline = Deadline(seconds, epochs=epochs)
        objective = make_objective(step, base, run, sizes, Path(parent) if parent else None, deadline)
        run_trials(study, objective, trials=trials, deadline=deadline, on_trial=on_trial)
    return export_best(study, run / step / "best.safetensors", run)


def export_best(study: optuna.Study, target: Path, run: str | Path) -> SearchResult:
    """Copy the best trial's model to ``target`` (atomically) and summarise the study."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    pruned = sum(s == optuna.trial.TrialState.PRUNED for s in states)
    try:
        best = study.best_trial
    except ValueError:
        return SearchResult(None, math.nan, {}, finished(study), pruned)
    target.parent.mkdir(parents=True, exist_ok=True)
    copy_model(trial_model(best, run), target)
    return SearchResult(target, float(best.value), dict(best.params), finished(study), pruned)


RESUMABLE_HPO = ("out", "device", "precision")  # settings a resumed search may change


def _check_resumed(study: optuna.Study, settings: dict[str, Any], run: Path, step: str) -> None:
    """Refuse to resume a study with other settings (its trials would mix two searches)."""
    if not study.trials:
        return
    saved = study.user_attrs
    differ = [k for k in ("architecture", "parent", "budget") if k in saved and saved[k] != settings[k]]
    old, new = saved.get("config") or {}, json.loads(json.dumps(settings["config"]))
    differ += sorted(
        k for k in old.keys() | new.keys() if k not in RESUMABLE_HPO and old.get(k) != new.get(k)
    )
    if differ:
        raise InputError(
            f"{run}: its {step} study was begun with other settings ({', '.join(differ)}); "
            "resume it with the same ones, or name a new --run folder"
        )


def trial_model(trial: optuna.trial.FrozenTrial, run: str | Path) -> Path:
    """The model file of a trial of the search in folder ``run`` (stored relative to it)."""
    stored = Path(trial.user_attrs["model"])
    return stored if stored.is_absolute() else Path(run) / stored


def copy_model(source: Path, target: Path) -> Path:
    """Copy a model file to ``target`` atomically; errors name ``target``, never a temporary file."""
    from dendriteseg.io.outputs import check_target, resolve_output, temp_sibling, writing

    target = resolve_output(target)
    check_target(target, folder=False)
    if target.suffix != ".safetensors":
        raise InputError(f"{target}: model files end in .safetensors")
    if not source.is_file():
        raise InputError(f"{source}: the trial's model file is missing")
    temp = temp_sibling(target)
    try:
        with writing(target):
            shutil.copyfile(source, temp)
            os.replace(temp, target)
    finally:
        if temp.exists():
            temp.unlink()
    return target


def _worker(
    run: str,
    step: str,
    config: dict,
    parent: str | None,
    trials: int,
    budget: str,
    seconds: float | None,
    seed: int,
) -> int:
    """One Dask worker's share: trials into the shared study until it has enough; returns its count."""
    study = open_study(run, step, seed=seed)
    base = config_from_dict(config)
    deadline = Deadline(seconds)
    objective = make_objective(step, base, Path(run), budget, Path(parent) if parent else None, deadline)
    before = finished(study)
    run_trials(study, objective, trials=trials, deadline=deadline)
    return finished(study) - before


def _search_on_dask(
    address: str,
    step: str,
    base: TrainConfig,
    run: Path,
    parent: str | Path | None,
    trials: int,
    budget: str,
    seconds: float | None,
    seed: int,
) -> None:
    """Every worker of the cluster at ``address`` runs trials into the same study (journal file)."""
    Client = require("distributed", "dask", "hpo --dask").Client

    with Client(address) as client:
        workers = sorted(client.scheduler_info()["workers"])
        if not workers:
            raise InputError(f"{address}: the Dask cluster has no workers")
        config = config_to_dict(base)
        futures = [
            client.submit(
                _worker,
                str(run.resolve()),
                step,
                config,
                str(parent) if parent else None,
                trials,
                budget,
                seconds,
                seed + i,
                workers=[w],
                pure=False,
                allow_other_workers=False,
            )
            for i, w in enumerate(workers)
        ]
        client.gather(futures)
