"""Search spaces: the paper's Table 1, scaled by a budget preset for machines without a big GPU.

Step 1 (pretraining on noisy labels) searches patch width, learning rate,
augmentation set, epochs and batch size; patch depth is fixed (4 for 3D
models, 1 for 2D). Step 2 (fine-tuning on exact labels) searches learning
rate, epochs and augmentation set with patch and batch fixed, and, for a
user's own slices, whether to freeze the encoder. The paper's patch
overlap is not searched: patches here are drawn at random positions, so
there is no extraction stride to tune.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from dendriteseg.data.augment import AugmentConfig
from dendriteseg.errors import InputError

_NONE = dict(
    flip=False,
    p_affine=0.0,
    brightness=0.0,
    contrast=0.0,
    noise=0.0,
    p_blur=0.0,
    p_rings=0.0,
    p_streaks=0.0,
    drift=0.0,
)
AUGMENT_SETS: dict[str, AugmentConfig] = {  # weakest to strongest
    "none": AugmentConfig(**_NONE),
    "flips": AugmentConfig(**{**_NONE, "flip": True}),
    "standard": AugmentConfig(),
    "strong": AugmentConfig(zoom_min=0.8, zoom_max=1.25, gamma=0.3, curve=0.5, p_exterior=0.2, noise=0.12),
}


@dataclass(frozen=True)
class Budget:
    """How large a search's trials may be."""

    steps_per_epoch: int
    max_epochs: int
    patch_widths: tuple[int, ...]
    batches: tuple[int, ...]
    pretrain_lr: tuple[float, float]
    finetune_lr: tuple[float, float]


BUDGETS = {
    # the paper's ranges (patch 200 px to the whole slice, batch 4-16, lr 1e-7 to 1e-3) on a GPU
    "paper": Budget(500, 20, (208, 256, 320), (4, 8, 16), (1e-7, 1e-3), (1e-7, 1e-3)),
    # the same kinds of choice, small enough for trials of minutes on a CPU
    "cpu": Budget(40, 12, (48, 64, 96), (4, 8), (1e-5, 3e-3), (1e-6, 1e-3)),
    # seconds per trial: for tests and smoke checks
    "tiny": Budget(6, 3, (32,), (2,), (1e-4, 1e-2), (1e-4, 1e-2)),
}


def budget(name: str | Budget) -> Budget:
    """A budget preset by name (a :class:`Budget` is returned as it is)."""
    if isinstance(name, Budget):
        return name
    if name not in BUDGETS:
        raise InputError(f"budget: unknown {name!r}; choose one of {', '.join(BUDGETS)}")
    return BUDGETS[name]


def pretrain_space(trial: optuna.Trial, b: Budget, dims: int) -> dict:
    """Step 1's settings of one trial (as TrainConfig fields)."""
    width = trial.suggest_categorical("patch_width", list(b.patch_widths))
    return {
        "patch": (1 if dims == 2 else 4, width, width),
        "lr": trial.suggest_float("lr", *b.pretrain_lr, log=True),
        "augment": AUGMENT_SETS[trial.suggest_categorical("augment", list(AUGMENT_SETS))],
        "epochs": trial.suggest_int("epochs", min(2, b.max_epochs), b.max_epochs),
        "batch": trial.suggest_categorical("batch", list(b.batches)),
    }


def finetune_space(trial: optuna.Trial, b: Budget, *, freeze: bool = False) -> dict:
    """Step 2's settings of one trial: patch and batch stay the parent's."""
    settings = {
        "lr": trial.suggest_float("lr", *b.finetune_lr, log=True),
        "augment": AUGMENT_SETS[trial.suggest_categorical("augment", list(AUGMENT_SETS))],
        "epochs": trial.suggest_int("epochs", min(2, b.max_epochs), b.max_epochs),
    }
    if freeze:
        settings["freeze_encoder"] = trial.suggest_categorical("freeze_encoder", [False, True])
    return settings
