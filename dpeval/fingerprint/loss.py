"""The correlation score rho and the pair loss of Deep Image Fingerprint (Sinitsa & Fried, 2024).

rho (paper Sec. 3, the authors' ``corr_fun``): the Pearson correlation between the fingerprint F
and an image's residual r, both standardised over all their values,

    rho(x) = mean_{c,h,w} [ (F - mean F) / std F ] * [ (r - mean r) / std r ],

with population standard deviations (so rho is exactly Pearson's coefficient; the authors' code
divides by the unbiased one, which scales rho by (n - 1) / n for n = C*H*W values: 0.99998 at
3x256x256).

The pair loss (the authors' ``loss_contrast``): a batch's rho values are split into halves
(a_i, b_i); a pair of equal labels is pulled together, a pair of different labels pushed at
least the margin m apart, and the mean over pairs is divided by m:

    L = mean_i [ same_i * |rho_a - rho_b| + (1 - same_i) * relu(m - |rho_a - rho_b|) ] / m.
"""

from __future__ import annotations

import torch

#: Added to a standard deviation before dividing (the authors' value).
EPS = 1e-8
#: The margin m of the pair loss (the authors' value).
MARGIN = 0.01


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Each item of ``x`` (B, ...) shifted to mean 0 and scaled to population std 1."""
    dims = tuple(range(1, x.ndim))
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True, unbiased=False)
    return (x - mean) / (std + EPS)


def rho(fingerprint: torch.Tensor, residuals: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of the fingerprint with each residual.

    Args:
        fingerprint: (C, H, W) or (1, C, H, W).
        residuals: (B, C, H, W), same C, H, W.

    Returns:
        (B,) values in [-1, 1].

    Raises:
        ValueError: when the shapes differ.
    """
    f = fingerprint if fingerprint.ndim == 4 else fingerprint[None]
    if f.shape[1:] != residuals.shape[1:]:
        raise ValueError(
            f"fingerprint {tuple(f.shape[1:])} and residuals {tuple(residuals.shape[1:])} differ"
        )
    return (standardise(f) * standardise(residuals)).mean(dim=(1, 2, 3))


def pair_loss(rhos: torch.Tensor, labels: torch.Tensor, margin: float = MARGIN) -> torch.Tensor:
    """The pair loss L (module docstring) of a batch.

    Args:
        rhos: (B,) correlations; pairs are (rhos[i], rhos[n + i]) for i < n = B // 2 (an odd
            last item takes no part).
        labels: (B,) 0/1 or bool (1: generated).
        margin: m.

    Returns:
        A scalar tensor >= 0.

    Raises:
        ValueError: for a batch of fewer than two items (no pair).
    """
    n = len(rhos) // 2
    if n == 0:
        raise ValueError("the pair loss needs a batch of at least two items")
    labels = labels.bool()
    different = (labels[:n] != labels[n : 2 * n]).to(rhos.dtype)
    delta = (rhos[:n] - rhos[n : 2 * n]).abs()
    per_pair = different * torch.relu(margin - delta) + (1 - different) * delta
    return per_pair.mean() / margin
