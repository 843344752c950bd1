"""``dendriteseg finetune`` (a user's labelled slices), ``dendriteseg hpo`` and ``dendriteseg reproduce``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer import Argument as Arg
from typer import Option as Opt

from dendriteseg.cli.common import _fail, _int_list, _progress, _say, app, command


def _run_training(config_path: Path | None, overrides: list[str] | None, parent: Path | None) -> None:
    from rich.progress import TextColumn

    from dendriteseg.train import load_config, train
    from dendriteseg.train.fit import describe_epoch

    config = load_config(config_path, overrides or [])
    with _progress(TextColumn("epoch {task.fields[epoch]}")) as bar:
        task = bar.add_task("train", total=config.steps_per_epoch, epoch=1, rate="")

        def on_epoch(epoch: int, record: dict) -> None:
            _say(describe_epoch(record), err=True)
            bar.update(task, completed=0, epoch=epoch + 1)

        best = train(
            config,
            parent=parent,
            on_epoch=on_epoch,
            on_step=lambda step, total, rate: bar.update(task, completed=step, rate=f"{rate:.1f} patches/s"),
        )
    _say(f"best model: {best}")


TrainConfigArg = Annotated[Path | None, Arg(help="YAML config (defaults if omitted).")]
TrainSetOpt = Annotated[list[str] | None, Opt("--set", help="Override KEY=VALUE (dotted keys).")]


PRECISION_HELP = "Training precision: auto (fp32 on the CPU, bf16 or fp16 on CUDA), fp32, bf16 or fp16."


@command(name="train")
def train_command(
    config: TrainConfigArg = None,
    parent: Annotated[
        str | None,
        Opt("--from", help="Fine-tune this model instead of training from scratch (its architecture)."),
    ] = None,
    precision: Annotated[str | None, Opt(help=PRECISION_HELP + " Default: the config's.")] = None,
    set_: TrainSetOpt = None,
) -> None:
    """Train a model on a dataset manifest, or fine-tune one (--from) on it (resumes a killed run)."""
    overrides = [*(set_ or []), *([f"precision={precision}"] if precision else [])]
    _run_training(config, overrides, Path(parent) if parent else None)


hpo_app = typer.Typer(
    help="The paper's two-step hyperparameter search (ASHA) and its report.", no_args_is_help=True
)
app.add_typer(hpo_app, name="hpo")


@command()
def finetune(
    inputs: list[str] = Arg(..., help="Image(s): volumes or 2D images, each with --labels or --scribbles."),
    labels: list[str] | None = Opt(None, help="Labels per image: 0/1 or 0/255, the image's shape."),
    slices: str | None = Opt(
        None, help="Only these labelled slices count: Z,Z,... (labels whole or just them)."
    ),
    scribbles: list[str] | None = Opt(
        None, help="Sparse labels per image: 0 unlabelled, 1 background, 2 dendrite."
    ),
    parent: str | None = Opt(
        None,
        "--from",
        help="Model to start from (default: unet2d_default for 2D images or one labelled slice, else 3D).",
    ),
    minutes: float | None = Opt(None, help="Time budget: the search, then training its winner (default 5)."),
    epochs: int | None = Opt(
        None, help="Budget in epochs trained (all trials together) instead of minutes: an exact rerun."
    ),
    trials: int | None = Opt(None, help="At most this many trials (default: as the budget allows)."),
    budget: str = Opt("cpu", help="Trial sizes: cpu, paper (GPU) or tiny (smoke test)."),
    finish: str = Opt(
        "all-labels",
        help="After the search: all-labels (the winner trained on every label for the time left), "
        "continue (on the training labels, validated, weights averaged) or refit.",
    ),
    out: Path | None = Opt(None, "--out", "-o", help="Model file to write (.safetensors)."),
    precision: str = Opt("auto", help=PRECISION_HELP),
) -> None:
    """Fine-tune a model on your own labelled slices, its settings searched within a time budget."""
    if len(inputs) == 1 and inputs[0].endswith((".yaml", ".yml")) and not labels and not scribbles:
        _fail(
            f"finetune takes images with --labels or --scribbles; to fine-tune on a dataset config, run: "
            f"dendriteseg train {inputs[0]} --from MODEL --set train_quality=exact"
        )
    _finetune_images(
        inputs,
        labels or [],
        slices,
        scribbles or [],
        parent,
        (minutes, epochs),
        trials,
        budget,
        finish,
        out,
        precision,
    )


def _finetune_images(
    inputs, labels, slices, scribbles, parent, budgets, trials, budget, finish, out, precision
) -> None:  # noqa: ANN001, E501
    from rich.progress import TextColumn

    from dendriteseg.io.outputs import check_distinct
    from dendriteseg.tune.finetune import finetune_on_labels
    from dendriteseg.tune.labels import read_user_scan

    given = labels or scribbles
    if out is None:
        _fail("finetune needs --out MODEL.safetensors")
    check_distinct([*inputs, *given, *([parent] if parent else [])], {"-o": out})
    if (labels and scribbles) or len(given) != len(inputs):
        _fail("finetune: give one --labels or one --scribbles file per image")
    scans = [
        read_user_scan(
            image,
            None if scribbles else lab,
            slices=_int_list(slices, "slices"),
            scribbles=lab if scribbles else None,
        )
        for image, lab in zip(inputs, given, strict=True)
    ]
    with _progress(TextColumn("{task.description}")) as bar:
        task = bar.add_task("search", total=1.0, rate="")
        result = finetune_on_labels(
            scans,
            out,
            start=parent,
            minutes=budgets[0],
            epochs=budgets[1],
            trials=trials,
            budget=budget,
            finish=finish,
            precision=precision,
            on_trial=lambda line: _say(line, err=True),
            on_epoch=lambda used: bar.update(task, completed=used),
        )
    before, after = result.before, result.after
    _say(
        f"validation ({_describe_split(result.split)}): "
        f"IoU {before['iou']:.4f} before, {after['iou']:.4f} after"
        + (
            " (the search's best, measured before it trained on every label)"
            if result.every_label_epochs
            else ""
        )
    )
    _say(f"kept {result.kept}; settings {result.chosen or 'of the starting model'}")
    _say(f"model: {result.model}")


def _describe_split(split: dict) -> str:
    if split.get("by") == "slices":
        return "held-out slices " + ", ".join(f"{name} z{z}" for name, z in split["validation"])
    return f"{split.get('validation_pixels', 0)} held-out pixels"


def _search(
    step: str,
    config: Path | None,
    parent: str | None,
    run: Path | None,
    trials: int,
    budget: str,
    minutes: float | None,
    dask: str | None,
    set_: list[str] | None,
) -> None:
    from dendriteseg.infer.predictor import resolve_model_path
    from dendriteseg.train import load_config
    from dendriteseg.tune.hpo import search
    from dendriteseg.tune.search import describe_trial

    base = load_config(config, set_ or [])
    result = search(
        step,
        base,
        run or Path(base.out),
        parent=resolve_model_path(parent) if parent else None,
        trials=trials,
        budget=budget,
        seconds=minutes * 60 if minutes is not None else None,
        dask=dask,
        on_trial=lambda t: _say(describe_trial(t), err=True),
    )
    if result.best_model is None:
        _fail(f"{run or base.out}: no trial finished; nothing to export", code=1)
    _say(
        f"{result.trials} trials ({result.pruned} pruned); "
        f"best score {result.best_value:.4f} with {result.best_params}"
    )
    _say(f"best model: {result.best_model}")


ConfigArg = Arg(None, help="YAML training config: data manifest, architecture, loss (defaults if omitted).")
RunOpt = Opt(None, "--run", help="Run folder (default: the config's out); a killed search resumes there.")
TrialsOpt = Opt(30, help="Trials to finish (completed or pruned).")
BudgetOpt = Opt("cpu", help="Search-space sizes: cpu, paper (GPU) or tiny.")
MinutesOpt = Opt(None, help="Stop starting trials after this long.")
DaskOpt = Opt(None, help="Dask scheduler address: its workers share the study.")
SetOpt = Opt(None, "--set", help="Override KEY=VALUE.")


@command(hpo_app, "pretrain")
def hpo_pretrain(
    config: Path | None = ConfigArg,
    run: Path | None = RunOpt,
    trials: int = TrialsOpt,
    budget: str = BudgetOpt,
    minutes: float | None = MinutesOpt,
    dask: str | None = DaskOpt,
    set_: list[str] | None = SetOpt,
) -> None:
    """Step 1: search patch width, learning rate, augmentations, epochs and batch on the noisy labels."""
    _search("pretrain", config, None, run, trials, budget, minutes, dask, set_)


@command(hpo_app, "finetune")
def hpo_finetune(
    config: Path | None = ConfigArg,
    parent: str = Opt(..., "--from", help="Model to fine-tune."),
    run: Path | None = RunOpt,
    trials: int = TrialsOpt,
    budget: str = BudgetOpt,
    minutes: float | None = MinutesOpt,
    dask: str | None = DaskOpt,
    set_: list[str] | None = SetOpt,
) -> None:
    """Step 2: search learning rate, epochs and augmentations on the exact labels (patch and batch fixed)."""
    _search("finetune", config, parent, run, trials, budget, minutes, dask, set_)


@command(hpo_app, "report")
def hpo_report(
    run: Path = Arg(..., help="Run folder of hpo pretrain/finetune."),
    export: Path | None = Opt(None, help="Also copy the best model of --step here."),
    step: str = Opt("finetune", help="Whose best model --export copies: pretrain or finetune."),
) -> None:
    """Write Table 1 (chosen settings per step), the optimisation history and parameter importances."""
    from dendriteseg.tune.report import write_report

    for path in write_report(run, export=export, step=step):
        _say(str(path))


@command()
def reproduce(
    out: Path = Arg(..., help="Folder for the study (new or empty; a killed run's folder resumes)."),
    budget: str = Opt("cpu", help="tiny (a smoke run of minutes), cpu (about an hour on 2 cores) or gpu."),
    seeds: int | None = Opt(None, help="Seeds per CNN row (default 3; tiny: 1). More seeds later add rows."),
    data: Path | None = Opt(None, help="A dataset manifest to study instead of the budget's synthetic data."),
) -> None:
    """Reproduce the paper's study: baselines, untuned and searched CNNs, Table 2 and a report."""
    from dendriteseg.reproduce import reproduce as run_study

    result = run_study(
        out,
        budget=budget,
        seeds=seeds,
        data=data,
        on_progress=lambda line: _say(line, err=True),
        command=f"dendriteseg reproduce {out} --budget {budget}"
        + (f" --seeds {seeds}" if seeds else "")
        + (f" --data {data}" if data else ""),
    )
    for path in result.files:
        _say(str(path))
