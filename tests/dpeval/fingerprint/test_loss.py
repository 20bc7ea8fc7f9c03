"""rho and the pair loss against direct transcriptions and closed-form values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpeval.fingerprint.loss import MARGIN, pair_loss, rho


def test_rho_is_pearsons_coefficient_over_every_value():
    g = torch.Generator().manual_seed(0)
    fingerprint = torch.randn(3, 8, 8, generator=g)
    residuals = 0.3 * fingerprint + torch.randn(5, 3, 8, 8, generator=g)
    expected = [np.corrcoef(fingerprint.ravel(), r.ravel())[0, 1] for r in residuals]
    np.testing.assert_allclose(rho(fingerprint, residuals), expected, atol=1e-6)
    np.testing.assert_allclose(rho(fingerprint[None], residuals), expected, atol=1e-6)


def test_rho_ignores_brightness_and_contrast_of_the_residual():
    g = torch.Generator().manual_seed(1)
    fingerprint, residual = torch.randn(3, 4, 4, generator=g), torch.randn(1, 3, 4, 4, generator=g)
    assert rho(fingerprint, residual) == pytest.approx(
        rho(fingerprint, 7 * residual - 2).item(), abs=1e-6
    )
    assert rho(fingerprint, fingerprint[None]).item() == pytest.approx(1.0, abs=1e-6)
    assert rho(fingerprint, -fingerprint[None]).item() == pytest.approx(-1.0, abs=1e-6)


def test_rho_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="differ"):
        rho(torch.zeros(3, 8, 8), torch.zeros(2, 3, 4, 4))


def authors_loss(corrs: np.ndarray, labels: np.ndarray, m: float) -> float:
    """The authors' loss_contrast(...).mean() / m, transcribed."""
    n = len(corrs) // 2
    sim_label = np.bitwise_xor(labels[:n], labels[n:]).astype(np.float64)
    corr_delta = np.sqrt((corrs[:n] - corrs[n:]) ** 2)
    loss = sim_label * (m - corr_delta) + (1.0 - sim_label) * corr_delta
    return float(np.maximum(loss, 0).mean() / m)


def test_pair_loss_closed_form():
    # pairs (0.5, 0.5) same label: 0; (0.2, 0.195) different: relu(0.01 - 0.005) = 0.005;
    # mean 0.0025, divided by m = 0.01: 0.25
    rhos = torch.tensor([0.5, 0.2, 0.5, 0.195], dtype=torch.float64)
    assert pair_loss(rhos, torch.tensor([0, 1, 0, 0])).item() == pytest.approx(0.25)
    # different labels already a margin apart cost nothing; equal labels cost their distance
    rhos = torch.tensor([0.0, 0.3, 0.02, 0.1], dtype=torch.float64)
    assert pair_loss(rhos, torch.tensor([1, 0, 0, 0])).item() == pytest.approx(
        (0 + 0.2) / 2 / MARGIN
    )


def test_pair_loss_matches_the_authors_formula():
    g = np.random.default_rng(0)
    for _ in range(20):
        rhos, labels = g.normal(0, 0.02, 64), g.integers(0, 2, 64)
        got = pair_loss(torch.from_numpy(rhos), torch.from_numpy(labels)).item()
        assert got == pytest.approx(authors_loss(rhos, labels, MARGIN), rel=1e-12)


def test_pair_loss_odd_batch_leaves_the_last_item_out_and_needs_a_pair():
    rhos, labels = torch.tensor([0.1, 0.3, 99.0]), torch.tensor([0, 0, 1])
    assert pair_loss(rhos, labels).item() == pytest.approx(0.2 / MARGIN)
    with pytest.raises(ValueError, match="at least two"):
        pair_loss(torch.tensor([0.1]), torch.tensor([1]))
