"""A trained Deep Image Fingerprint: the fingerprint, its residual and its two class centres.

Saved with ``save_pretrained`` as a Hub-style folder: ``config.json`` records the residual's
spec (`dpeval.fingerprint.denoiser`), the crop size and mu_real / mu_fake; ``model.safetensors``
holds the fingerprint F (C, S, S) and the mean real residual that is subtracted from every
residual (zeros when that option is off). Detection (paper Sec. 3.3, the authors'
``calc_accuracy``): an image is labelled generated when its rho is nearer to mu_fake than to
mu_real; there is no threshold to tune.
"""

from __future__ import annotations

import torch
from torch import nn

from dptrain.hub import HubMixin

from .loss import rho

LABELS = ("real", "generated")


class DeepImageFingerprint(
    nn.Module,
    HubMixin,
    tags=["image-forensics", "deep-image-fingerprint", "synthetic-image-detection"],
):
    """The fingerprint detector (weights only: the residual is loaded from ``denoiser``).

    Args:
        channels: C, channels of the residual and of the fingerprint.
        size: S, the side of the centre crop the fingerprint was trained on.
        denoiser: the residual's spec (`dpeval.fingerprint.denoiser.load_residual`); a relative
            ``dncnn:PATH`` lives inside this model's folder.
        mu_real, mu_fake: mean rho of real and of generated training images over the last
            batches of training (paper: 20).
    """

    def __init__(
        self,
        channels: int = 3,
        size: int = 256,
        denoiser: str = "highpass",
        mu_real: float = 0.0,
        mu_fake: float = 0.0,
    ) -> None:
        super().__init__()
        self.channels, self.size, self.denoiser = channels, size, denoiser
        self.mu_real, self.mu_fake = mu_real, mu_fake
        self.register_buffer("fingerprint", torch.zeros(channels, size, size))
        self.register_buffer("residual_mean", torch.zeros(channels, size, size))

    def forward(self, residuals: torch.Tensor) -> torch.Tensor:
        """rho of each residual: (B, C, S, S) -> (B,) in [-1, 1]."""
        return rho(self.fingerprint, residuals - self.residual_mean)

    def is_generated(self, rhos: torch.Tensor) -> torch.Tensor:
        """Nearest-centre decision: (B,) rho -> (B,) bool, True where |rho - mu_fake| <
        |rho - mu_real| (a tie is real)."""
        return (rhos - self.mu_fake).abs() < (rhos - self.mu_real).abs()
