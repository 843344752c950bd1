"""Fine-tuning on a user's own labelled slices, its settings found by the step-2 search.

:func:`finetune_on_labels` holds part of the labels out for validation
(:func:`~dendriteseg.tune.labels.split_labels`), scores the starting model
there, then searches, within a time budget, learning rate (log scale),
epochs, augmentation set and whether to freeze the encoder
(:func:`~dendriteseg.tune.spaces.finetune_space`), ASHA stopping weak
trials early. The first trial is a plain fine-tune (lr 3e-4, standard
augmentations), so the search starts from a sensible point.

The search has ``SEARCH_SHARE`` of the budget: a trial still training as
that share ends stops at the epoch end nearest it, keeping its best epoch
(of epochs that validation scores alike, the latest), and the finish has
the rest. The winner is the best trial on validation, unless the plain first
trial is within one standard error of it (:mod:`dendriteseg.tune.select`:
a few held-out labels favour the luckiest of several trials), and only if
it beats the starting model.
With labels in one slice only, nothing is searched: validation can hold
out only tiles of that same slice, and those favour settings that fit the
slice (higher learning rate, weaker augmentation) over ones that carry to
other slices; the plain trial runs and ``finish`` follows (``ONE_SLICE``).
What follows, ``finish``:

* ``"all-labels"`` (the default): the winner's best checkpoint trains on at
  its settings for the time left, on every label, the held-out ones
  included, on a cosine schedule over as many epochs as fit (measured from
  the trials' time per epoch); the last epoch is kept. Once the search has
  chosen how to train, the labels it held back are more use as training
  data than as a judge: with 1-8 labelled slices they are a quarter of all
  there is. The validation scores printed after are the winner's, measured
  before this step.
* ``"continue"``: the same on the training labels only, validated each
  epoch; the model kept is the best on validation of the starting model,
  every trial and the continuation, and last the trials' weights are
  averaged greedily, best first, each kept only where the validation score
  does not drop (:mod:`dendriteseg.tune.soup`). The continuation leaves time
  for the average (one validation per trial averaged, timed on the
  starting model's).
* ``"refit"``: the winner's settings train again from the starting model on
  every label, along the winner's schedule up to its best epoch.

If no trial beats the starting model, the starting model is kept.

Slices labelled only in part (scribbles) train with their gaps filled by the
starting model's sure answers (:func:`anchor_sparse_labels`), away from the
strokes that contradict it, in the trials and in the finish on every label
alike; validation judges by the strokes alone.

The provenance records the labelled slices, the split (and how many voxels
the starting model's answers filled), every trial and the chosen settings.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from scipy import ndimage

from dendriteseg.data import UNLABELLED, LabelledVolume
from dendriteseg.device import resolve_device, training_precision
from dendriteseg.errors import InputError
from dendriteseg.heap import kept_heap
from dendriteseg.io.outputs import work_folder
from dendriteseg.models import spec_for
from dendriteseg.models.files import ModelInfo, load_model, read_model_info, save_model
from dendriteseg.train.config import TrainConfig
from dendriteseg.train.fit import validate, validation_labels
from dendriteseg.train.run import train_on
from dendriteseg.tune.labels import UserScan, split_labels
from dendriteseg.tune.search import (
    DONE,
    Deadline,
    default_devices,
    describe_trial,
    objective_value,
    open_study,
    run_trials,
    train_trial,
)
from dendriteseg.tune.select import compare, tile_counts
from dendriteseg.tune.soup import greedy_soup
from dendriteseg.tune.spaces import budget as budget_named
from dendriteseg.tune.spaces import finetune_space

FIRST_TRIAL = {"lr": 3e-4, "augment": "standard", "freeze_encoder": False}
FINISHES = ("all-labels", "continue", "refit")
DEFAULT_MINUTES = 5.0
UNTIL_BUDGET = 10**6  # epochs or trials: as many as the budget allows (the budget stops them)
SEARCH_SHARE = 0.5  # of the time budget; the rest continues the winner
SOUP_MAX = 8  # trials, best first, that the weight average may take in
MODEL_BYTES = 32 * 2**20  # room for the model written at the end (the shipped ones are 1-6 MB)
ONE_SLICE = "one labelled slice: nothing held out at another depth to judge settings by, so plain settings"
ANCHOR_SURE = 0.9  # the starting model's probability (or 1 minus it) that fills a scribbled slice's gaps
ANCHOR_CLEARANCE = 8  # px around a stroke that contradicts the starting model, left unlabelled
ANCHOR_CONTEXT = 4  # slices either side of the scribbled ones that the starting model sees


@dataclass
class FinetuneResult:
    """What a fine-tune made and measured (validation scores before and after)."""

    model: Path
    before: dict[str, float]
    after: dict[str, float]
    kept: str
    chosen: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)
    split: dict[str, Any] = field(default_factory=dict)
    every_label_epochs: int = 0  # > 0: the model kept trained on every label after; ``after`` is the winner's


def starting_model(scans: list[UserScan], start: str | Path | None) -> Path:
    """The model to start from: as named; else the shipped 2D model for 2D images and for labels in
    one slice in all, the default 3D one otherwise.

    A 3D model's training patches are several slices deep: with one labelled slice, the others in
    each patch are unlabelled and teach nothing, and the 2D model learns from the same slice at a
    fraction of the cost per step (``benchmarks/few_shot.py --counts 1``).
    """
    from dendriteseg.infer.predictor import resolve_model_path
    from dendriteseg.models.files import default_model_name

    if start is None:
        one_slice = sum(len(s.labelled_slices) for s in scans) == 1
        start = default_model_name(image2d=one_slice or all(s.was_2d for s in scans))
    return resolve_model_path(start)


def partial_slice_answers(scans: list[UserScan], parent: Any) -> list[dict[int, np.ndarray]]:
    """Per scan, the starting model's probabilities on each slice labelled only in part (scribbles),
    from ``ANCHOR_CONTEXT`` slices either side: what :func:`anchor_sparse_labels` fills gaps with."""
    from dendriteseg.infer import segment

    out = []
    for scan in scans:
        partial = [z for z in scan.labelled_slices if (scan.label[z] == UNLABELLED).any()]
        if not partial:
            out.append({})
            continue
        z0 = max(0, min(partial) - ANCHOR_CONTEXT)
        z1 = min(scan.image.shape[0], max(partial) + ANCHOR_CONTEXT + 1)
        result = segment(scan.image[z0:z1], parent, probabilities=True, window=(0.0, 1.0), compile=False)
        out.append({z: np.asarray(result.probabilities[z - z0], np.float32) for z in partial})
    return out


def anchor_sparse_labels(
    volumes: list[LabelledVolume], scans: list[UserScan], answers: list[dict[int, np.ndarray]]
) -> list[LabelledVolume]:
    """``volumes`` (one per scan of ``scans``, same order: the training split of
    :func:`~dendriteseg.tune.labels.split_labels`, or every label) with each slice labelled only in
    part (scribbles) filled with the starting model's sure ``answers`` (:func:`partial_slice_answers`:
    probability above ``ANCHOR_SURE`` or below 1 minus it), except within ``ANCHOR_CLEARANCE`` px of a
    stroke that the model contradicts or that ``volumes`` leave out (held out for validation).

    Strokes along the middle of arms and channels say nothing about where a boundary lies; trained on
    them alone, a model moves its boundaries where nobody painted, and comes out worse than it started
    (``benchmarks/few_shot.py --labels scribbles,corrections``). Filled in, the slice keeps what the
    model knew wherever the user did not say otherwise. Whole labels are left as they are.
    """
    out = []
    for volume, scan, sure_of in zip(volumes, scans, answers, strict=True):
        label = np.asarray(volume.label)
        partial = [z for z in sure_of if (label[z] != UNLABELLED).any()]
        if not partial:
            out.append(volume)
            continue
        label = label.copy()
        for z in partial:
            strokes, p = scan.label[z], sure_of[z]
            held = (strokes != UNLABELLED) & (label[z] == UNLABELLED)
            contradicted = ((strokes == 1) & (p < 0.5)) | ((strokes == 0) & (p >= 0.5)) | held
            near = ndimage.distance_transform_edt(~contradicted) <= ANCHOR_CLEARANCE
            sure = np.where(p > ANCHOR_SURE, 1, np.where(p < 1 - ANCHOR_SURE, 0, UNLABELLED)).astype(np.uint8)
            gap = (strokes == UNLABELLED) & ~near
            label[z][gap] = sure[gap]
        out.append(replace(volume, label=label))
    return out


def _filled_labels(
    train: list[LabelledVolume], scans: list[UserScan], parent: Path, split: dict[str, Any]
) -> tuple[list[LabelledVolume], list[LabelledVolume], dict[str, Any]]:
    """The training split and every label (what the finish on every label trains on, the held-out
    strokes included), scribbled slices filled alike (:func:`anchor_sparse_labels`); the split with
    how many training voxels the starting model's answers filled."""
    answers = partial_slice_answers(scans, parent)
    anchored = anchor_sparse_labels(train, scans, answers)
    every = anchor_sparse_labels(
        [LabelledVolume(s.name, s.image, s.label, "exact") for s in scans], scans, answers
    )
    filled = sum(int((a.label != t.label).sum()) for a, t in zip(anchored, train, strict=True))
    if filled:
        split = {
            **split,
            "anchored": {"voxels": filled, "sure": ANCHOR_SURE, "clearance_px": ANCHOR_CLEARANCE},
        }
    return anchored, every, split


