"""Train the DnCNN denoiser of ``--denoiser train:DIR``: blind Gaussian denoising of real images.

DIF's residual comes from a DnCNN trained to predict the noise added to real images (residual
learning, Zhang et al. 2017); the authors ship only a pickled checkpoint that is missing from
their repository, so the toolkit trains its own: random ``CROP`` x ``CROP`` crops of the real
images, Gaussian noise with a standard deviation drawn per crop uniformly in
[0, ``SIGMA_MAX``] grey levels, MSE between the predicted and the added noise, Adam.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from accelerate import Accelerator

from .denoiser import DnCNNDenoiser

logger = logging.getLogger(__name__)

CROP = 64
BATCH = 16
SIGMA_MAX = 25.0 / 255.0
LR = 1e-3
LOG_EVERY = 10


def noisy_batch(
    pixels: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch: (noisy crops, added noise), both (BATCH, 3, c, c) with c = min(CROP, S).

    Args:
        pixels: (N, 3, S, S) uint8 real images.
        generator: the CPU generator every random draw comes from.
    """
    n, _, size, _ = pixels.shape
    crop = min(CROP, size)
    rows = torch.randint(n, (BATCH,), generator=generator)
    tops = torch.randint(size - crop + 1, (BATCH,), generator=generator)
    lefts = torch.randint(size - crop + 1, (BATCH,), generator=generator)
    clean = (
        torch.stack(
            [
                pixels[r, :, t : t + crop, s : s + crop]
                for r, t, s in zip(rows, tops, lefts, strict=True)
            ]
        ).float()
        / 255.0
    )
    sigma = torch.rand((BATCH, 1, 1, 1), generator=generator) * SIGMA_MAX
    noise = torch.randn(clean.shape, generator=generator) * sigma
    return clean + noise, noise


def train_denoiser(
    accelerator: Accelerator, pixels: torch.Tensor, steps: int, seed: int
) -> DnCNNDenoiser:
    """A DnCNN denoiser trained for ``steps`` steps on real images, in eval mode.

    Logs ``denoiser_mse`` every `LOG_EVERY` steps through ``accelerator.log``. Not prepared by
    the accelerator (so the fingerprint's checkpoints hold only the U-Net's state).

    Args:
        pixels: (N, 3, S, S) uint8 real images.
        steps: optimisation steps.
        seed: fixes the initialisation and every crop and noise draw.
    """
    device = accelerator.device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DnCNNDenoiser().to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(seed)
    for step in range(1, steps + 1):
        noisy, noise = noisy_batch(pixels, generator)
        loss = F.mse_loss(model(noisy.to(device)), noise.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % LOG_EVERY == 0 or step == steps:
            accelerator.log({"denoiser_mse": loss.item()}, step=step)
    logger.info("denoiser: %d steps, last MSE %.3g", steps, loss.item())
    return model.eval().requires_grad_(False)
