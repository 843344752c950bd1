"""The paper's two-step search against the untuned recipe settings at the same compute.

Both start from random weights on a dataset's manifest (default: the
benchmark, ``dendriteseg synth dataset data --preset small``):

* ``searched``: ``hpo pretrain`` (step 1 on the noisy labels) then ``hpo
  finetune`` from its best model (step 2 on the exact labels), ``--trials``
  each, ASHA pruning;
* ``untuned``: one pretraining and one fine-tuning at the settings of
  ``recipes/unet3d_default_base.yaml``'s steps (lr 2e-3 then 5e-4, patch 4 x 96
  x 96, batch 8), given as many training steps in all as the whole search
  used (every trial's epochs, pruned ones included), split as the search's
  two steps were.

Scores: IoU / BF1 / BDE on the manifest's exact test groups (never seen by
either), and the training steps each used.

    python benchmarks/hpo_vs_untuned.py DATA/manifest.json [--run runs/hpo_bench] [--trials 12] [--budget cpu]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import optuna
import torch

from dendriteseg.data import LabelledVolume, read_manifest, select
from dendriteseg.scoring import score_model
from dendriteseg.train import train
from dendriteseg.train.config import config_from_dict
from dendriteseg.tune.hpo import search
from dendriteseg.tune.search import open_study
from dendriteseg.tune.spaces import budget as budget_named


def _steps(run: Path, step: str, per_epoch: int) -> int:
    trials = open_study(run, step).get_trials(deepcopy=False)
    return sum(
        t.user_attrs.get("epochs_run", len(t.intermediate_values)) * per_epoch
        for t in trials
        if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", nargs="?", default=None)
    parser.add_argument("--run", default="runs/hpo_bench")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--budget", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data, under a minute: a check that it runs"
    )
    args = parser.parse_args()
    if args.smoke:
        from _smoke import smoke_folder, tiny_dataset

        args.manifest = str(tiny_dataset() / "manifest.json")
        args.run, args.trials, args.budget = str(smoke_folder() / "hpo"), 1, "tiny"
    if args.manifest is None:
        parser.error("a dataset manifest is needed (or --smoke)")
    if args.threads:
        torch.set_num_threads(args.threads)
    run, b = Path(args.run), budget_named(args.budget)
    base = config_from_dict(
        {
            "data": args.manifest,
            "out": str(run),
            "model": "unet3d",
            "patch": [4, 96, 96],
            "model_args": {"base": 16, "depth": 3},
            "batch": 8,
            "foreground": 0.6,
            "boundary_weight": 1.0,
        }
    )
    if args.smoke:
        base = base.replace(patch=(4, 32, 32), model_args={"base": 4, "depth": 2}, batch=2)
    pre = search(
        "pretrain",
        base,
        run,
        trials=args.trials,
        budget=args.budget,
        on_trial=lambda t: print("pretrain", t.number, t.state.name, t.params, t.value, flush=True),
    )
    ft = search(
        "finetune",
        base,
        run,
        parent=pre.best_model,
        trials=args.trials,
        budget=args.budget,
        on_trial=lambda t: print("finetune", t.number, t.state.name, t.params, t.value, flush=True),
    )
    pre_steps, ft_steps = (
        _steps(run, "pretrain", b.steps_per_epoch),
        _steps(run, "finetune", b.steps_per_epoch),
    )
    untuned_pre = train(
        base.replace(
            out=str(run / "untuned_pre"),
            lr=2e-3,
            epochs=4,
            warmup_steps=100,
            steps_per_epoch=max(1, pre_steps // 4),
            train_quality="noisy",
        )
    )
    untuned = train(
        base.replace(
            out=str(run / "untuned_ft"),
            lr=5e-4,
            epochs=4,
            warmup_steps=50,
            steps_per_epoch=max(1, ft_steps // 4),
            train_quality="exact",
        ),
        parent=untuned_pre,
    )
    tests = [
        LabelledVolume.from_entry(e)
        for e in select(read_manifest(args.manifest), quality="exact", split="test")
    ]
    print(f"training steps: search {pre_steps} + {ft_steps}, untuned the same")
    print(f"{'':10s}{'IoU':>8s}{'BF1':>8s}{'BDE':>8s}   settings")
    for name, model, settings in (
        ("searched", ft.best_model, {**pre.best_params, **{f"ft_{k}": v for k, v in ft.best_params.items()}}),
        ("untuned", untuned, "recipe"),
    ):
        s = score_model(model, tests, window=(0.0, 1.0), precision="fp32").mean
        print(f"{name:10s}{s['iou']:8.4f}{s['bf1']:8.4f}{s['bde']:8.2f}   {settings}", flush=True)


if __name__ == "__main__":
    main()
