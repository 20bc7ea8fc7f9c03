"""The prototype head against a direct transcription of Proto-LeakNet's equations."""

from __future__ import annotations

import math

import pytest
import torch

from dpeval.attribute.prototype import PrototypeHead


def _head(aggregation: str = "min", steps: int = 1) -> PrototypeHead:
    torch.manual_seed(0)
    return PrototypeHead(3, 2, prototypes_per_class=2, num_steps=steps, aggregation=aggregation)


def test_distance_is_gated_squared_distance_by_hand() -> None:
    head = _head()
    with torch.no_grad():
        head.prototypes.copy_(torch.tensor([[[0.0, 0, 0], [1, 1, 1]], [[2, 0, 0], [0, 0, 3]]]))
    h = torch.tensor([[1.0, 0.0, 2.0]])
    w = torch.tensor([[1.0, 0.5, 0.25]])
    d = head.distances(h, w)
    # d_cm = sum_i w_i (h_i - p_cm,i)^2, written out per prototype:
    expected = [
        [1 * 1 + 0.5 * 0 + 0.25 * 4, 1 * 0 + 0.5 * 1 + 0.25 * 1],
        [1 * 1 + 0.5 * 0 + 0.25 * 4, 1 * 1 + 0.5 * 0 + 0.25 * 1],
    ]
    assert torch.allclose(d[0], torch.tensor(expected))  # [[2, .75], [2, 1.25]]
    assert head.class_distances(d)[0].tolist() == pytest.approx([0.75, 1.25])


def test_lse_is_soft_minimum_with_temperature() -> None:
    head = _head("lse")
    d = torch.tensor([[[1.0, 2.0], [0.5, 4.0]]])
    with torch.no_grad():
        head.log_temperature.fill_(math.log(0.5))
    tau = 0.5
    expected = [
        -tau * math.log(math.exp(-1 / tau) + math.exp(-2 / tau)),
        -tau * math.log(math.exp(-0.5 / tau) + math.exp(-4 / tau)),
    ]
    assert head.class_distances(d)[0].tolist() == pytest.approx(expected)
    with torch.no_grad():
        head.log_temperature.fill_(math.log(1e-4))  # tau -> 0: the hard minimum
    assert head.class_distances(d)[0].tolist() == pytest.approx([1.0, 0.5], abs=1e-3)


def test_forward_is_minus_distance_with_sigmoid_gates() -> None:
    head = _head()
    x = torch.randn(5, 1, 3)
    h = head.pool(x)
    assert torch.allclose(h, x[:, 0])  # T = 1, identity standardisation: pooling is identity
    w = torch.sigmoid(head.gate(h))
    assert torch.allclose(head.gates(h), w) and bool(((w > 0) & (w < 1)).all())
    logits = head(x)
    diff = h[:, None, None, :] - head.prototypes[None]
    assert torch.allclose(logits, -(w[:, None, None] * diff**2).sum(-1).min(-1).values)
    # the gated embedding carries the same distances: ||sqrt(w) h - sqrt(w) p||^2 = d
    z = head.gated(x)
    p = w.sqrt()[:, None, None] * head.prototypes[None]
    assert torch.allclose(-((z[:, None, None] - p) ** 2).sum(-1).min(-1).values, logits, atol=1e-5)


def test_prototypes_start_small_and_temporal_pool_is_softmax() -> None:
    torch.manual_seed(0)
    big = PrototypeHead(64, 4)
    assert big.prototypes.shape == (4, 6, 64)  # Proto-LeakNet's default M = 6
    assert big.prototypes.std().item() == pytest.approx(0.01, rel=0.1)
    head = _head(steps=2)
    x = torch.randn(4, 2, 3)
    a = head.temporal_score(x).squeeze(-1)
    alpha = torch.exp(a) / torch.exp(a).sum(1, keepdim=True)
    assert torch.allclose(head.pool(x), alpha[:, 0:1] * x[:, 0] + alpha[:, 1:2] * x[:, 1])


def test_save_and_load_keep_standardisation(tmp_path) -> None:
    head = _head(steps=2)
    with torch.no_grad():
        head.feature_mean.fill_(3.0)
        head.feature_scale.fill_(2.0)
    head.save_pretrained(tmp_path)
    again = PrototypeHead.from_pretrained(tmp_path)
    x = torch.randn(4, 2, 3)
    assert torch.equal(head(x), again(x))
    assert again.feature_mean.unique().item() == 3.0
