"""``hpo report``: our Table 1, the optimisation history and parameter importances of a run."""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna

from dendriteseg.errors import InputError
from dendriteseg.io import write_text_atomic
from dendriteseg.io.outputs import save_figure
from dendriteseg.tune.search import STUDY_FILE, journal, open_study

COLUMNS = ("patch_width", "lr", "augment", "epochs", "batch", "freeze_encoder")


def _studies(run: Path) -> dict[str, optuna.Study]:
    if not (run / STUDY_FILE).is_file():
        raise InputError(f"{run}: no {STUDY_FILE} here; is it the run folder of dendriteseg hpo?")
    names = optuna.get_all_study_names(journal(run))
    return {name: open_study(run, name) for name in ("pretrain", "finetune") if name in names}


def table1(studies: dict[str, optuna.Study]) -> str:
    """Markdown: the chosen hyperparameters per architecture and step, as the paper's Table 1."""
    lines = [
        "| architecture | step | " + " | ".join(COLUMNS) + " | val IoU | trials (pruned) |",
        "|" + "---|" * (len(COLUMNS) + 4),
    ]
    for step, study in studies.items():
        trials = study.get_trials(deepcopy=False)
        done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in trials)
        arch = study.user_attrs.get("architecture", "?")
        if not done:
            lines.append(
                f"| {arch} | {step} | "
                + " | ".join("-" for _ in COLUMNS)
                + f" | - | {len(trials)} ({pruned}) |"
            )
            continue
        best = study.best_trial
        fixed = study.user_attrs.get("config", {})
        cells = []
        for key in COLUMNS:
            value = best.params.get(key)
            if value is None and key == "patch_width" and fixed.get("patch"):
                value = f"{fixed['patch'][-1]} (fixed)"
            if value is None and key == "batch" and "batch" in fixed:
                value = f"{fixed['batch']} (fixed)"
            cells.append(
                f"{value:.3g}" if isinstance(value, float) else ("-" if value is None else str(value))
            )
        iou = best.user_attrs.get("scores", {}).get("iou", float("nan"))
        lines.append(
            f"| {arch} | {step} | " + " | ".join(cells) + f" | {iou:.4f} | {len(trials)} ({pruned}) |"
        )
    return "\n".join(lines) + "\n"


def write_report(run: str | Path, *, export: str | Path | None = None, step: str = "finetune") -> list[Path]:
    """Write ``table1.md``, ``history_<step>.png`` and ``importance_<step>.png`` into ``run``; returns them.

    With ``export``, the best model of ``step`` is also copied there.
    """
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as plots

    run = Path(run)
    studies = _studies(run)
    if not studies:
        raise InputError(f"{run}: holds no pretrain or finetune study")
    written = [run / "table1.md"]
    write_text_atomic(written[0], table1(studies))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's matplotlib plots are marked experimental
        for name, study in studies.items():
            done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
            if not done:
                continue
            ax = plots.plot_optimization_history(study)
            ax.set_title(f"{name}: score of each completed trial (pruned ones stopped early)")
            written.append(save_figure(ax.figure, run / f"history_{name}.png", dpi=100, bbox_inches="tight"))
            if len(done) >= 2 and len({tuple(sorted(t.params.items())) for t in done}) >= 2:
                ax = plots.plot_param_importances(study)
                ax.set_title(f"{name}: hyperparameter importances (fANOVA)")
                written.append(
                    save_figure(ax.figure, run / f"importance_{name}.png", dpi=100, bbox_inches="tight")
                )
    if export is not None:
        written.append(_export(studies, step, Path(export), run))
    return written


def _export(studies: dict[str, optuna.Study], step: str, target: Path, run: Path) -> Path:
    from dendriteseg.tune.hpo import copy_model, trial_model

    if step not in studies:
        raise InputError(f"--step: the run has no {step} study")
    try:
        best = studies[step].best_trial
    except ValueError:
        raise InputError(f"--step: no {step} trial finished; nothing to export") from None
    return copy_model(trial_model(best, run), target)
