"""Make a trained network fast for fp32 inference on the CPU.

PyTorch sends a batch-1 ``conv3d`` on a CPU without bf16 units to its
reference ``slow_conv3d`` kernel, and a batch-1 ``conv_transpose3d`` to
``slow_conv_transpose3d``, both far slower than oneDNN
(``benchmarks/inference.py`` measures the paths side by side).
:func:`optimise_for_cpu` returns a copy of the model in which

- each BatchNorm that follows a convolution is folded into it,
- every ``Conv3d`` runs through ``torch.mkldnn_convolution`` (oneDNN),
- every ``ConvTranspose3d`` whose kernel equals its stride (the U-Net's
  up-sampling) runs as one matrix product and a reshuffle,

so the same weights give the same logits (to float rounding) faster.
The copy is for inference only (no gradients).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def _is_plain_conv3d(conv: nn.Module) -> bool:
    return isinstance(conv, nn.Conv3d) and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


class OneDNNConv3d(nn.Module):
    """A ``Conv3d`` whose CPU fp32 forward always uses oneDNN."""

    def __init__(self, conv: nn.Conv3d):
        super().__init__()
        self.weight = nn.Parameter(conv.weight.detach().clone(), requires_grad=False)
        bias = conv.bias.detach().clone() if conv.bias is not None else None
        self.bias = nn.Parameter(bias, requires_grad=False) if bias is not None else None
        self.stride, self.padding = list(conv.stride), list(conv.padding)
        self.dilation, self.groups = list(conv.dilation), conv.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available():
            return torch.mkldnn_convolution(
                x, self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups
            )
        return F.conv3d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class MatmulUpsample3d(nn.Module):
    """A ``ConvTranspose3d`` with kernel == stride and no padding, as a matrix product.

    Each input voxel becomes an independent ``kd x kh x kw`` block of outputs,
    so the layer is a per-voxel linear map followed by a reshuffle.
    """

    def __init__(self, conv: nn.ConvTranspose3d):
        super().__init__()
        c_in, c_out = conv.in_channels, conv.out_channels
        self.kernel = tuple(conv.kernel_size)
        kd, kh, kw = self.kernel
        # weight (c_in, c_out, kd, kh, kw) -> (c_in, c_out * kd * kh * kw)
        weight = conv.weight.detach().reshape(c_in, c_out * kd * kh * kw).clone()
        self.weight = nn.Parameter(weight, requires_grad=False)
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(c_out)
        self.bias = nn.Parameter(bias.clone(), requires_grad=False)
        self.c_out = c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, d, h, w = x.shape
        kd, kh, kw = self.kernel
        y = torch.matmul(x.permute(0, 2, 3, 4, 1), self.weight)  # (n, d, h, w, c_out * k)
        y = y.view(n, d, h, w, self.c_out, kd, kh, kw)
        y = y.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(n, self.c_out, d * kd, h * kh, w * kw)
        return y.add_(self.bias.view(1, -1, 1, 1, 1))


def _fold_batchnorm(conv: nn.Conv3d, norm: nn.BatchNorm3d) -> nn.Conv3d:
    """A conv equal to ``norm(conv(x))`` in eval mode."""
    fused = copy.deepcopy(conv)
    scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
    fused.weight = nn.Parameter(conv.weight.detach() * scale.view(-1, 1, 1, 1, 1))
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(norm.running_mean)
    fused.bias = nn.Parameter((bias - norm.running_mean) * scale + norm.bias.detach())
    return fused


def _fold_sequences(module: nn.Module) -> None:
    for child in module.children():
        _fold_sequences(child)
    if not isinstance(module, nn.Sequential):
        return
    items = list(module)
    for i in range(len(items) - 1):
        conv, norm = items[i], items[i + 1]
        if _is_plain_conv3d(conv) and type(norm) is nn.BatchNorm3d and norm.track_running_stats:
            module[i] = _fold_batchnorm(conv, norm)
            module[i + 1] = nn.Identity()


def _swap_layers(module: nn.Module) -> None:
    for name, child in module.named_children():
        if _is_plain_conv3d(child):
            setattr(module, name, OneDNNConv3d(child))
        elif (
            type(child) is nn.ConvTranspose3d
            and tuple(child.kernel_size) == tuple(child.stride)
            and tuple(child.padding) == (0, 0, 0)
            and tuple(child.output_padding) == (0, 0, 0)
            and tuple(child.dilation) == (1, 1, 1)
            and child.groups == 1
        ):
            setattr(module, name, MatmulUpsample3d(child))
        else:
            _swap_layers(child)


def optimise_for_cpu(model: nn.Module) -> nn.Module:
    """An inference-only copy of ``model`` that runs fast in fp32 on the CPU (see module notes)."""
    fast = copy.deepcopy(model).eval()
    _fold_sequences(fast)
    _swap_layers(fast)
    for p in fast.parameters():
        p.requires_grad_(False)
    return fast
