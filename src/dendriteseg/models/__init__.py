"""Segmentation networks by name: ``build_model("unet3d", base=16)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from dendriteseg.models.fcdense import FCDense, fcdense2d, fcdense3d
from dendriteseg.models.unet import UNet, unet2d, unet3d

MODELS: dict[str, Callable[..., nn.Module]] = {
    "unet2d": unet2d,
    "unet3d": unet3d,
    "fcdense2d": fcdense2d,
    "fcdense3d": fcdense3d,
}


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a model by name; ``KeyError`` lists the valid names."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None
    return factory(**kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "MODELS",
    "FCDense",
    "UNet",
    "build_model",
    "count_parameters",
    "fcdense2d",
    "fcdense3d",
    "unet2d",
    "unet3d",
]
