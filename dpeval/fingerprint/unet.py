"""The fingerprint generator of Deep Image Fingerprint: a U-Net (architecture only).

As in the authors' code (``model.Unet`` with ``arch=32, depth=4``): ``depth`` encoder blocks
(two 3x3 conv + BN + LeakyReLU, then 2x2 max-pooling) doubling the channels from
``base_channels``; a bottleneck block followed by a 2x2 stride-2 transposed conv + BN; ``depth``
decoder blocks, each on the concatenation of the skip connection and the upsampled features
(all but the last end in a transposed conv + BN); a final 1x1 conv and tanh. Its input is a
fixed random tensor (a deep-image-prior setup, see `dpeval.fingerprint.engine`); its output is
the fingerprint, with values in (-1, 1).
"""

from __future__ import annotations

import torch
from torch import nn

from dptrain.hub import HubMixin


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two (3x3 conv, BN, LeakyReLU) layers; the spatial size is kept."""
    layers: list[nn.Module] = []
    for c_in in (in_channels, out_channels):
        layers += [
            nn.Conv2d(c_in, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


def upsample(channels: int) -> nn.Sequential:
    """2x upsampling: a 2x2 stride-2 transposed conv and BN, no activation (as the authors')."""
    return nn.Sequential(
        nn.ConvTranspose2d(channels, channels, 2, stride=2), nn.BatchNorm2d(channels)
    )


class FingerprintUNet(
    nn.Module,
    HubMixin,
    tags=["image-forensics", "deep-image-fingerprint"],
):
    """U-Net from a (B, in_channels, S, S) input to a (B, out_channels, S, S) fingerprint.

    Args:
        in_channels: channels of the fixed input (authors: 16).
        out_channels: channels of the fingerprint: those of the residual it is correlated with
            (3 for an RGB residual).
        base_channels: channels of the first encoder block (authors: 32).
        depth: encoder blocks; S must be a multiple of ``2 ** depth`` (authors: 4).
    """

    def __init__(
        self, in_channels: int = 16, out_channels: int = 3, base_channels: int = 32, depth: int = 4
    ) -> None:
        super().__init__()
        widths = [base_channels * 2**i for i in range(depth)]  # 32, 64, 128, 256
        self.depth = depth
        self.encoders = nn.ModuleList(
            conv_block(c_in, c_out)
            for c_in, c_out in zip([in_channels, *widths[:-1]], widths, strict=True)
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = nn.Sequential(conv_block(widths[-1], widths[-1]), upsample(widths[-1]))
        decoders = []
        for i in reversed(range(depth)):  # concat of skip (w_i) and upsampled (w_i) -> w_{i-1}
            c_out = widths[i - 1] if i > 0 else widths[0]
            block = conv_block(2 * widths[i], c_out)
            decoders.append(nn.Sequential(block, upsample(c_out)) if i > 0 else block)
        self.decoders = nn.ModuleList(decoders)
        self.head = nn.Sequential(nn.Conv2d(widths[0], out_channels, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, S, S) -> (B, out_channels, S, S) in (-1, 1)."""
        skips = []
        h = z
        for encoder in self.encoders:
            h = encoder(h)
            skips.append(h)
            h = self.pool(h)
        h = self.bottleneck(h)
        for decoder, skip in zip(self.decoders, reversed(skips), strict=True):
            h = decoder(torch.cat([skip, h], dim=1))
        return self.head(h)
