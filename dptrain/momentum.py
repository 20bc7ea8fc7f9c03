"""The momentum (EMA) update of the key encoder (MoCo, He et al. 2020, Eq. 2)."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def momentum_update(online: nn.Module, momentum: nn.Module, m: float = 0.999) -> None:
    """``theta_k <- m * theta_k + (1 - m) * theta_q`` over the parameters of two twin modules.

    Only parameters are averaged: BatchNorm running statistics of the momentum encoder come
    from its own forward passes, as in MoCo and the authors' code. Pass the encoder with its
    projector (a `dptrain.model.DiffusionPrint`); the generator head has no momentum twin.

    Args:
        online: the query encoder (gradient-trained).
        momentum: its copy, updated in place.
        m: momentum (paper: 0.999).
    """
    q_params = list(online.parameters())
    k_params = list(momentum.parameters())
    if len(q_params) != len(k_params):
        raise ValueError(f"modules differ: {len(q_params)} vs {len(k_params)} parameters")
    torch._foreach_mul_(k_params, m)
    torch._foreach_add_(k_params, q_params, alpha=1.0 - m)