def _pad_depth(scan: UserScan, depth: int) -> UserScan:
    """A scan thinner than a 3D model's patches, reflect-padded along z (padding unlabelled)."""
    if scan.image.shape[0] >= depth:
        return scan
    extra = depth - scan.image.shape[0]
    image = np.pad(scan.image, ((0, extra), (0, 0), (0, 0)), mode="symmetric")
    label = np.pad(scan.label, ((0, extra), (0, 0), (0, 0)), constant_values=UNLABELLED)
    return UserScan(scan.name, image, label, scan.was_2d)


def _base_config(parent: Path, scans: list[UserScan], seed: int, precision: str = "auto") -> TrainConfig:
    """Everything not searched: the parent's patch (narrowed to the images) and batch, exact labels."""
    info = read_model_info(parent)
    trained = info.provenance.get("config", {})
    dims = spec_for(info.architecture).dims
    depth = 1 if dims == 2 else int(trained.get("patch", [4])[0])
    side = min(min(s.image.shape[1:]) for s in scans)
    width = min(int(trained.get("patch", [0, 96])[1]), side) // 16 * 16
    if width < 16:
        raise InputError(f"{scans[0].name}: images must be at least 16 x 16 pixels to fine-tune on")
    return TrainConfig(
        model=info.architecture,
        patch=(depth, width, width),
        batch=int(trained.get("batch", 8)),
        train_quality="exact",
        foreground=0.5,
        boundary_weight=float(trained.get("boundary_weight", 0.0)),
        seed=seed,
        lr_schedule="cosine",
        precision=precision,
    )


