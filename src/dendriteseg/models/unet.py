"""U-Nets for 2D slices and thin 3D slabs.

``UNet(dims=2)`` is Ronneberger's U-Net; ``UNet(dims=3, residual=True)`` is
the paper's residual 3D U-Net (each block: two 3x3x3 conv + norm + ReLU,
plus a 1x1x1 convolution of the block's input summed with them, Figure 2b).
3D models pool along z only in the first ``z_levels`` levels, so a model
trained on 4-slice patches (``z_levels=2``) pools 4 -> 2 -> 1 and then only
in-plane. Any depth divisible by ``2**z_levels`` runs, but a depth other
than the training patches' changes what the deepest layers see (their z
extent), and with it the output, so inference tiles are as deep as the
training patches (``benchmarks/tile_depth.py`` measures the difference).
Inputs whose size does not divide are padded (reflect) and the output
cropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dendriteseg.models.layers import Conv3d
from dendriteseg.models.padding import AnisotropicPooling, crop_to, pad_to_multiple


class ConvBlock(nn.Module):
    """Two conv + norm + ReLU, optionally with a 1x1 residual convolution."""

    def __init__(self, dims: int, c_in: int, c_out: int, *, residual: bool):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else Conv3d
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        self.body = nn.Sequential(
            conv(c_in, c_out, 3, padding=1, bias=False),
            norm(c_out),
            nn.ReLU(inplace=True),
            conv(c_out, c_out, 3, padding=1, bias=False),
            norm(c_out),
        )
        self.skip = conv(c_in, c_out, 1) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.skip is not None:
            y += self.skip(x)  # in place: full-plane inference tiles are hundreds of MB per map
        return F.relu(y, inplace=True)


class UNet(AnisotropicPooling, nn.Module):
    """U-Net with configurable depth and width, 2D or 3D.

    Parameters
    ----------
    dims : {2, 3}
    in_channels, out_channels : int
        Output is ``out_channels`` logits per voxel (2: background, dendrite).
    base : int
        Channels of the first level; doubled at each level.
    depth : int
        Number of poolings.
    residual : bool
        Add the 1x1 residual convolution to each block.
    z_levels : int
        3D only: how many of the ``depth`` poolings also halve z.
    """

    def __init__(
        self,
        dims: int = 2,
        *,
        in_channels: int = 1,
        out_channels: int = 2,
        base: int = 16,
        depth: int = 4,
        residual: bool = False,
        z_levels: int = 2,
    ):
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims}")
        if depth < 1 or base < 1:
            raise ValueError(f"depth and base must be >= 1, got {depth}, {base}")
        self.dims, self.depth = dims, depth
        self.z_levels = min(z_levels, depth) if dims == 3 else 0
        widths = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        c = in_channels
        for w in widths:
            self.down.append(ConvBlock(dims, c, w, residual=residual))
            c = w
        transpose = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
        for level in reversed(range(depth)):
            k = self._factor(level)
            self.up.append(transpose(widths[level + 1], widths[level], k, stride=k))
            self.merge.append(ConvBlock(dims, 2 * widths[level], widths[level], residual=residual))
        conv = nn.Conv2d if dims == 2 else Conv3d
        self.head = conv(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.shape[2:]
        x = pad_to_multiple(x, self.size_multiple())
        skips = []
        pool = F.max_pool2d if self.dims == 2 else F.max_pool3d
        for level, block in enumerate(self.down):
            x = block(x)
            if level < self.depth:
                skips.append(x)
                x = pool(x, self._factor(level))
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([up(x), skips.pop()], dim=1))  # pop: free each skip once used
        x = self.head(x)
        return crop_to(x, spatial)


def unet2d(**kwargs) -> UNet:
    """2D U-Net (Ronneberger et al. 2015)."""
    return UNet(dims=2, **kwargs)


def unet3d(**kwargs) -> UNet:
    """Residual 3D U-Net (Cicek et al. 2016 with the paper's 1x1x1 skip)."""
    kwargs.setdefault("residual", True)
    return UNet(dims=3, **kwargs)
