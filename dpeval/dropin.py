"""DiffusionPrint as a drop-in for Noiseprint++ inside TruFor and MMFusion (see docs/tgif.md).

Both frameworks call their Noiseprint++ DnCNN as ``np(x)`` with ``x = uint8 RGB / 256`` at full
resolution and feed the result to a modality patch embedding built for **3 channels** (they tile
Noiseprint++'s single channel to 3). MMFusion's patch embedding is shared by all modalities
(Noiseprint++, Bayar, SRM), so a C-channel input cannot work there by changing ``in_chans``.

Decision: `DiffusionPrintDropIn` keeps the frozen DiffusionPrint map and **projects it to 3
channels** with a learnable 1x1 conv (``out_channels=3``, the default), trained with the
framework; no other line of the framework changes. ``out_channels=None`` returns the raw
C-channel map instead, for a framework whose modal patch embedding is rebuilt with ``in_chans=C``
(TruFor's ``extra_patch_embed1``).
"""

from __future__ import annotations

import torch
from torch import nn

from dptrain.model import DiffusionPrint

#: What the frameworks divide uint8 pixels by before calling Noiseprint++.
NOISEPRINT_SCALE = 256.0


class DiffusionPrintDropIn(nn.Module):
    """Noiseprint++'s call convention, DiffusionPrint's map.

    ``forward``: (B, 3, H, W) float = uint8 / 256 -> (B, 3, H, W) (projected) or (B, C, H, W).

    Args:
        extractor: the DiffusionPrint (e.g. ``DiffusionPrint.from_pretrained(path)``); frozen
            here (``requires_grad=False``, always in eval mode).
        out_channels: 3 to project with a learnable 1x1 conv (default), or None for the raw map.
    """

    def __init__(self, extractor: DiffusionPrint, out_channels: int | None = 3) -> None:
        super().__init__()
        self.extractor = extractor.eval().requires_grad_(False)
        self.project = (
            None if out_channels is None else nn.Conv2d(extractor.out_channels, out_channels, 1)
        )

    @property
    def out_channels(self) -> int:
        """Channels of the output: 3 when projecting, else DiffusionPrint's C."""
        return self.extractor.out_channels if self.project is None else self.project.out_channels

    def train(self, mode: bool = True) -> DiffusionPrintDropIn:
        super().train(mode)
        self.extractor.eval()  # frozen: BN keeps its pretraining statistics
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            # back to pixel units; DiffusionPrint applies its own input scaling (1/255)
            feats = self.extractor.extract(x * NOISEPRINT_SCALE)
        return feats if self.project is None else self.project(feats)
