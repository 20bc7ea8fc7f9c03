"""The prototype head with feature gates (Proto-LeakNet Sec. 3.3; architecture only).

Input: per patch T feature vectors of size D (T = 1 for DiffusionPrint embeddings, T = the
t-set for the latent signal-leak path), standardised with the training split's statistics
(buffers, so a saved head carries them).

1. Temporal pool: one linear score per t, ``a_t = v . x_t + b``; ``alpha = softmax_t(a)``;
   ``h = sum_t alpha_t x_t`` (identity when T = 1).
2. Feature gates: ``w = sigmoid(MLP(h))``, MLP = Linear(D, D) -> ReLU -> Linear(D, D).
3. Prototypes ``p_cm`` (K classes x M per class x D), initialised N(0, 0.01^2).
   ``d_cm = sum_i w_i (h_i - p_cm,i)^2``; class distance ``d_c = min_m d_cm``, or with
   ``aggregation="lse"`` the soft minimum ``-tau log sum_m exp(-d_cm / tau)`` with a learnable
   temperature tau.
4. Logits ``-d_c`` (trained with cross-entropy in `dpeval.attribute.train`).

Because ``d_cm = || sqrt(w) * h - sqrt(w) * p_cm ||^2``, the space the head measures in is
``z = sqrt(w) * h`` (`PrototypeHead.gated`); the densities of `dpeval.attribute.density` live
there. The gate depends on ``h`` alone, never on a label: known and unseen patches are embedded
alike (Proto-LeakNet's public open-set script gated only the known ones).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dptrain.hub import HubMixin

AGGREGATIONS = ("min", "lse")


class PrototypeHead(
    nn.Module,
    HubMixin,
    tags=["image-forensics", "attribution", "diffusionprint"],
):
    """Gated multi-prototype classifier; ``forward`` returns logits (B, K).

    Args:
        in_dim: D, size of each feature vector.
        num_classes: K.
        prototypes_per_class: M (Proto-LeakNet's default 6).
        num_steps: T, feature vectors per patch (the latent path's t-set size).
        aggregation: ``"min"`` or ``"lse"`` (soft minimum with learnable temperature).
        temperature: initial tau of ``"lse"``.
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        prototypes_per_class: int = 6,
        num_steps: int = 1,
        aggregation: str = "min",
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        self.aggregation = aggregation
        self.register_buffer("feature_mean", torch.zeros(num_steps, in_dim))
        self.register_buffer("feature_scale", torch.ones(num_steps, in_dim))
        self.temporal_score = nn.Linear(in_dim, 1)
        self.gate = nn.Sequential(
            nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, in_dim)
        )
        self.prototypes = nn.Parameter(
            torch.randn(num_classes, prototypes_per_class, in_dim) * 0.01
        )
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise and pool over t: (B, T, D) raw features -> h (B, D)."""
        x = (x - self.feature_mean) / self.feature_scale
        alpha = torch.softmax(self.temporal_score(x).squeeze(-1), dim=1)  # (B, T)
        return (alpha.unsqueeze(-1) * x).sum(dim=1)

    def gates(self, h: torch.Tensor) -> torch.Tensor:
        """w = sigmoid(MLP(h)), (B, D) in (0, 1)."""
        return torch.sigmoid(self.gate(h))

    def distances(self, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """d_cm = sum_i w_i (h_i - p_cm,i)^2: (B, D), (B, D) -> (B, K, M), >= 0."""
        diff = h[:, None, None, :] - self.prototypes[None]  # (B, K, M, D)
        return (w[:, None, None, :] * diff.square()).sum(dim=-1)

    def class_distances(self, d: torch.Tensor) -> torch.Tensor:
        """d_c from (B, K, M): the minimum over m, or the soft minimum with temperature tau."""
        if self.aggregation == "min":
            return d.min(dim=-1).values
        tau = self.log_temperature.exp()
        return -tau * torch.logsumexp(-d / tau, dim=-1)

    def gated(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding the head measures distances in, z = sqrt(w) * h: (B, T, D) -> (B, D)."""
        h = self.pool(x)
        return self.gates(h).sqrt() * h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits -d_c: (B, T, D) raw features -> (B, K)."""
        h = self.pool(x)
        return -self.class_distances(self.distances(h, self.gates(h)))