@kept_heap()  # every trial's steps reuse the same memory (dendriteseg.heap)
def finetune_on_labels(
    scans: list[UserScan],
    out: str | Path,
    *,
    start: str | Path | None = None,
    minutes: float | None = None,
    epochs: int | None = None,
    trials: int | None = None,
    budget: str = "cpu",
    devices: list[str] | None = None,
    seed: int = 0,
    search: bool = True,
    finish: str = "all-labels",
    precision: str = "auto",
    on_trial: Callable[[str], None] | None = None,
    on_epoch: Callable[[float], None] | None = None,
) -> FinetuneResult:
    """Search fine-tuning settings on ``scans``' labels within ``minutes`` (default ``DEFAULT_MINUTES``);
    write the best model to ``out``.

    ``epochs`` replaces ``minutes`` with a budget of epochs trained, all
    trials and the finish together: the same run on any machine (tests,
    exact reruns). ``trials`` caps the number of trials (default: as many as
    the budget allows); ``devices`` runs trials side by side (one per GPU); ``on_trial``
    gets a line per finished trial, ``on_epoch`` the share of the budget used.
    ``search=False`` is the plain alternative: one fine-tune at the first
    trial's fixed settings, for as many epochs as the budget allows.
    ``finish``: what follows the search: ``"all-labels"``, ``"continue"`` or ``"refit"`` (module notes).
    ``precision``: the training precision (:func:`dendriteseg.device.training_precision`: "auto" is
    fp32 on the CPU), checked before any work.
    """
    deadline = _check_settings(finish, minutes, epochs, trials, precision, devices)
    _check_output(Path(out))  # before minutes of work
    parent = starting_model(scans, start)
    base = _base_config(parent, scans, seed, precision)
    scans = [_pad_depth(s, base.patch[0]) for s in scans]
    train, val, split = split_labels(scans, depth=base.patch[0], seed=seed)
    train, every, split = _filled_labels(train, scans, parent, split)
    model, info = load_model(parent)
    started = time.monotonic()
    before = validate(model, val, depth=base.patch[0], device="auto", precision="auto")
    # what one scoring of a model costs in the budget (nothing where it counts epochs)
    val_cost = time.monotonic() - started if deadline.unit == "seconds" else 0.0
    b = budget_named(budget)
    plan = _plan(search, finish, split)
    with work_folder("finetune") as work:
        study = open_study(work, "finetune", seed=seed)
        _enqueue_plain(study, b)
        search_until = deadline.share(plan.search_share)  # trials stop at the epoch end nearest it
        run = _FinetuneSession(
            base, b, train, val, parent, Path(work), deadline, search_until, on_epoch, val_cost
        )
        report = (lambda t: on_trial(describe_trial(t))) if on_trial else None
        run_trials(
            study,
            run.search_objective() if plan.finish else run.plain_objective(),
            trials=(trials or UNTIL_BUDGET) if plan.searched else 1,
            deadline=search_until,
            devices=devices,
            on_trial=report,
        )
        kept, step = _finish(plan, study, run, before, every, devices, report)
        record = {
            "from": str(parent),
            "images": [s.name for s in scans],
            "labelled_slices": {s.name: s.labelled_slices for s in scans},
            "split": split,
            "budget_minutes": deadline.total / 60 if deadline.unit == "seconds" else None,
            "budget_epochs": epochs,
            "search_share": plan.search_share if plan.finish else 0.0,
            "settings_searched": plan.searched,
            "finish": plan.finish,
            "on_every_label": step.record if step else None,
            "trials": [_trial_record(t) for t in study.trials],
            "chosen": kept.chosen,
            "soup": kept.soup,
            "selections": run.selections,
            "before": before,
            "after": kept.scores,
            "kept": kept.label,
        }
        _save_kept(kept.path, out, record)
    return FinetuneResult(
        Path(out),
        before,
        kept.scores,
        kept.label,
        kept.chosen,
        record["trials"],
        split,
        step.epochs if step else 0,
    )


