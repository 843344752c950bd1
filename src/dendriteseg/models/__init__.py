"""Segmentation networks by name: ``build_model("unet3d", base=16)``.

Each architecture has a :class:`ModelSpec`: its factory, whether it sees
2D slices or 3D slabs, the attribute that holds its encoder (what
``freeze_encoder`` freezes) and its default training patch and batch.
Code asks the spec (``spec_for(name).dims``) instead of parsing names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from dendriteseg.models.fcdense import FCDense, fcdense2d, fcdense3d
from dendriteseg.models.unet import UNet, unet2d, unet3d


@dataclass(frozen=True)
class ModelSpec:
    """What the rest of the package needs to know about an architecture."""

    factory: Callable[..., nn.Module]
    dims: int
    encoder: tuple[str, ...]  # attributes holding the encoder's modules
    patch: tuple[int, int, int]  # default training patch (Z, W, W); Z = 1 for 2D models
    batch: int  # default patches per step


MODELS: dict[str, ModelSpec] = {
    "unet2d": ModelSpec(unet2d, 2, ("down",), (1, 128, 128), 32),
    "unet3d": ModelSpec(unet3d, 3, ("down",), (4, 128, 128), 8),
    "fcdense2d": ModelSpec(fcdense2d, 2, ("first", "down_blocks", "transitions"), (1, 128, 128), 32),
    "fcdense3d": ModelSpec(fcdense3d, 3, ("first", "down_blocks", "transitions"), (4, 128, 128), 8),
}


def spec_for(name: str) -> ModelSpec:
    """The spec of an architecture; ``KeyError`` lists the valid names."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a model by name; ``KeyError`` lists the valid names."""
    return spec_for(name).factory(**kwargs)


def encoder_parameters(model: nn.Module, name: str) -> list[nn.Parameter]:
    """The parameters of ``model``'s encoder (architecture ``name``): what freezing the encoder freezes."""
    params: list[nn.Parameter] = []
    for attribute in spec_for(name).encoder:
        params += list(getattr(model, attribute).parameters())
    return params


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def architectures() -> dict[str, int]:
    """Each architecture's name and its parameter count with default arguments."""
    return {name: count_parameters(build_model(name)) for name in MODELS}


__all__ = [
    "MODELS",
    "FCDense",
    "ModelSpec",
    "UNet",
    "architectures",
    "build_model",
    "count_parameters",
    "encoder_parameters",
    "fcdense2d",
    "fcdense3d",
    "spec_for",
    "unet2d",
    "unet3d",
]
