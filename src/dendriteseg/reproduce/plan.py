"""What the study runs: its budgets, its rows, and the paper's numbers to set beside ours.

One budget fixes everything a run depends on: the synthetic dataset, the
fixed settings of each architecture, the epochs each step trains and the
sizes of the search's trials. The searched models get exactly the epochs
the fixed ones do (each step's epochs, every trial counted, pruned ones
included): a share of them goes to the search's trials, the rest to
training its winner on (see :mod:`dendriteseg.reproduce.run`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dendriteseg.errors import InputError
from dendriteseg.tune.spaces import Budget

ARCHITECTURES = ("unet2d", "unet3d", "fcdense3d")
BASELINES = ("otsu", "kmeans", "emmpm", "forest")
METRICS = ("accuracy", "iou", "bf1", "bde")
TABLE2_COLUMNS = ("method", "architecture", "hpo", "finetune", "seed", *METRICS, "seconds")


@dataclass(frozen=True)
class Fixed:
    """One architecture's fixed (untuned) settings: the recipe a user starts with."""

    model_args: dict
    width: int
    batch: int
    pretrain_lr: float = 2e-3
    finetune_lr: float = 5e-4


@dataclass(frozen=True)
class StudyBudget:
    """Sizes of one run of the study."""

    preset: str  # synthetic dataset preset (dendriteseg.synth.build_dataset)
    seeds: int  # default number of seeds per CNN row
    steps_per_epoch: int
    pretrain_epochs: int  # step 1 (noisy labels), fixed and searched alike
    finetune_epochs: int  # step 2 (exact labels)
    search_share: float  # of each step's epochs, spent on the search's trials
    trials: Budget  # the trials' space: widths, batches, learning rates, at most max_epochs each
    fixed: dict[str, Fixed] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return self.pretrain_epochs + self.finetune_epochs


def _fixed(unet: dict, fcdense: dict, width: int, batch2d: int, batch3d: int) -> dict[str, Fixed]:
    return {
        "unet2d": Fixed(unet, width, batch2d),
        "unet3d": Fixed(unet, width, batch3d),
        "fcdense3d": Fixed(fcdense, width, batch3d),
    }


BUDGETS = {
    # a smoke run: minutes on a laptop, what the tests run
    "tiny": StudyBudget(
        preset="tiny",
        seeds=1,
        steps_per_epoch=3,
        pretrain_epochs=2,
        finetune_epochs=2,
        search_share=0.5,
        trials=Budget(3, 2, (32,), (2,), (1e-4, 1e-2), (1e-5, 1e-3)),
        fixed=_fixed({"base": 4, "depth": 2}, {"base": 4, "growth": 2}, 32, 4, 2),
    ),
    # about an hour on 2 CPU cores
    "cpu": StudyBudget(
        preset="small",
        seeds=3,
        steps_per_epoch=16,
        pretrain_epochs=12,
        finetune_epochs=6,
        search_share=0.5,
        trials=Budget(16, 2, (48, 64), (4, 8), (1e-4, 1e-2), (1e-5, 1e-3)),
        fixed=_fixed({"base": 8, "depth": 3}, {"base": 8, "growth": 4}, 48, 8, 4),
    ),
    # the paper's sizes, for a GPU
    "gpu": StudyBudget(
        preset="paper",
        seeds=3,
        steps_per_epoch=500,
        pretrain_epochs=20,
        finetune_epochs=13,
        search_share=0.5,
        trials=Budget(500, 8, (208, 256, 320), (4, 8, 16), (1e-6, 1e-2), (1e-7, 1e-3)),
        fixed=_fixed({"base": 32, "depth": 4}, {"base": 32, "growth": 12}, 256, 16, 8),
    ),
}


def study_budget(name: str) -> StudyBudget:
    if name not in BUDGETS:
        raise InputError(f"--budget: unknown {name!r}; choose one of {', '.join(BUDGETS)}")
    return BUDGETS[name]


# James et al. (2022), Table 2 (test groups): accuracy %, IoU %, BF1 %, BDE px
PAPER_TABLE2 = {
    ("2D SegNet", "no HPO/FT"): (99.67, 91.14, 97.14, 1.13),
    ("2D U-Net", "no HPO/FT"): (99.54, 88.30, 97.36, 1.42),
    ("3D U-Net", "no HPO/FT"): (99.56, 88.72, 97.45, 1.37),
    ("3D FCDense", "no HPO/FT"): (99.57, 88.84, 97.05, 1.55),
    ("2D U-Net", "HPO+FT"): (99.82, 94.88, 98.68, 0.70),
    ("3D U-Net", "HPO+FT"): (99.84, 95.56, 98.59, 0.58),
    ("3D FCDense", "HPO+FT"): (99.80, 94.37, 98.66, 0.68),
}
# James et al. (2022), Table 1: the settings the search chose
# (patch, step-1 lr and epochs, step-2 lr and epochs, batch)
PAPER_TABLE1 = {
    "unet3d": ("456x456x4", 1.07e-4, 4, 3.12e-6, 13, 8),
    "fcdense3d": ("560x560x4", 6.19e-5, 6, 1.96e-7, 11, 8),
    "unet2d": ("776x776x1", 1.71e-4, 5, 3.80e-4, 8, 16),
}
PAPER_NAMES = {"unet2d": "2D U-Net", "unet3d": "3D U-Net", "fcdense3d": "3D FCDense"}


@dataclass(frozen=True)
class Step:
    """One unit of the study: its result is one file, so a killed run resumes after the last."""

    name: str  # file stem of its result, e.g. "unet3d_searched_s0"
    kind: str  # dataset, baseline, fixed, searched, figures
    architecture: str | None = None
    seed: int = 0
    cost: float = 1.0  # a rough weight (epochs) for the time-left estimate


def plan_steps(budget: StudyBudget, seeds: int) -> list[Step]:
    """Every step of a run, in order: the dataset, the baselines, each CNN row per seed."""
    steps = [Step("dataset", "dataset", cost=budget.epochs)]
    steps += [Step(f"baseline_{name}", "baseline", cost=budget.epochs / 4) for name in BASELINES]
    for seed in range(seeds):
        for arch in ARCHITECTURES:
            steps.append(Step(f"{arch}_fixed_s{seed}", "fixed", arch, seed, cost=budget.epochs))
            steps.append(Step(f"{arch}_searched_s{seed}", "searched", arch, seed, cost=budget.epochs))
    steps.append(Step("figures", "figures", cost=budget.epochs / 2))
    return steps
