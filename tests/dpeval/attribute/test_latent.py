"""The signal-leak path on the tiny pipelines' own VAEs and schedulers (real diffusers parts)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, FlowMatchEulerDiscreteScheduler

from dpeval.attribute.latent import LatentEmbedder
from dpgen.errors import InputError
from dpgen.tiny import ensure_tiny

pytestmark = pytest.mark.slow  # builds two tiny pipelines on first use


def _pixels(n: int = 3, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8))


def _eps(patch: torch.Tensor, seed: int, shape: tuple) -> torch.Tensor:
    gen = torch.Generator().manual_seed(zlib.crc32(patch.numpy().tobytes(), seed))
    return torch.randn(*shape, generator=gen)


@torch.no_grad()
def test_ddpm_noising_matches_the_pipeline_schedule() -> None:
    folder = ensure_tiny("dpgen-tiny/sd21-inpaint")
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
    abar = DDIMScheduler.from_pretrained(folder, subfolder="scheduler").alphas_cumprod
    timesteps = [0, 250, 900]
    embedder = LatentEmbedder.from_generator("tiny-sd21", timesteps=timesteps, seed=7)
    pixels = _pixels()
    feats = embedder(pixels)
    assert feats.shape == (3, 3, 4 * 4 * 4)  # 32 px -> 4x4 latent, 4 channels
    x = pixels.float() / 127.5 - 1
    z0 = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
    for i in range(3):
        eps = _eps(pixels[i], 7, (3, *z0.shape[1:]))
        for j, t in enumerate(timesteps):
            zt = abar[t].sqrt() * z0[i] + (1 - abar[t]).sqrt() * eps[j]
            assert torch.allclose(feats[i, j], zt.flatten(), atol=1e-5)
    divided = LatentEmbedder.from_generator(
        "tiny-sd21", timesteps=timesteps, seed=7, divide_by_sigma=True
    )(pixels)
    sigma = (1 - abar[timesteps]).sqrt()
    assert torch.allclose(divided, feats / sigma[None, :, None], atol=1e-5)
    # a patch's features do not depend on its batch (the noise is seeded by its pixels); only
    # the float rounding of a batched convolution may differ with the batch size
    alone = embedder(pixels[2:3])
    assert torch.allclose(alone[0], feats[2], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_flow_matching_noising_and_clean_latent() -> None:
    folder = ensure_tiny("dpgen-tiny/flux-inpaint")
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
    n = FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler").config[
        "num_train_timesteps"
    ]
    embedder = LatentEmbedder.from_generator("tiny-flux", timesteps=[0, 300])
    pixels = _pixels(2)
    feats = embedder(pixels)
    x = pixels.float() / 127.5 - 1
    mean = vae.encode(x).latent_dist.mean
    z0 = (mean - vae.config.shift_factor) * vae.config.scaling_factor
    assert feats.shape == (2, 2, 16 * 4 * 4)
    assert torch.allclose(feats[:, 0], z0.flatten(1), atol=1e-5)  # t = 0: the clean latent
    sigma = 300 / n  # the tiny Flux scheduler has shift 1
    for i in range(2):
        eps = _eps(pixels[i], 0, (2, *z0.shape[1:]))[1]
        expected = (1 - sigma) * z0[i] + sigma * eps
        assert torch.allclose(feats[i, 1], expected.flatten(), atol=1e-5)
    with pytest.raises(InputError, match="sigma_t is 0"):
        LatentEmbedder.from_generator("tiny-flux", timesteps=[0], divide_by_sigma=True)
    with pytest.raises(InputError, match="timesteps"):
        LatentEmbedder.from_generator("tiny-flux", timesteps=[n])
