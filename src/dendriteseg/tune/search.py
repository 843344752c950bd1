"""The one search engine: Optuna, with asynchronous successive halving (ASHA).

Optuna because it is maintained and made for this: a TPE sampler, an ASHA
pruner (:class:`optuna.pruners.SuccessiveHalvingPruner`) that stops weak
trials at each rung of epochs, studies kept in a journal file that several
processes (Dask workers) append to safely and that a killed search reopens
with its finished trials intact, and the plots of ``hpo report``.

A trial is a function ``objective(trial, device) -> float`` (validation IoU,
maximised: :func:`objective_value`) that calls :func:`report_epoch` after
each epoch of training.
"""

from __future__ import annotations

import datetime
import math
import os
import queue
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import TrialState

STUDY_FILE = "study.journal"
DONE = (TrialState.COMPLETE, TrialState.PRUNED)
# a running trial that names no process this long after it started was left by a killed one
UNOWNED_AFTER_S = 60.0


def open_study(folder: str | Path, name: str, *, seed: int = 0, min_epochs: int = 1) -> optuna.Study:
    """Create or reopen study ``name`` in ``folder/study.journal``.

    Trials left running by a process that is gone (killed search) are
    marked failed, so they neither count nor block; finished ones are kept.
    """
    # Optuna logs a full traceback for each failed trial (a Ctrl-C, an error inside one); the error
    # itself reaches the caller, and the command line says it in one line
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        study_name=name,
        storage=journal(folder),
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=min_epochs, reduction_factor=3),
        load_if_exists=True,
    )
    fail_orphans(study)
    return study


def journal(folder: str | Path) -> JournalStorage:
    """The storage of the studies in ``folder/study.journal`` (shared safely by processes)."""
    path = str(Path(folder) / STUDY_FILE)
    return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_orphans(study: optuna.Study, unowned_after: float = UNOWNED_AFTER_S) -> list[int]:
    """Mark failed the running trials that nobody runs any more; returns their numbers.

    A trial is orphaned when its process (on this machine) has died, or when it
    never recorded an owner and started over ``unowned_after`` seconds ago: a
    process killed between creating a trial and naming itself in it (the two
    are separate writes to the journal) leaves such a trial behind.
    """
    host, orphans = socket.gethostname(), []
    now = datetime.datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if "pid" in attrs:
            orphaned = attrs.get("host") == host and not _alive(int(attrs["pid"]))
        else:
            started = trial.datetime_start or now
            orphaned = (now - started).total_seconds() > unowned_after
        if orphaned:
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            orphans.append(trial.number)
    return orphans


def finished(study: optuna.Study) -> int:
    """Trials that count towards the target: completed or pruned."""
    return len(study.get_trials(deepcopy=False, states=DONE))


def objective_value(scores: dict[str, float]) -> float:
    """What a search maximises: validation IoU (NaN counts as 0), ties broken by accuracy / 1000.

    Early epochs of small models often call everything background (IoU 0
    everywhere); accuracy still tells those trials apart, so ASHA can rank them.
    """
    iou = 0.0 if math.isnan(scores["iou"]) else scores["iou"]
    accuracy = 0.0 if math.isnan(scores["accuracy"]) else scores["accuracy"]
    return iou + 1e-3 * accuracy


def report_epoch(trial: optuna.Trial, epoch: int, value: float) -> None:
    """Report a trial's validation score after ``epoch``; raise TrialPruned where ASHA stops it."""
    trial.report(value, epoch)
    if trial.should_prune():
        raise optuna.TrialPruned(f"pruned after epoch {epoch}")


class OutOfTime(Exception):
    """The search's time is up: the running trial ends with its best epoch so far."""


def epoch_reporter(
    trial: optuna.Trial, deadline: Deadline, *, prune: bool = True, on_epoch: Callable[[], None] | None = None
) -> tuple[Callable[[int, dict[str, Any]], None], list[float]]:
    """A training ``on_epoch`` callback for a trial, and a one-item list holding its best score.

    After each epoch it keeps the best score (:func:`objective_value`; of
    equal ones, the latest) and its validation scores (user attribute ``scores``), records the epochs
    run, reports to ASHA (with ``prune``) and raises :class:`OutOfTime` once
    ``deadline`` is nearer than half an epoch (the last one's cost): a trial
    ends at the epoch end nearest its deadline, not at the first one past it.
    """
    best = [-math.inf]
    last = [deadline.now()]

    def callback(epoch: int, record: dict[str, Any]) -> None:
        value = objective_value(record["val"])
        if value >= best[0]:  # a tie goes to the epoch that has trained longer (as train.fit keeps it)
            best[0] = value
            trial.set_user_attr("scores", dict(record["val"]))
            trial.set_user_attr("best_epoch", epoch)
        trial.set_user_attr("epochs_run", epoch)
        deadline.tick()
        if on_epoch:
            on_epoch()
        if prune:
            report_epoch(trial, epoch, value)
        cost = 1.0 if deadline.unit == "epochs" else deadline.now() - last[0]  # of this epoch
        last[0] = deadline.now()
        if deadline.left() < cost / 2:
            raise OutOfTime

    return callback, best