@dataclass(frozen=True)
class _Plan:
    """What one fine-tune does, decided once from ``search``, ``finish`` and how the labels split."""

    searched: bool  # several trials, settings searched; else the plain trial alone
    search_share: float  # of the budget, for the trials
    finish: str | None  # what follows the trials (FINISHES); None: the plain alternative, nothing follows
    note: str | None = None  # said after the kept model's name


def _plan(search: bool, finish: str, split: dict[str, Any]) -> _Plan:
    if not search:  # the plain alternative: one trial at fixed settings for the whole budget
        return _Plan(searched=False, search_share=1.0, finish=None)
    if split["by"] != "slices":  # one labelled slice: no search (ONE_SLICE), the finish still follows
        return _Plan(searched=False, search_share=SEARCH_SHARE, finish=finish, note=ONE_SLICE)
    return _Plan(searched=True, search_share=SEARCH_SHARE, finish=finish)


def _finish(
    plan: _Plan,
    study: optuna.Study,
    run: _FinetuneSession,
    before: dict[str, float],
    every: list[LabelledVolume],
    devices: list[str] | None,
    report: Any,
) -> tuple[_Kept, _EveryLabel | None]:
    """What follows the trials (module notes): the model kept, and the training on every label if any."""
    if plan.finish == "continue":
        _continue_winner(study, run, devices, report)
    kept = _keep(study, run, before, soup=plan.finish == "continue")
    if plan.note:
        kept = replace(kept, label=f"{kept.label} ({plan.note})")
    if plan.finish in ("all-labels", "refit") and kept.trial is not None:
        device = (devices or default_devices())[0]
        step = _on_every_label(study, kept, run, every, device, resume=plan.finish == "all-labels")
        if step is not None:
            return step.kept, step
    return kept, None


