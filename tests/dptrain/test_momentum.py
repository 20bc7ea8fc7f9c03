"""dptrain.momentum: the EMA against hand-computed values."""

from __future__ import annotations

import torch
from torch import nn

from dptrain.momentum import momentum_update


def twin() -> nn.Sequential:
    return nn.Sequential(nn.Linear(2, 1), nn.BatchNorm1d(1))


def test_momentum_update_hand_computed():
    online, momentum = twin(), twin()
    with torch.no_grad():
        online[0].weight.copy_(torch.tensor([[4.0, -2.0]]))
        online[0].bias.fill_(1.0)
        momentum[0].weight.copy_(torch.tensor([[2.0, 2.0]]))
        momentum[0].bias.fill_(0.0)
        online[1].running_mean.fill_(5.0)  # a buffer: must not be averaged
    momentum_update(online, momentum, m=0.9)
    # 0.9 * 2 + 0.1 * 4 = 2.2; 0.9 * 2 + 0.1 * -2 = 1.6; 0.9 * 0 + 0.1 * 1 = 0.1
    torch.testing.assert_close(momentum[0].weight, torch.tensor([[2.2, 1.6]]))
    torch.testing.assert_close(momentum[0].bias, torch.tensor([0.1]))
    torch.testing.assert_close(momentum[1].weight, torch.tensor([1.0]))  # 0.9 * 1 + 0.1 * 1
    assert momentum[1].running_mean.item() == 0.0
    torch.testing.assert_close(online[0].weight, torch.tensor([[4.0, -2.0]]))  # untouched
