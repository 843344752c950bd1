"""FC-DenseNet ("Tiramisu", Jegou et al. 2017) in 2D and 3D.

Dense blocks (each layer: norm, ReLU, 3x3 conv producing ``growth``
channels, dropout; its output concatenated to its input), transition down
(norm, ReLU, 1x1 conv, dropout, max-pool), transition up (a transposed
convolution of only the features the previous dense block made), skip
concatenation, and a 1x1 convolution to the class logits. The 3D version
pools z only in the first ``z_levels`` levels, like :class:`UNet`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dendriteseg.models.layers import Conv3d
from dendriteseg.models.padding import AnisotropicPooling, crop_to, pad_to_multiple


class _DenseLayer(nn.Sequential):
    def __init__(self, dims: int, c_in: int, growth: int, dropout: float):
        conv = nn.Conv2d if dims == 2 else Conv3d
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        drop = nn.Dropout2d if dims == 2 else nn.Dropout3d
        super().__init__(
            norm(c_in), nn.ReLU(inplace=True), conv(c_in, growth, 3, padding=1, bias=False), drop(dropout)
        )


class DenseBlock(nn.Module):
    """``n_layers`` densely connected layers; returns only the new features."""

    def __init__(self, dims: int, c_in: int, growth: int, n_layers: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(
            _DenseLayer(dims, c_in + i * growth, growth, dropout) for i in range(n_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = []
        for layer in self.layers:
            out = layer(x)
            x = torch.cat([x, out], 1)
            new.append(out)
        return torch.cat(new, 1)


class FCDense(AnisotropicPooling, nn.Module):
    """FC-DenseNet with configurable blocks.

    Parameters
    ----------
    dims : {2, 3}
    in_channels, out_channels : int
    base : int
        Channels of the first convolution.
    growth : int
        Growth rate of the dense layers.
    layers : sequence of int
        Dense layers per down-path block (one block per level).
    bottleneck : int
        Dense layers in the bottleneck block.
    dropout : float
    z_levels : int
        3D only: how many poolings also halve z.
    """

    def __init__(
        self,
        dims: int = 3,
        *,
        in_channels: int = 1,
        out_channels: int = 2,
        base: int = 16,
        growth: int = 8,
        layers: Sequence[int] = (3, 3, 3, 3),
        bottleneck: int = 4,
        dropout: float = 0.0,
        z_levels: int = 2,
    ):
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims}")
        layers = tuple(int(n) for n in layers)
        if not layers or min(layers) < 1 or bottleneck < 1:
            raise ValueError(f"layers and bottleneck must be >= 1, got {layers}, {bottleneck}")
        self.dims, self.depth = dims, len(layers)
        self.z_levels = min(z_levels, self.depth) if dims == 3 else 0
        conv = nn.Conv2d if dims == 2 else Conv3d
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        drop = nn.Dropout2d if dims == 2 else nn.Dropout3d
        transpose = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
        self.first = conv(in_channels, base, 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.transitions = nn.ModuleList()
        c = base
        skips = []
        for n in layers:
            self.down_blocks.append(DenseBlock(dims, c, growth, n, dropout))
            c += n * growth
            skips.append(c)
            self.transitions.append(
                nn.Sequential(norm(c), nn.ReLU(inplace=True), conv(c, c, 1), drop(dropout))
            )
        self.bottleneck = DenseBlock(dims, c, growth, bottleneck, dropout)
        new = bottleneck * growth
        self.ups = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for level in reversed(range(self.depth)):
            k = self._factor(level)
            self.ups.append(transpose(new, new, k, stride=k))
            c_in = new + skips[level]
            n = layers[level]
            self.up_blocks.append(DenseBlock(dims, c_in, growth, n, dropout))
            new = n * growth
        self.head = conv(c_in + new, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.shape[2:]
        x = pad_to_multiple(x, self.size_multiple())
        pool = F.max_pool2d if self.dims == 2 else F.max_pool3d
        x = self.first(x)
        skips = []
        for level, (block, transition) in enumerate(zip(self.down_blocks, self.transitions, strict=True)):
            x = torch.cat([x, block(x)], 1)
            skips.append(x)
            x = pool(transition(x), self._factor(level))
        new = self.bottleneck(x)
        for up, block, skip in zip(self.ups, self.up_blocks, reversed(skips), strict=True):
            x = torch.cat([up(new), skip], 1)
            new = block(x)
        x = self.head(torch.cat([x, new], 1))
        return crop_to(x, spatial)


def fcdense2d(**kwargs) -> FCDense:
    return FCDense(dims=2, **kwargs)


def fcdense3d(**kwargs) -> FCDense:
    return FCDense(dims=3, **kwargs)
