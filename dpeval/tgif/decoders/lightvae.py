"""LightVAE: the small mask autoencoder whose latents DiffIML diffuses (DiffIML Sec. 3, stage 1).

A 1-channel mask in {-1, +1} goes through three stride-2 3x3 convolutions with BN + ReLU
(``base``, 2 ``base``, 4 ``base`` channels: 32/64/128 in the paper) and a 1x1 convolution to a
4-channel latent at H/8 x W/8, multiplied by 0.18215 (Stable Diffusion's latent scale, which
keeps the latent's spread near the unit noise of the diffusion). The decoder mirrors it: a 1x1
convolution back to 4 ``base`` channels, three BN + ReLU + stride-2 transposed convolutions
(4 -> 2 -> 1 -> 1 ``base``), BN + ReLU and a 3x3 convolution to one channel. Its output is
trained (L1) towards the {-1, +1} input, so ``> 0`` (``sigmoid > 0.5``) marks the mask.
Reference: DiffIML's ``LightVAE`` (scu-zjz/DiffIML, ``model_zoo/diffiml/diffiml.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from dptrain.hub import HubMixin

#: Stable Diffusion's latent scale, used by DiffIML for the mask latents.
LATENT_SCALE = 0.18215
#: Spatial reduction of the latent (three stride-2 stages).
DOWNSAMPLE = 8


def _bn_relu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


class LightVAE(
    nn.Module,
    HubMixin,
    tags=["image-forensics", "mask-autoencoder", "diffiml"],
):
    """Mask autoencoder: (B, 1, H, W) mask in {-1, +1} <-> (B, C, H/8, W/8) scaled latent.

    H and W must be multiples of 8 for the reconstruction to have the input's size.

    Args:
        latent_channels: C, channels of the latent (paper: 4).
        base_channels: width of the first stage; the next two are 2x and 4x (paper: 32).
        scaling_factor: the latent is the encoder's output times this (paper: 0.18215).
    """

    def __init__(
        self,
        latent_channels: int = 4,
        base_channels: int = 32,
        scaling_factor: float = LATENT_SCALE,
    ) -> None:
        super().__init__()
        self.latent_channels = latent_channels
        self.base_channels = base_channels
        self.scaling_factor = scaling_factor
        b = base_channels
        self.encoder = nn.Sequential(
            nn.Conv2d(1, b, 3, stride=2, padding=1, bias=False),
            *_bn_relu(b),
            nn.Conv2d(b, 2 * b, 3, stride=2, padding=1, bias=False),
            *_bn_relu(2 * b),
            nn.Conv2d(2 * b, 4 * b, 3, stride=2, padding=1, bias=False),
            *_bn_relu(4 * b),
            nn.Conv2d(4 * b, latent_channels, 1),
        )

        def up(cin: int, cout: int) -> list[nn.Module]:
            # output_padding=1 makes each stage exactly double the side
            return [
                *_bn_relu(cin),
                nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1, bias=False),
            ]

        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, 4 * b, 1),
            *up(4 * b, 2 * b),
            *up(2 * b, b),
            *up(b, b),
            *_bn_relu(b),
            nn.Conv2d(b, 1, 3, padding=1),
        )

    def encode(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) mask in {-1, +1} -> (B, C, H/8, W/8) latent, scaled by ``scaling_factor``."""
        return self.encoder(mask) * self.scaling_factor

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) scaled latent -> (B, 1, 8h, 8w) reconstruction, about -1 outside, +1 inside.

        ``torch.sigmoid`` of it is DiffIML's mask probability (``> 0.5`` iff the output ``> 0``).
        """
        return self.decoder(latent / self.scaling_factor)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``decode(encode(mask))``: (B, 1, H, W) -> (B, 1, H, W)."""
        return self.decode(self.encode(mask))


def to_signed(mask: torch.Tensor) -> torch.Tensor:
    """A 0/1 (or bool) mask as the LightVAE's input: 0 -> -1, 1 -> +1, float."""
    return mask.float() * 2.0 - 1.0