def train_trial(
    trial: optuna.Trial,
    deadline: Deadline,
    out: Path,
    fit: Callable[[Callable[[int, dict[str, Any]], None]], Any],
    *,
    prune: bool = True,
    on_epoch: Callable[[], None] | None = None,
) -> tuple[Path, float]:
    """One trial's training: ``fit(on_epoch)`` trains into ``out`` and returns the model's path.

    Each epoch is reported (:func:`epoch_reporter`; ASHA may stop it with
    ``prune``); where ``deadline`` passes, the trial ends with its best epoch
    so far (``out/best.safetensors``). Returns the model's path and the
    trial's score (its best :func:`objective_value`).
    """
    callback, best = epoch_reporter(trial, deadline, prune=prune, on_epoch=on_epoch)
    try:
        path = Path(fit(callback))
    except OutOfTime:
        path = Path(out) / "best.safetensors"
        trial.set_user_attr("stopped_by_budget", True)
    return path, best[0]


def run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial, str], float],
    *,
    trials: int,
    seconds: float | None = None,
    deadline: Deadline | None = None,
    devices: list[str] | None = None,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
) -> None:
    """Run trials until the study has ``trials`` finished ones, ``seconds`` have passed or ``deadline``
    has (no trial starts after it; one is always run).

    With several ``devices`` (default: every GPU, else the CPU) trials run
    side by side, one per device; each trial records the machine, process
    and device it ran on.
    """
    devices = devices or default_devices()
    free: queue.Queue[str] = queue.Queue()
    for device in devices:
        free.put(device)

    def wrapped(trial: optuna.Trial) -> float:
        trial.set_user_attr("host", socket.gethostname())  # first: a trial waiting for a device is owned
        trial.set_user_attr("pid", os.getpid())
        device = free.get()
        try:
            trial.set_user_attr("device", device)
            return objective(trial, device)
        finally:
            free.put(device)

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial:
            on_trial(trial)
        # a trial the budget stopped ended at the epoch end nearest it: no time for another's first epoch
        spent = deadline is not None and (deadline.passed() or trial.user_attrs.get("stopped_by_budget"))
        if finished(study) >= trials or spent:
            study.stop()

    remaining = trials - finished(study)
    if remaining <= 0:
        return
    if deadline is not None and deadline.seconds_left() is not None:
        left = max(deadline.seconds_left(), 1.0)
        seconds = left if seconds is None else min(seconds, left)
    study.optimize(
        wrapped,
        n_trials=remaining,
        timeout=seconds,
        n_jobs=len(devices),
        callbacks=[callback],
        catch=(),
        gc_after_trial=True,
    )


def default_devices() -> list[str]:
    """One entry per GPU (``cuda:0``, ``cuda:1``, ...), or ``["cpu"]`` without one."""
    try:
        import torch
    except ImportError:
        return ["cpu"]
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(count)] or ["cpu"]


def describe_trial(trial: optuna.trial.FrozenTrial) -> str:
    """One line on a finished trial: its settings, score and state."""
    settings = ", ".join(f"{k} {_short(v)}" for k, v in trial.params.items())
    if "continues" in trial.user_attrs:
        settings = (
            f"trial {trial.user_attrs['continues']} continued, {trial.user_attrs.get('epochs_run', 0)} epochs"
        )
    if trial.state == TrialState.PRUNED:
        last = max(trial.intermediate_values) if trial.intermediate_values else 0
        value = trial.intermediate_values.get(last, float("nan"))
        return f"trial {trial.number}: {settings}: score {value:.4f}, pruned after epoch {last}"
    if trial.state == TrialState.COMPLETE:
        return f"trial {trial.number}: {settings}: score {trial.value:.4f}"
    return f"trial {trial.number}: {settings}: {trial.state.name.lower()}"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class Deadline:
    """A budget shared by a search's trials: wall-clock ``seconds``, or ``epochs`` trained.

    An epoch budget counts the epochs every trial (and what follows the
    search) trains, each one :meth:`tick`; nothing else costs anything. It
    makes a run repeatable, whatever the machine's speed: tests and exact
    reruns use it. :meth:`share` gives a part of the budget that ends sooner
    on the same clock.
    """

    def __init__(self, seconds: float | None = None, *, epochs: int | None = None):
        if seconds is not None and epochs is not None:
            raise ValueError("a budget of seconds or of epochs, not both")
        self.unit = "epochs" if epochs is not None else "seconds"
        self._epochs = [0.0]  # shared with the shares of this budget
        amount = epochs if epochs is not None else seconds
        self.total = None if amount is None else float(amount)
        self.end = None if amount is None else self.now() + float(amount)

    def now(self) -> float:
        """The budget's clock: seconds (monotonic) or epochs trained so far."""
        return self._epochs[0] if self.unit == "epochs" else time.monotonic()

    def tick(self) -> None:
        """One epoch trained (only an epoch budget counts them)."""
        self._epochs[0] += 1

    def left(self) -> float:
        return float("inf") if self.end is None else self.end - self.now()

    def passed(self) -> bool:
        return self.left() <= 0

    def used(self) -> float:
        """The share of the whole budget used, 0 to 1 (0 without a budget)."""
        if self.total is None or self.total <= 0:
            return 0.0
        return min(1.0, max(0.0, 1 - self.left() / self.total))

    def share(self, fraction: float) -> Deadline:
        """A budget of ``fraction`` of what is left, on this budget's clock."""
        part = Deadline.__new__(Deadline)
        part.unit, part._epochs = self.unit, self._epochs
        part.total = None if self.end is None else max(self.left(), 0.0) * fraction
        part.end = None if part.total is None else self.now() + part.total
        return part

    def seconds_left(self) -> float | None:
        """What is left as a wall-clock limit: None for an epoch budget (it stops by epochs)."""
        return None if self.unit == "epochs" or self.end is None else self.left()
