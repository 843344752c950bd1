"""Layers shared by the networks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that pads z itself for two-slice inputs while training on the CPU.

    On CPUs with AVX-512 BF16, PyTorch's oneDNN bf16 backward of a 3x3x3
    convolution over 2 slices can return NaN gradients. Zero-padding z
    explicitly and convolving without z padding gives the same numbers
    through another kernel, which does not. The weights and their names
    are those of ``nn.Conv3d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pz = self.padding[0] if isinstance(self.padding, tuple) else 0
        if (
            self.training
            and pz
            and x.device.type == "cpu"
            and x.shape[2] == 2
            and self.padding_mode == "zeros"
        ):
            x = F.pad(x, (0, 0, 0, 0, pz, pz))
            return F.conv3d(
                x, self.weight, self.bias, self.stride, (0, *self.padding[1:]), self.dilation, self.groups
            )
        return super().forward(x)