def _check_settings(
    finish: str, minutes: Any, epochs: Any, trials: Any, precision: str, devices: list[str] | None
) -> Deadline:
    """Refuse settings no fine-tune can use, before any work, naming the setting; the budget."""
    if finish not in FINISHES:
        raise InputError(f"finish: expected one of {', '.join(FINISHES)}, got {finish!r}")
    if minutes is not None and epochs is not None:
        raise InputError("minutes and epochs: give one budget, a time or a count of epochs, not both")
    if epochs is not None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise InputError(f"epochs: a budget of at least 1 epoch, got {epochs!r}")
    else:
        minutes = DEFAULT_MINUTES if minutes is None else minutes
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not 0 < minutes < math.inf:
            raise InputError(f"minutes: a time budget greater than 0, got {minutes!r}")
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        raise InputError(f"trials: at least 1 (or none for as many as the time allows), got {trials!r}")
    for device in devices or ["auto"]:
        training_precision(precision, resolve_device(device))
    return Deadline(epochs=epochs) if epochs is not None else Deadline(minutes * 60)


def _save_kept(path: Path, out: str | Path, record: dict[str, Any]) -> None:
    """The kept model written to ``out`` with the fine-tune's record in its provenance."""
    model, info = load_model(path)
    provenance = {**info.provenance, "finetune": record}
    save_model(out, model, ModelInfo(info.architecture, info.arguments, info.normalisation, provenance))


