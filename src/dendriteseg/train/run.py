"""The composition root: from a config (and optionally a parent model) to a trained model file."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dendriteseg import __version__
from dendriteseg.data import LabelledVolume, PatchSampler, read_manifest, select
from dendriteseg.device import resolve_device, training_precision
from dendriteseg.errors import InputError
from dendriteseg.models import build_model, spec_for
from dendriteseg.models.files import ModelInfo, load_model, read_model_info
from dendriteseg.preprocess import NORMALISATION
from dendriteseg.train.config import TrainConfig, save_config
from dendriteseg.train.fit import fit

log = logging.getLogger(__name__)


def _volumes(entries: list, what: str, manifest: str) -> list[LabelledVolume]:
    if not entries:
        raise InputError(f"{manifest}: no {what} entries")
    return [LabelledVolume.from_entry(e) for e in entries]


def check_patch(volumes: list[LabelledVolume], patch: tuple[int, int, int]) -> None:
    """Refuse training patches larger than a training volume (its labelled slices), naming both."""
    for vol in volumes:
        if any(p > n for p, n in zip(patch, vol.image.shape, strict=True)):
            shape = "x".join(str(n) for n in vol.image.shape)
            raise InputError(
                f"patch: {list(patch)} is larger than training volume {vol.name} ({shape}); "
                "use a patch that fits every training volume"
            )


def train(
    config: TrainConfig,
    *,
    parent: str | Path | None = None,
    resume: bool = True,
    on_step: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> Path:
    """Train (or, with ``parent``, fine-tune) a model; returns ``<out>/best.safetensors``.

    Training uses the manifest's ``train`` entries of ``config.train_quality``;
    validation its exact ``val`` entries (or, if none, the ``val`` entries of
    that quality). With ``parent`` the architecture and weights come from that
    model file and its provenance is recorded as the new model's parent.
    The settings are written to ``<out>/config.yaml`` (at the start of a new
    run and when it ends).
    """
    if not config.data:
        raise InputError("config: 'data' (a dataset manifest) is required")
    training_precision(config.precision, resolve_device(config.device))  # refused before any data is read
    entries = read_manifest(config.data)
    train_entries = select(entries, quality=config.train_quality, split="train")
    val_entries = select(entries, quality="exact", split="val") or select(
        entries, quality=config.train_quality, split="val"
    )
    train_volumes = _volumes(train_entries, f"{config.train_quality} train", config.data)
    val_volumes = [LabelledVolume.from_entry(e) for e in val_entries]
    provenance: dict[str, Any] = {
        "data": str(config.data),
        "train_quality": config.train_quality,
        "train_entries": [e.name for e in train_entries],
        "val_entries": [e.name for e in val_entries],
    }
    return train_on(
        config,
        train_volumes,
        val_volumes,
        parent=parent,
        provenance=provenance,
        resume=resume,
        on_step=on_step,
        on_epoch=on_epoch,
    )


def train_on(
    config: TrainConfig,
    train_volumes: list[LabelledVolume],
    val_volumes: list[LabelledVolume],
    *,
    parent: str | Path | None = None,
    provenance: dict[str, Any] | None = None,
    resume: bool = True,
    on_step: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
) -> Path:
    """:func:`train` on volumes in memory (``config.data`` unused); ``provenance`` says what they are.

    Labels may be partial (:data:`~dendriteseg.data.UNLABELLED` where unknown).
    """
    provenance = {
        "dendriteseg": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **(provenance or {}),
    }
    if parent is not None:
        parent_info = read_model_info(parent)
        architecture, arguments = parent_info.architecture, parent_info.arguments
    else:
        architecture, arguments = config.model, dict(config.model_args)
    if spec_for(architecture).dims == 2 and config.patch[0] != 1:
        config = config.replace(patch=(1, *config.patch[1:]))
    check_patch(train_volumes, config.patch)  # before any tensor is built
    training_precision(config.precision, resolve_device(config.device))
    if parent is not None:
        model, parent_info = load_model(parent)
        provenance["parent"] = {
            "file": str(parent),
            "provenance": {k: v for k, v in parent_info.provenance.items() if k != "history"},
        }
    else:
        if spec_for(architecture).dims == 3:
            arguments.setdefault("z_levels", max(0, int(config.patch[0]).bit_length() - 1))
        torch.manual_seed(config.seed)  # the initial weights are part of a seeded run
        try:
            model = build_model(architecture, **arguments)
        except TypeError as exc:
            raise InputError(f"model_args do not fit {architecture}: {exc}") from None
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "resume.safetensors").exists():  # a folder of another run keeps its config (fit refuses it)
        save_config(config, out / "config.yaml")
    sampler = PatchSampler(
        train_volumes,
        config.patch,
        foreground=config.foreground,
        rewindow=config.augment.rewindow,
        rng=config.seed,
    )
    info = ModelInfo(architecture, arguments, dict(NORMALISATION), provenance)
    fit(model, sampler, val_volumes, config, info=info, resume=resume, on_step=on_step, on_epoch=on_epoch)
    save_config(config, out / "config.yaml")  # as run to the end (a resumed run may change its epochs)
    return out / "best.safetensors"
