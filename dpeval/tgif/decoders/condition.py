"""The condition of DiffIML's denoiser: a localizer's four feature scales fused into one map.

Each scale (strides 4, 8, 16, 32; for Lite Baseline the four RGB + forensic fused maps of
64/128/320/512 channels) goes through its own 1x1 convolution to ``out_channels`` (128),
is resized bilinearly to the latent grid (H/8 x W/8) and the four are concatenated and fused by a
3x3 convolution + BN + ReLU. Reference: DiffIML's ``ConditionEncoder`` (scu-zjz/DiffIML,
``model_zoo/diffiml/diffiml.py``), without its SegFormer backbone: here the localizer supplies
the features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ConditionFuser(nn.Module):
    """Four feature maps -> one (B, out_channels, h, w) condition map.

    Args:
        in_channels: channels of the feature maps, finest scale first (MiT-B2: 64/128/320/512).
        out_channels: channels of each projection and of the fused map (paper: 128).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 128) -> None:
        super().__init__()
        self.project = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.fuse = nn.Sequential(
            nn.Conv2d(len(in_channels) * out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Fuse ``features`` on a ``size`` = (h, w) grid.

        Args:
            features: one (B, C_i, H_i, W_i) map per scale, in the order of ``in_channels``.
            size: the output grid, the latent's (H/8, W/8).

        Raises:
            ValueError: when the number of maps or their channels differ from ``in_channels``.
        """
        if len(features) != len(self.project):
            raise ValueError(f"expected {len(self.project)} feature maps, got {len(features)}")
        resized = []
        for proj, feat in zip(self.project, features, strict=True):
            if feat.shape[1] != proj.in_channels:
                raise ValueError(
                    f"feature map has {feat.shape[1]} channels, expected {proj.in_channels}"
                )
            resized.append(
                F.interpolate(proj(feat), size=size, mode="bilinear", align_corners=False)
            )
        return self.fuse(torch.cat(resized, dim=1))
