"""Pad inputs to the sizes a network can pool, and crop its output back."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def pad_to_multiple(x: torch.Tensor, multiple: Sequence[int]) -> torch.Tensor:
    """Pad the spatial dims of ``x`` (N, C, ...) at their ends to multiples of ``multiple``.

    Reflect padding where the dimension allows it, else replicate.
    """
    spatial = x.shape[2:]
    pads = [math.ceil(s / m) * m - s for s, m in zip(spatial, multiple, strict=True)]
    if not any(pads):
        return x
    flat: list[int] = []
    for p in reversed(pads):
        flat += [0, p]
    mode = "reflect" if all(p < s for p, s in zip(pads, spatial, strict=True)) else "replicate"
    return F.pad(x, flat, mode=mode)


def crop_to(x: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
    """Crop the spatial dims of ``x`` back to ``spatial`` (a no-op when equal)."""
    if tuple(x.shape[2:]) == tuple(spatial):
        return x
    return x[(slice(None), slice(None), *(slice(0, s) for s in spatial))]