def _enqueue_plain(study: optuna.Study, b: Any) -> None:
    """The first trial: the plain settings, its learning rate within the budget's range."""
    study.enqueue_trial(
        {
            **FIRST_TRIAL,
            "lr": min(max(FIRST_TRIAL["lr"], b.finetune_lr[0]), b.finetune_lr[1]),
            "epochs": max(2, b.max_epochs // 2),
        },
        user_attrs={"plain": True},
    )


def _check_output(out: Path) -> None:
    """Refuse an output model path that could not be written, before any work."""
    from dendriteseg.io.outputs import check_free_space, check_target, resolve_output

    out = resolve_output(out)
    if out.suffix != ".safetensors":
        raise InputError(f"{out}: model files end in .safetensors")
    if not out.parent.is_dir():
        raise InputError(f"{out}: folder {out.parent} does not exist")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise InputError(f"{out}: folder {out.parent} is not writable")
    check_target(out, folder=False)
    check_free_space(out, MODEL_BYTES)


@dataclass
class _FinetuneSession:
    """What every trial of one fine-tune shares: settings not searched, data, parent, time."""

    base: TrainConfig
    b: Any
    train: list[LabelledVolume]
    val: list[LabelledVolume]
    parent: Path
    work: Path
    deadline: Deadline
    search_until: Deadline  # the search's share of ``deadline``
    on_epoch: Callable[[float], None] | None
    val_cost: float = 0.0  # one validation, in the deadline's unit
    selections: list[dict[str, Any]] = field(default_factory=list)  # each choice of a trial to go on with

    def report_used(self) -> None:
        """Tell ``on_epoch`` the share of the budget used so far."""
        if self.on_epoch:
            self.on_epoch(self.deadline.used())

    def per_epoch(self, trials: list[optuna.trial.FrozenTrial]) -> float | None:
        """What an epoch costs in the deadline's unit: measured on ``trials`` for a time budget."""
        return 1.0 if self.deadline.unit == "epochs" else _seconds_per_epoch(trials)

    def search_objective(self) -> Callable[[optuna.Trial, str], float]:
        """A trial of the search: settings from the fine-tune space, ASHA may stop it after any epoch."""
        return self._objective(prune=True, run_for={}, parent=self.parent, until=self.search_until)

    def plain_objective(self) -> Callable[[optuna.Trial, str], float]:
        """The plain alternative (``search=False``): the first trial's settings at a constant learning
        rate, never stopped by ASHA, for as many epochs as the budget allows."""
        run_for = {"epochs": UNTIL_BUDGET, "lr_schedule": "constant"}
        return self._objective(prune=False, run_for=run_for, parent=self.parent, until=self.deadline)

    def continuation_objective(self, parent: Path, epochs: int) -> Callable[[optuna.Trial, str], float]:
        """The winner's continuation: its settings, exactly ``epochs`` more from its checkpoint ``parent``."""
        return self._objective(prune=False, run_for={"epochs": epochs}, parent=parent, until=self.deadline)

    def _objective(
        self, *, prune: bool, run_for: dict[str, Any], parent: Path, until: Deadline
    ) -> Callable[[optuna.Trial, str], float]:
        """Trials that train from ``parent``, each stopped at the epoch end nearest ``until``: a trial
        of the search leaves the rest of the budget to the finish."""

        def objective(trial: optuna.Trial, device: str) -> float:
            settings = {**finetune_space(trial, self.b, freeze=True), **run_for}
            if not prune:
                trial.set_user_attr("fixed", True)
            config = self.base.replace(
                **settings,
                steps_per_epoch=self.b.steps_per_epoch,
                device=device,
                out=str(self.work / f"trial_{trial.number:04d}"),
            )

            def fit(on_epoch: Callable[[int, dict[str, Any]], None]) -> Path:
                provenance = _provenance(self.train, self.val)
                return train_on(
                    config, self.train, self.val, parent=parent, on_epoch=on_epoch, provenance=provenance
                )

            path, score = train_trial(
                trial, until, Path(config.out), fit, prune=prune, on_epoch=self.report_used
            )
            trial.set_user_attr("model", str(path))
            return score

        return objective


@dataclass
class _Kept:
    """The model a fine-tune keeps: its file, validation scores, and what it is."""

    path: Path
    scores: dict[str, float]
    label: str
    trial: optuna.trial.FrozenTrial | None = None  # the trial kept (or the soup's first), if any
    soup: list[int] = field(default_factory=list)

    @property
    def chosen(self) -> dict[str, Any]:
        """The settings of the trial kept; none for the starting model."""
        return dict(self.trial.params) if self.trial else {}


def _provenance(train: list[LabelledVolume], val: list[LabelledVolume]) -> dict[str, Any]:
    """What a fine-tune's model file says it was trained and validated on."""
    return {
        "data": ", ".join(v.name for v in train),
        "train_quality": "exact",
        "train_entries": [v.name for v in train],
        "val_entries": [v.name for v in val],
    }


def _finished_with_model(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The completed trials with a finite score and a model file."""
    return [
        t
        for t in study.trials
        if t.state == optuna.trial.TrialState.COMPLETE
        and math.isfinite(t.value)
        and Path(t.user_attrs.get("model", "")).is_file()
    ]


def _choose_winner(study: optuna.Study, run: _FinetuneSession) -> optuna.trial.FrozenTrial | None:
    """The finished trial a fine-tune goes on with: the best on validation, unless the plain first trial
    is within one standard error of it (:mod:`dendriteseg.tune.select`); ``run.selections`` says why."""
    done = _finished_with_model(study)
    if not done:
        return None
    best = max(done, key=lambda t: t.value)
    plain = next((t for t in done if t.user_attrs.get("plain")), None)
    if plain is None or plain.number == best.number:
        run.selections.append({"best": best.number, "chosen": best.number})
        return best
    counts = []
    for trial in (best, plain):
        model, _ = load_model(trial.user_attrs["model"])
        predicted = validation_labels(
            model, run.val, depth=run.base.patch[0], device="auto", precision="auto"
        )
        counts.append(tile_counts(predicted, run.val))
    comparison = compare(*counts)
    chosen = best if comparison.clear else plain
    run.selections.append(
        {
            "best": best.number,
            "plain": plain.number,
            **comparison.record(),
            "chosen": chosen.number,
        }
    )
    return chosen


def _keep(study: optuna.Study, run: _FinetuneSession, before: dict[str, float], *, soup: bool) -> _Kept:
    """The best on validation of the starting model, every finished trial and (with ``soup``) the
    greedy average of the trials' weights (:mod:`dendriteseg.tune.soup`, up to ``SOUP_MAX`` of them)."""
    best = _choose_winner(study, run)
    if best is None or not _beats(best.user_attrs.get("scores") or {}, before):
        return _Kept(run.parent, before, "the starting model (no trial beat it)")
    done = [best] + sorted(
        (t for t in _finished_with_model(study) if t.number != best.number),
        key=lambda t: t.value,
        reverse=True,
    )
    kept = _Kept(Path(best.user_attrs["model"]), best.user_attrs["scores"], f"trial {best.number}", best)
    if not soup or len(done) < 2:
        return kept

    scored: dict[float, dict[str, float]] = {}  # validation scores by their objective value

    def score(model: Any) -> float:
        scores = validate(model, run.val, depth=run.base.patch[0], device="auto", precision="auto")
        scored[objective_value(scores)] = scores
        return objective_value(scores)

    fits = SOUP_MAX  # a validation each, 1 spare, where validations cost budget
    if run.val_cost > 0:
        fits = int(max(run.deadline.left(), 0.0) // run.val_cost) - 1
    paths = [Path(t.user_attrs["model"]) for t in done[: min(SOUP_MAX, fits)]]
    if len(paths) < 2:
        return kept
    mixed = greedy_soup(paths, score)
    if len(mixed.members) < 2:
        return kept
    numbers = [done[paths.index(p)].number for p in mixed.members]
    target = run.work / "soup.safetensors"
    save_model(target, mixed.model, mixed.info)
    return _Kept(target, scored[mixed.value], f"the average of trials {numbers}", best, numbers)


def _beats(scores: dict[str, float], before: dict[str, float]) -> bool:
    """Whether validation ``scores`` beat the starting model's on IoU itself (the search's tie-breaker,
    accuracy, ranks trials but never makes a model that did not improve the IoU better)."""
    iou, start = scores.get("iou", math.nan), before.get("iou", math.nan)
    if math.isnan(iou):
        return False
    return math.isnan(start) or iou > start + 1e-9


def _seconds_per_epoch(trials: list[optuna.trial.FrozenTrial]) -> float | None:
    """Wall-clock seconds per epoch (training and validation) over the finished trials."""
    seconds = epochs = 0.0
    for t in trials:
        if t.datetime_start and t.datetime_complete and t.user_attrs.get("epochs_run"):
            seconds += (t.datetime_complete - t.datetime_start).total_seconds()
            epochs += t.user_attrs["epochs_run"]
    return seconds / epochs if epochs else None


def _continue_winner(
    study: optuna.Study, run: _FinetuneSession, devices: list[str] | None, report: Any
) -> None:
    """Train the search's best trial on from its best checkpoint for the time left (see module notes)."""
    done = _finished_with_model(study)
    per_epoch = run.per_epoch([t for t in study.trials if t.state in DONE])
    if not done or per_epoch is None or run.deadline.passed():
        return
    winner = _choose_winner(study, run)
    # kept back for the weight average and the choice between the best and the plain trial
    soup_time = (min(SOUP_MAX, len(done) + 1) + 3) * run.val_cost
    epochs = min(run.b.max_epochs, int((run.deadline.left() - soup_time) // per_epoch))
    if epochs < 1:
        return
    study.enqueue_trial(dict(winner.params), user_attrs={"continues": winner.number})
    objective = run.continuation_objective(Path(winner.user_attrs["model"]), epochs)
    run_trials(
        study,
        objective,
        trials=len(study.get_trials(states=DONE)) + 1,
        deadline=run.deadline,
        devices=(devices or default_devices())[:1],
        on_trial=report,
    )


@dataclass
class _EveryLabel:
    """The kept trial trained on every label: the model it made, its epochs, its record."""

    kept: _Kept
    epochs: int
    record: dict[str, Any]


class _Enough(Exception):
    """The training on every label has run the epochs it was given."""


def _on_every_label(
    study: optuna.Study,
    kept: _Kept,
    run: _FinetuneSession,
    everything: list[LabelledVolume],
    device: str,
    *,
    resume: bool,
) -> _EveryLabel | None:
    """The kept trial trained on every label, the held-out ones included (see module notes): from its
    best checkpoint for the time left, on a cosine schedule over those epochs (``resume``, the
    "all-labels" finish), or again from the starting model up to its best epoch ("refit")."""
    winner = kept.trial
    per_epoch = run.per_epoch([t for t in study.trials if t.state in DONE])
    if per_epoch is None:
        return None
    fits = round(run.deadline.left() / per_epoch)  # the epoch end nearest the budget's, as trials stop
    settings = finetune_space(optuna.trial.FixedTrial(dict(winner.params)), run.b, freeze=True)
    if resume:
        parent, wanted = Path(winner.user_attrs["model"]), fits
        settings["epochs"] = max(fits, 1)  # the schedule ends where the budget does
    else:
        parent = run.parent
        wanted = int(winner.user_attrs.get("best_epoch") or winner.user_attrs.get("epochs_run") or 0)
    epochs = min(wanted, fits)
    if epochs < 1:
        return None
    config = run.base.replace(
        **settings, steps_per_epoch=run.b.steps_per_epoch, device=device, out=str(run.work / "every_label")
    )
    ran = [0]

    def stop(epoch: int, record: dict[str, Any]) -> None:
        run.deadline.tick()
        run.report_used()
        ran[0] = epoch
        if epoch >= epochs or run.deadline.passed():
            raise _Enough

    try:
        train_on(
            config,
            everything,
            [],
            parent=parent,
            on_epoch=stop,
            provenance=_provenance(everything, []),
        )
    except _Enough:
        pass
    path = run.work / "every_label" / "last.safetensors"
    record = {
        "trial": winner.number,
        "from": "the trial's best epoch" if resume else "the starting model",
        "epochs": ran[0],
        "winner_best_epoch": winner.user_attrs.get("best_epoch"),
        "labels": "every",
    }
    if not path.is_file():
        return None
    how = "then trained" if resume else "refit"
    label = f"{kept.label}, {how} on every label ({ran[0]} epoch{'' if ran[0] == 1 else 's'})"
    return _EveryLabel(replace(kept, path=path, label=label), ran[0], record)


def _trial_record(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "params": dict(trial.params),
        "score": trial.value if trial.value is not None else None,
        "val": trial.user_attrs.get("scores"),
        "epochs_run": trial.user_attrs.get("epochs_run", 0),
        "fixed_settings": not trial.params or trial.user_attrs.get("fixed", False),
        "stopped_by_budget": trial.user_attrs.get("stopped_by_budget", False),
        "continues": trial.user_attrs.get("continues"),
        "device": trial.user_attrs.get("device"),
    }
