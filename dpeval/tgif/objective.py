"""The fine-tuning objective of the fusion localizer, for either kind of decoder.

`LocalizerLoss` wraps a `LiteBaseline` so that accelerate prepares (and DDP wraps) one module
whose ``forward`` is the whole loss: the pixel-wise BCE of the logits for the MLP decoder (the
paper's Lite Baseline), DiffIML's latent-diffusion loss for the diffusion decoder. The localizer
is ``LocalizerLoss.localizer``; checkpoints hold it under that prefix.

TGIF's padded pixels (mask `IGNORE` = -1, where a crop extends past a small image, RGB 127):
the BCE skips them; DiffIML regresses the LightVAE latent of the whole crop, which cannot skip
pixels, so they are mapped to **authentic** (0): nothing was inpainted there
(`padding_as_authentic`).

The diffusion loss draws t and two noises per micro-batch from `noise_generator`, seeded by
(seed, micro-batch, process) and not by torch's global generator, so a resumed run draws
exactly what an uninterrupted one draws.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dpeval.tgif.augment import IGNORE
from dpeval.tgif.lite_baseline import LiteBaseline

#: Mixed into the noise seeds, apart from the crop-order and augmentation streams (crops.py).
_NOISE = 2


def masked_bce(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over pixels whose mask is not `IGNORE`. logits (B, 1, H, W), mask (B, H, W)."""
    valid = mask != IGNORE
    return F.binary_cross_entropy_with_logits(logits[:, 0][valid], mask[valid].float())


def padding_as_authentic(mask: torch.Tensor) -> torch.Tensor:
    """(B, H, W) mask in {-1, 0, 1} -> (B, H, W) float in {0, 1}: padding (-1) becomes 0.

    Raises:
        ValueError: a mask value other than -1, 0 and 1.
    """
    if bool(((mask != IGNORE) & (mask != 0) & (mask != 1)).any()):
        raise ValueError(f"mask values must be {IGNORE} (padding), 0 or 1")
    return (mask == 1).float()


def noise_generator(seed: int, micro_batch: int, rank: int) -> torch.Generator:
    """The CPU generator of the diffusion noise of one micro-batch on one process."""
    state = np.random.SeedSequence([seed, _NOISE, micro_batch, rank]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class LocalizerLoss(nn.Module):
    """``forward(image, mask, generator)`` -> the scalar training loss of a micro-batch.

    Args:
        localizer: the model being fine-tuned.

    ``image``: (B, 3, S, S) uint8 crops; ``mask``: (B, S, S) in {-1, 0, 1} (`IGNORE` = padding);
    ``generator``: the diffusion decoder's noise (`noise_generator`); unused by the MLP decoder.
    """

    def __init__(self, localizer: LiteBaseline) -> None:
        super().__init__()
        self.localizer = localizer

    def forward(
        self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if not self.localizer.sampling:
            return masked_bce(self.localizer(image), mask)
        features = self.localizer.encode(image)
        return self.localizer.decoder(features, padding_as_authentic(mask), generator).loss
