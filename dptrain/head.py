"""The generator-aware head (paper Sec. 3.3): a linear classifier on the embedding, training only.

``binary`` predicts the category (authentic / inpainted); ``generator`` predicts the generator
label (real / sd21 / sdxl / flux, from the build's ``generator`` ClassLabel). Its cross-entropy,
weighted by lambda_cls, is added to InfoNCE in `dptrain.loss.DiffusionPrintLoss`; it is not
part of the saved model.
"""

from __future__ import annotations

import torch
from torch import nn


class GeneratorHead(nn.Module):
    """Linear ``embed_dim -> num_classes`` on the L2-normalised embedding.

    Args:
        embed_dim: size of the embedding (128).
        num_classes: 2 (binary) or the number of generator labels (4 in the paper).
    """

    def __init__(self, embed_dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(embed_dim, num_classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim) -> (B, num_classes) logits."""
        return self.fc(z)
