"""The signal-leak features: a generator's own latent space after partial forward noising.

Proto-LeakNet (Sec. 3.1-3.2) attributes images in the latent domain of a diffusion model, where
generators leave "signal leaks" (Everaert et al., WACV 2024), and re-simulates the forward
process to expose them. Per patch x (uint8 RGB, mapped to [-1, 1] as the pipelines do):

1. ``z0 = (E(x).mean - shift) * scale``: the posterior mean of the generator's own VAE encoder,
   in the space its denoiser works in (``scaling_factor``; Flux also has ``shift_factor``);
2. for every t in the t-set: ``z_t = sqrt(abar_t) z0 + sqrt(1 - abar_t) eps`` through
   ``DDPMScheduler.add_noise`` built from the pipeline's scheduler config, whose
   ``alphas_cumprod`` is checked equal to the pipeline scheduler's; flow-matching pipelines
   (Flux) have no ``alphas_cumprod`` and use their scheduler's ``scale_noise``,
   ``z_t = (1 - sigma_t) z0 + sigma_t eps`` with ``sigma_t`` = the scheduler's training sigma
   at timestep t (``sigma_0 = 0``);
3. optionally ``z_t / sigma_t`` (``sigma_t = sqrt(1 - abar_t)``, resp. the flow sigma);
4. each ``z_t`` flattened: features (T, c h w), pooled over t by the head
   (`dpeval.attribute.prototype.PrototypeHead.pool`, learned with it).

``eps`` is drawn from a generator seeded by the patch's own bytes (CRC-32) and the seed, so a
patch gets the same features in any batch and whatever its label (`dpeval.attribute.embed`).
With the default t-set {0} and no division the features are the clean latent (no noise).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence

import diffusers
import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, FlowMatchEulerDiscreteScheduler

from dpgen.errors import InputError
from dpgen.manifest import resolve_generators
from dpgen.pipelines import resolve_checkpoint

logger = logging.getLogger(__name__)


class NoiseSchedule:
    """The forward process of a pipeline's scheduler at integer training timesteps.

    Args:
        config: the pipeline scheduler's config (``scheduler/scheduler_config.json``).
        where: names the generator in error messages.

    Raises:
        InputError: a scheduler with neither ``alphas_cumprod`` nor flow matching.
    """

    def __init__(self, config: dict, where: str) -> None:
        name = config.get("_class_name", "")
        cls = getattr(diffusers, name, None)
        if cls is None:
            raise InputError(f"{where}: unknown scheduler class {name!r}")
        own = cls.from_config(config)
        self.num_train_timesteps = int(own.config.num_train_timesteps)
        if hasattr(own, "alphas_cumprod"):
            self.scheduler = DDPMScheduler.from_config(config)
            if not torch.allclose(self.scheduler.alphas_cumprod, own.alphas_cumprod):
                raise InputError(
                    f"{where}: DDPMScheduler does not reproduce {name}'s alphas_cumprod"
                )
            self.flow = False
        elif isinstance(own, FlowMatchEulerDiscreteScheduler):
            self.scheduler, self.flow = own, True  # a fresh instance: the training schedule
        else:
            raise InputError(f"{where}: {name} has no alphas_cumprod and is not flow matching")

    def sigma(self, t: int) -> float:
        """Noise level at t: sqrt(1 - abar_t), or the flow-matching sigma (0 at t = 0)."""
        if self.flow:
            return 0.0 if t == 0 else float(self.scheduler.sigmas[self.num_train_timesteps - t])
        return float((1 - self.scheduler.alphas_cumprod[t]).sqrt())

    def noised(self, z0: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
        """z_t from z0 and eps (both (B, c, h, w)) through the scheduler."""
        if not self.flow:
            return self.scheduler.add_noise(z0, eps, torch.full((len(z0),), t, dtype=torch.long))
        if t == 0:
            return z0
        step = self.scheduler.timesteps[self.num_train_timesteps - t]
        return self.scheduler.scale_noise(z0, step.expand(len(z0)), eps)


class LatentEmbedder:
    """(B, 3, P, P) uint8 -> (B, T, c (P/f)^2) signal-leak features (module docstring).

    Args:
        vae: the generator's autoencoder (run in float32, eval mode, no gradient).
        schedule: its pipeline's forward process.
        timesteps: the t-set, integers in [0, num_train_timesteps).
        divide_by_sigma: divide z_t by sigma_t.
        seed: mixed into every patch's noise seed.
        device: where the VAE runs.
        where: names the generator in error messages.
    """

    def __init__(
        self,
        vae: AutoencoderKL,
        schedule: NoiseSchedule,
        timesteps: Sequence[int],
        divide_by_sigma: bool = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
        where: str = "latent",
    ) -> None:
        bad = [t for t in timesteps if not 0 <= t < schedule.num_train_timesteps]
        if bad or not timesteps:
            raise InputError(
                f"timesteps: {list(timesteps)} must be non-empty, in [0, "
                f"{schedule.num_train_timesteps}) for {where}"
            )
        if divide_by_sigma and any(schedule.sigma(t) == 0 for t in timesteps):
            raise InputError(f"divide_by_sigma: sigma_t is 0 at t = 0 for {where}; drop t = 0")
        if vae.dtype != torch.float32:  # SDXL's VAE overflows in float16 (its pipelines upcast)
            vae = vae.to(torch.float32)
        self.vae = vae.to(device).eval().requires_grad_(False)
        self.schedule, self.timesteps = schedule, [int(t) for t in timesteps]
        self.divide_by_sigma, self.seed = divide_by_sigma, seed
        self.device = torch.device(device)
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)

    @classmethod
    def from_generator(cls, name: str, **kwargs) -> LatentEmbedder:
        """The VAE and scheduler of generator ``name``'s inpainting checkpoint (a manifest name)."""
        (spec,) = resolve_generators(name)
        path = resolve_checkpoint(spec.inpaint.checkpoint)
        logger.info("%s: latent features from the VAE and scheduler of %s", name, path)
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=torch.float32)
        config = dict(DDPMScheduler.load_config(path, subfolder="scheduler"))
        return cls(vae, NoiseSchedule(config, name), where=name, **kwargs)

    @torch.no_grad()
    def latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """z0: (B, 3, P, P) uint8 -> (B, c, P/f, P/f), the denoiser's latent space."""
        if pixels.shape[-1] % self.factor or pixels.shape[-2] % self.factor:
            raise InputError(f"patch side {pixels.shape[-1]} is not a multiple of {self.factor}")
        x = pixels.to(self.device).float().div(127.5).sub(1.0)
        mean = self.vae.encode(x).latent_dist.mean
        shift = self.vae.config.shift_factor or 0.0
        return ((mean - shift) * self.vae.config.scaling_factor).cpu()

    def noise(self, pixels: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """eps (B, T, *shape), each patch's from a generator seeded by its own bytes."""
        out = torch.empty(len(pixels), len(self.timesteps), *shape)
        for i, patch in enumerate(pixels.numpy()):
            seed = zlib.crc32(np.ascontiguousarray(patch).tobytes(), self.seed)
            out[i] = torch.randn(
                len(self.timesteps), *shape, generator=torch.Generator().manual_seed(seed)
            )
        return out

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        z0 = self.latents(pixels)
        eps = self.noise(pixels, tuple(z0.shape[1:]))
        steps = []
        for j, t in enumerate(self.timesteps):
            zt = self.schedule.noised(z0, eps[:, j], t)
            if self.divide_by_sigma:
                zt = zt / self.schedule.sigma(t)
            steps.append(zt.flatten(1))
        return torch.stack(steps, dim=1).float()
