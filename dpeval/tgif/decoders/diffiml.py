"""DiffIML's score-based mask decoder: a conditional diffusion model over mask latents.

DiffIML (ICMR 2026) replaces a localizer's discriminative mask head by a small conditional
denoiser over the latents of a frozen mask autoencoder (`LightVAE`):

- **Target.** ``x0`` = the LightVAE latents of the ground-truth mask and of its edge band
  (`edge_map`, width 7), concatenated: 2 x 4 channels at H/8 x W/8.
- **Network.** A diffusers ``UNet2DModel`` with one down and one up block (128 channels, 2
  layers per block; the mid block with attention) predicting ``x0`` (``prediction_type=
  "sample"``). The condition (`ConditionFuser`: the localizer's four feature scales fused at
  H/8, 128 channels) enters at the input: the UNet's ``conv_in`` is replaced by `ConditionedConvIn`
  (3x3 conv of the noisy latent, concatenated with the condition, merged by a 3x3 conv), as in
  the reference code's ``Unet.forward``.
- **Training** (`DiffIMLDecoder.forward`). t ~ U{0, ..., 999}; "error prior": the clean latent
  gets ``prior_rate`` (0.1) x N(0, I) added before ``DDIMScheduler.add_noise`` (linear betas
  1e-4 .. 0.02, 1000 steps), while the regression target stays clean; loss
  ``(1 - edge_weight) MSE(mask latent) + edge_weight MSE(edge latent)`` with ``edge_weight`` 0.8.
- **Inference** (`DiffIMLDecoder.sample`). ``num_inference_steps`` (8) DDIM steps (eta 0) from
  N(0, I) for each of ``ensemble`` (5) noise draws, averaged in latent space, the mask half
  decoded by the LightVAE and passed through a sigmoid. `DiffIMLDecoder.predict` adds
  DiffIML's horizontal-flip test-time augmentation, fused by a pixel-wise max (`fuse_flip`).

Defaults are the paper's; the reference code (scu-zjz/DiffIML, ``model_zoo/diffiml/diffiml.py``)
defaults to ``prior_rate`` 0, 10 steps, which the paper does not use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, UNet2DModel
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

from dpeval.tgif.decoders.condition import ConditionFuser
from dpeval.tgif.decoders.edges import EDGE_WIDTH, edge_map
from dpeval.tgif.decoders.lightvae import DOWNSAMPLE, LATENT_SCALE, LightVAE, to_signed
from dptrain.hub import HubMixin

#: Strides of the four feature maps the decoder is conditioned on (SegFormer / Lite Baseline).
FEATURE_STRIDES = (4, 8, 16, 32)


@dataclass
class DiffIMLLoss:
    """The training objective and its two terms (scalar tensors; ``loss`` carries the gradient).

    ``loss = (1 - edge_weight) * mask_loss + edge_weight * edge_loss``.
    """

    loss: torch.Tensor
    mask_loss: torch.Tensor
    edge_loss: torch.Tensor

    def metrics(self) -> dict[str, torch.Tensor]:
        """Detached scalars for logging."""
        return {
            "loss": self.loss.detach(),
            "mask_loss": self.mask_loss.detach(),
            "edge_loss": self.edge_loss.detach(),
        }


def diffiml_loss(
    prediction: torch.Tensor, z_mask: torch.Tensor, z_edge: torch.Tensor, edge_weight: float
) -> DiffIMLLoss:
    """DiffIML's loss on an x0 prediction.

    Args:
        prediction: (B, 2C, h, w): mask-latent channels first, then edge-latent channels.
        z_mask, z_edge: (B, C, h, w) clean LightVAE latents of the mask and of its edge map.
        edge_weight: weight of the edge term (paper: 0.8); the mask term gets 1 - edge_weight.
    """
    c = z_mask.shape[1]
    mask_loss = F.mse_loss(prediction[:, :c], z_mask)
    edge_loss = F.mse_loss(prediction[:, c:], z_edge)
    return DiffIMLLoss(
        (1 - edge_weight) * mask_loss + edge_weight * edge_loss, mask_loss, edge_loss
    )


def fuse_flip(probs: torch.Tensor, flipped_probs: torch.Tensor) -> torch.Tensor:
    """DiffIML's flip TTA: max of a map and the map of the mirrored image, mirrored back.

    Args:
        probs: (B, 1, H, W) probabilities of the images.
        flipped_probs: (B, 1, H, W) probabilities of the horizontally flipped images.
    """
    return torch.maximum(probs, flipped_probs.flip(-1))


class ConditionedConvIn(nn.Module):
    """The UNet's input convolution, taking ``cat([noisy latent, condition])``.

    3x3 conv of the latent channels to ``channels``, concatenated with the condition, merged by
    a 3x3 conv (no bias) back to ``channels`` (DiffIML's ``Unet.concat``).
    """

    def __init__(self, latent_channels: int, condition_channels: int, channels: int) -> None:
        super().__init__()
        self.latent_channels = latent_channels
        self.conv = nn.Conv2d(latent_channels, channels, 3, padding=1)
        self.merge = nn.Conv2d(channels + condition_channels, channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        latent, condition = x[:, : self.latent_channels], x[:, self.latent_channels :]
        return self.merge(torch.cat([self.conv(latent), condition], dim=1))


def _check_grid(height: int, width: int) -> tuple[int, int]:
    """The latent grid (H/8, W/8) of an (H, W) mask; ValueError unless both divide by 8."""
    if height % DOWNSAMPLE or width % DOWNSAMPLE or height <= 0 or width <= 0:
        raise ValueError(
            f"mask size {height}x{width} must be positive multiples of {DOWNSAMPLE} "
            "(pad the image first)"
        )
    return height // DOWNSAMPLE, width // DOWNSAMPLE


def _as_mask(mask: torch.Tensor) -> torch.Tensor:
    """(B, H, W) or (B, 1, H, W) 0/1 mask -> (B, 1, H, W) float; ValueError on other values."""
    if mask.ndim == 3:
        mask = mask[:, None]
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be (B, H, W) or (B, 1, H, W), got {tuple(mask.shape)}")
    mask = mask.float()
    if bool(((mask != 0) & (mask != 1)).any()):
        raise ValueError(
            "mask values must be 0/1 (map ignored padding pixels, -1, to 0 or crop them away)"
        )
    return mask


class DiffIMLDecoder(
    nn.Module,
    HubMixin,
    tags=["image-forensics", "inpainting-localization", "diffiml"],
):
    """Conditional diffusion mask decoder over the features of a fusion localizer.

    ``forward(features, mask)`` -> `DiffIMLLoss` (training); ``sample(features)`` and
    ``predict(encode, images)`` -> (B, 1, H, W) probabilities (inference; call them in eval
    mode: the condition fuser has BN). ``features`` are four maps (B, C_i, H/s, W/s), s = 4, 8,
    16, 32, channels ``feature_channels``; H and W are multiples of 8. The LightVAE inside is
    frozen (no gradient, eval mode); set its trained weights with `set_vae`.

    Args:
        feature_channels: C_i of the four feature maps (Lite Baseline with MiT-B2: 64/128/320/512).
        condition_channels: channels of the fused condition (paper: 128).
        latent_channels: channels of one LightVAE latent (paper: 4; x0 has twice as many).
        unet_channels: width of the UNet's single block (paper: 128).
        layers_per_block: resnet layers per UNet block (paper: 2).
        vae_base_channels: the LightVAE's first-stage width (paper: 32).
        latent_scale: the LightVAE's latent scale (paper: 0.18215).
        num_train_timesteps: diffusion steps of training (paper: 1000).
        beta_schedule: DDIM noise schedule (paper: "linear", betas 1e-4 .. 0.02).
        timestep_spacing: how the sampling steps are placed (diffusers' default "leading", as
            the reference; "trailing" starts from t = 999, which makes 1-step sampling useful).
        edge_weight: weight of the edge-latent MSE; the mask latent gets 1 - edge_weight (0.8).
        prior_rate: std of the "error prior" noise added to the clean latent (paper: 0.1).
        edge_width: side of the edge band's structuring element in pixels (paper: 7).
        num_inference_steps: DDIM steps at inference (paper: 8).
        ensemble: noise draws averaged in latent space at inference (paper: 5).
        flip_tta: `predict` adds horizontal-flip TTA fused by max (paper: on).
    """

    def __init__(
        self,
        feature_channels: Sequence[int] = (64, 128, 320, 512),
        condition_channels: int = 128,
        latent_channels: int = 4,
        unet_channels: int = 128,
        layers_per_block: int = 2,
        vae_base_channels: int = 32,
        latent_scale: float = LATENT_SCALE,
        num_train_timesteps: int = 1000,
        beta_schedule: str = "linear",
        timestep_spacing: str = "leading",
        edge_weight: float = 0.8,
        prior_rate: float = 0.1,
        edge_width: int = EDGE_WIDTH,
        num_inference_steps: int = 8,
        ensemble: int = 5,
        flip_tta: bool = True,
    ) -> None:
        super().__init__()
        if len(feature_channels) != len(FEATURE_STRIDES):
            raise ValueError(f"expected 4 feature channels, got {list(feature_channels)}")
        self.latent_channels = latent_channels
        self.edge_weight = edge_weight
        self.prior_rate = prior_rate
        self.edge_width = edge_width
        self.num_inference_steps = num_inference_steps
        self.ensemble = ensemble
        self.flip_tta = flip_tta
        self.vae = LightVAE(latent_channels, vae_base_channels, latent_scale)
        self.vae.requires_grad_(False).eval()
        self.condition = ConditionFuser(feature_channels, condition_channels)
        x0_channels = 2 * latent_channels
        self.unet = UNet2DModel(
            in_channels=x0_channels,
            out_channels=x0_channels,
            block_out_channels=(unet_channels,),
            down_block_types=("DownBlock2D",),
            up_block_types=("UpBlock2D",),
            layers_per_block=layers_per_block,
        )
        self.unet.conv_in = ConditionedConvIn(x0_channels, condition_channels, unet_channels)
        self.scheduler = DDIMScheduler(
            num_train_timesteps=num_train_timesteps,
            beta_schedule=beta_schedule,
            prediction_type="sample",
            timestep_spacing=timestep_spacing,
        )

    def train(self, mode: bool = True) -> DiffIMLDecoder:
        super().train(mode)
        self.vae.eval()  # frozen: BN keeps the statistics of the LightVAE's own training
        return self

    def set_vae(self, vae: LightVAE) -> None:
        """Copy a trained LightVAE's weights into the decoder's frozen one.

        Raises:
            ValueError: when its latent channels, width or scale differ from this decoder's.
        """
        mine = (self.vae.latent_channels, self.vae.base_channels, self.vae.scaling_factor)
        theirs = (vae.latent_channels, vae.base_channels, vae.scaling_factor)
        if mine != theirs:
            raise ValueError(
                f"LightVAE (latent channels, base channels, scale) {theirs} differs from the "
                f"decoder's {mine}"
            )
        self.vae.load_state_dict(vae.state_dict())

    @torch.no_grad()
    def encode_target(self, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, H, W) 0/1 mask -> the clean latents (z_mask, z_edge), each (B, C, H/8, W/8)."""
        z_mask = self.vae.encode(to_signed(mask))
        z_edge = self.vae.encode(to_signed(edge_map(mask, self.edge_width)))
        return z_mask, z_edge

    def denoise(
        self, noisy: torch.Tensor, timestep: torch.Tensor, condition: torch.Tensor
    ) -> torch.Tensor:
        """The x0 prediction: (B, 2C, h, w) noisy latent, t (scalar or (B,)), (B, 128, h, w) -> (B, 2C, h, w)."""
        return self.unet(torch.cat([noisy, condition], dim=1), timestep, return_dict=False)[0]

    def forward(
        self,
        features: Sequence[torch.Tensor],
        mask: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> DiffIMLLoss:
        """The training loss of one batch.

        Args:
            features: the four (B, C_i, H/s, W/s) feature maps.
            mask: (B, H, W) or (B, 1, H, W) ground truth in {0, 1}, H and W multiples of 8.
            generator: draws, in this order, t (B,), the diffusion noise and the prior noise
                (both (B, 2C, H/8, W/8)); None uses the global RNG.

        Raises:
            ValueError: a mask with values other than 0/1 or a size not a multiple of 8.
        """
        mask = _as_mask(mask)
        grid = _check_grid(*mask.shape[-2:])
        z_mask, z_edge = self.encode_target(mask)
        x0 = torch.cat([z_mask, z_edge], dim=1)
        t = torch.randint(
            0, self.scheduler.config.num_train_timesteps, (x0.shape[0],),
            generator=generator, device=x0.device if generator is None else generator.device,
        ).to(x0.device)  # fmt: skip
        noise = randn_tensor(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        prior = randn_tensor(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        # the error prior perturbs the start of the forward process, not the regression target
        noisy = self.scheduler.add_noise(x0 + self.prior_rate * prior, noise, t)
        prediction = self.denoise(noisy, t, self.condition(features, grid))
        return diffiml_loss(prediction, z_mask, z_edge, self.edge_weight)

    def _grid(self, features: Sequence[torch.Tensor], size: tuple[int, int] | None):
        if size is None:  # the stride-4 map is a quarter of the image
            size = (features[0].shape[-2] * 4, features[0].shape[-1] * 4)
        return _check_grid(*size)

    @torch.no_grad()
    def sample(
        self,
        features: Sequence[torch.Tensor],
        generator: torch.Generator | list[torch.Generator] | None = None,
        size: tuple[int, int] | None = None,
        num_inference_steps: int | None = None,
        ensemble: int | None = None,
    ) -> torch.Tensor:
        """Mask probabilities by DDIM sampling, averaged over an ensemble of noise draws.

        The ensemble runs as one batch of ``ensemble`` x B; member k's noise is rows k*B ..
        (k+1)*B - 1 of one (ensemble*B, 2C, H/8, W/8) draw from ``generator``. With a list of B
        generators, item i's ``ensemble`` draws come from generator i alone (member by member),
        so its map does not depend on the other items of the batch.

        Args:
            features: the four (B, C_i, H/s, W/s) feature maps.
            generator: seeds the noise; with the same seed the output is identical. A list
                holds one generator per item.
            size: the output (H, W); default four times the stride-4 map's size.
            num_inference_steps: DDIM steps (default: the decoder's, paper 8).
            ensemble: noise draws averaged (default: the decoder's, paper 5).

        Returns:
            (B, 1, H, W) probabilities of "inpainted" in [0, 1].

        Raises:
            ValueError: a size that is not a multiple of 8, steps or ensemble < 1, or a list
                of generators whose length is not B.
        """
        steps = self.num_inference_steps if num_inference_steps is None else num_inference_steps
        k = self.ensemble if ensemble is None else ensemble
        if steps < 1 or k < 1:
            raise ValueError(f"steps ({steps}) and ensemble ({k}) must be >= 1")
        grid = self._grid(features, size)
        condition = self.condition(features, grid)
        b = condition.shape[0]
        if isinstance(generator, list):
            if len(generator) != b:
                raise ValueError(f"{len(generator)} generators for a batch of {b}")
            generator = [generator[i] for _ in range(k) for i in range(b)]  # member-major rows
        condition = condition.repeat(k, 1, 1, 1)
        shape = (k * b, 2 * self.latent_channels, *grid)
        y = randn_tensor(shape, generator=generator, device=condition.device, dtype=condition.dtype)
        scheduler = DDIMScheduler.from_config(self.scheduler.config)  # per call: no shared state
        scheduler.set_timesteps(steps, device=condition.device)
        for t in scheduler.timesteps:
            y = scheduler.step(self.denoise(y, t, condition), t, y).prev_sample
        z_mask = y.view(k, b, *y.shape[1:]).mean(dim=0)[:, : self.latent_channels]
        return torch.sigmoid(self.vae.decode(z_mask))

    @torch.no_grad()
    def predict(
        self,
        encode: Callable[[torch.Tensor], Sequence[torch.Tensor]],
        images: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """`sample` on ``encode(images)``, with flip TTA when ``flip_tta`` (DiffIML's inference).

        With TTA the images and their mirrors go through ``encode`` and `sample` as one batch
        of 2B (as in the reference), and the halves are fused by `fuse_flip`.

        Args:
            encode: the localizer's encoder: (N, 3, H, W) images -> its four feature maps.
            images: (B, 3, H, W), H and W multiples of 8, in whatever units ``encode`` takes.
            generator: seeds the noise; a list holds one generator per image, which also draws
                the noise of the image's mirror.

        Returns:
            (B, 1, H, W) probabilities of "inpainted".
        """
        size = tuple(images.shape[-2:])
        if not self.flip_tta:
            return self.sample(encode(images), generator, size)
        both = torch.cat([images, images.flip(-1)])
        if isinstance(generator, list):
            generator = generator + generator
        probs, flipped = self.sample(encode(both), generator, size).chunk(2)
        return fuse_flip(probs, flipped)
