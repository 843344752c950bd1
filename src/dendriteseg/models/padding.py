"""The pooling schedule of our networks, padding inputs to sizes it can pool, and cropping back."""

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


class AnisotropicPooling:
    """Mixin: 2x pooling in-plane at every level, along z only in the first ``z_levels``.

    The class sets ``dims``, ``depth`` and ``z_levels``.
    """

    dims: int
    depth: int
    z_levels: int

    def _factor(self, level: int) -> tuple[int, ...]:
        if self.dims == 2:
            return (2, 2)
        return (2 if level < self.z_levels else 1, 2, 2)

    def size_multiple(self) -> tuple[int, ...]:
        """Input sizes must be multiples of these (others are padded)."""
        if self.dims == 2:
            return (2**self.depth,) * 2
        return (2**self.z_levels, 2**self.depth, 2**self.depth)
