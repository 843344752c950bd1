"""Training configuration: one frozen dataclass, read and written as YAML here only.

``load_config(path, overrides=["lr=1e-4", "augment.rotate_deg=30"])``
applies ``--set`` style overrides with dotted keys; unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from dendriteseg.data.augment import AugmentConfig
from dendriteseg.device import PRECISIONS
from dendriteseg.errors import InputError, check_ranges

LR_SCHEDULES = ("cosine", "constant")
# allowed ranges of numeric settings: (low, high, whether low itself is allowed); None: unbounded
RANGES = {
    "epochs": (1, None, True),
    "steps_per_epoch": (1, None, True),
    "batch": (1, None, True),
    "lr": (0.0, 1.0, False),
    "warmup_steps": (0, None, True),
    "min_lr": (0.0, 1.0, True),
    "weight_decay": (0.0, None, True),
    "dice_weight": (0.0, None, True),
    "boundary_weight": (0.0, None, True),
    "foreground": (0.0, 1.0, True),
    "seed": (0, None, True),
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs.

    ``data`` is a manifest; ``train_quality`` picks its noisy (pretraining)
    or exact (fine-tuning) entries; validation uses the exact ``val`` split
    when there is one, else the ``val`` split of ``train_quality``.

    ``precision`` is the training precision: "auto" is fp32 on the CPU and
    bf16 (or fp16) on CUDA (:func:`dendriteseg.device.training_precision`).

    ``lr_schedule`` is "cosine" (linear warm-up over ``warmup_steps``, then
    cosine decay to ``min_lr`` x ``lr`` at the last step) or "constant".
    """

    data: str = ""
    out: str = "runs/unet3d"
    model: str = "unet3d"
    model_args: dict[str, Any] = field(default_factory=lambda: {"base": 16, "depth": 4})
    train_quality: str = "noisy"
    patch: tuple[int, int, int] = (4, 128, 128)
    batch: int = 8
    epochs: int = 4
    steps_per_epoch: int = 100
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr: float = 0.02
    weight_decay: float = 1e-4
    dice_weight: float = 1.0
    boundary_weight: float = 0.0
    foreground: float = 0.5
    precision: str = "auto"
    seed: int = 0
    device: str = "auto"
    freeze_encoder: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        check_ranges(self, RANGES)
        if len(self.patch) != 3 or min(self.patch) < 1:
            raise InputError(f"patch: three sizes Z, W, W of at least 1, got {list(self.patch)}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise InputError(f"lr_schedule: expected {' or '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision: expected {', '.join(PRECISIONS)}, got {self.precision!r}")

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def _coerce(name: str, value: Any, current: Any) -> Any:
    if isinstance(current, bool):
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise InputError(f"{name}: expected true/false, got {value!r}")
        return bool(value)
    if isinstance(current, tuple):
        items = value.split(",") if isinstance(value, str) else list(value)
        if len(items) != len(current):
            raise InputError(f"{name}: expected {len(current)} values, got {value!r}")
        return tuple(type(c)(v) for c, v in zip(current, items, strict=True))
    if isinstance(current, dict):
        if isinstance(value, str):
            import yaml

            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise InputError(f"{name}: expected a mapping, got {value!r}")
        return dict(value)
    try:
        return type(current)(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected {type(current).__name__}, got {value!r}") from None


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    default = cls()
    known = {f.name: f for f in fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key == "amp" and not prefix:
            raise InputError(f"amp: renamed precision ({', '.join(PRECISIONS)}; amp none is precision fp32)")
        if key not in known:
            raise InputError(f"unknown setting {prefix}{key!r}; valid: {', '.join(known)}")
        current = getattr(default, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise InputError(f"{prefix}{key}: expected a mapping")
            kwargs[key] = _build(type(current), value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(prefix + key, value, current)
    return cls(**kwargs)


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` strings (dotted keys for nested settings)."""
    import yaml

    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in values.items()}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InputError(f"--set: expected KEY=VALUE, got {item!r}")
        value = yaml.safe_load(raw) if raw.strip() else raw
        target = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise InputError(f"--set {key}: {part} is not a group of settings")
        target[parts[-1]] = value
    return out


def config_from_dict(values: dict[str, Any], overrides: list[str] | None = None) -> TrainConfig:
    return _build(TrainConfig, apply_overrides(values, overrides or []))


def read_yaml_mapping(path: str | Path, what: str = "config") -> dict[str, Any]:
    """A YAML file's mapping; one-line errors name the file (``what``: config, recipe, ...)."""
    import yaml

    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what} ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise InputError(f"{path}: a {what} is a mapping of settings")
    return values


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (or start from the defaults) and apply overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        values = read_yaml_mapping(path, "config")
        if values.get("data") and not Path(values["data"]).is_absolute():
            values["data"] = str(path.parent / values["data"])
    return config_from_dict(values, overrides)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    out = asdict(config)
    out["patch"] = list(config.patch)
    return out


def save_config(config: TrainConfig, path: str | Path) -> None:
    import yaml

    from dendriteseg.io import write_text_atomic

    write_text_atomic(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
