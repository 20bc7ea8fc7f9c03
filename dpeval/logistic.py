"""Binary L2-regularised logistic regression fitted by Newton's method in torch.

The linear probe (paper Sec. 4.1) fits one on a few hundred thousand standardised 64-d GAP
embeddings. With so few features Newton's method wins: the Hessian is only (C+1) x (C+1), every
iteration costs two passes over the data, and it converges quadratically in about ten
iterations where L-BFGS takes a hundred or more.

The objective is scikit-learn's ``LogisticRegression(penalty="l2", C=C)``:
``0.5 ||w||^2 + C * sum_i log(1 + exp(-y_i (x_i . w + b)))`` with an unpenalised intercept, so
its solution is the same up to the solvers' tolerances.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


@dataclass
class LogisticRegression:
    """Binary logistic regression, scikit-learn compatible objective.

    Args:
        C: inverse L2 strength (scikit-learn's default 1.0).
        max_iter: Newton iterations at most.
        tol: stop when the gradient's largest entry, divided by the sample count, is below it.
        hessian_rows: rows the Hessian is estimated on (all of them when fewer).
        device: where the fit runs.
    """

    C: float = 1.0
    max_iter: int = 50
    tol: float = 1e-6
    hessian_rows: int = 16384
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.C <= 0:
            raise ValueError(f"C must be positive, got {self.C}")
        self.coef_: np.ndarray | None = None
        self.intercept_: float = 0.0
        self.n_iter_: int = 0

    def fit(self, x: np.ndarray, y: np.ndarray) -> LogisticRegression:
        """Fit on features ``x`` (N, D) and labels ``y`` (N,) in {0, 1}.

        Raises:
            ValueError: for mismatched shapes or labels other than 0/1, or a single class.
        """
        if x.ndim != 2 or len(x) != len(y):
            raise ValueError(f"expected x (N, D) and y (N,), got {x.shape} and {y.shape}")
        classes = np.unique(y)
        if not np.array_equal(classes, [0, 1]):
            raise ValueError(f"labels must contain both 0 and 1 and nothing else, got {classes}")
        n, d = x.shape
        # Passes over the data run in float32 (the data's own precision); the (D+1)^2 system
        # and the parameters stay float64. The Hessian is estimated on a fixed random subset of
        # rows: Newton's direction needs only its curvature, the exact float64-accumulated
        # gradient decides convergence, and the line search keeps every step a descent.
        dev = torch.device(self.device)
        xf = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32)).to(dev)
        t = torch.as_tensor(y, dtype=torch.float32).to(dev)
        gen = torch.Generator().manual_seed(0)
        rows = torch.randperm(n, generator=gen)[: self.hessian_rows].to(dev)
        xh = torch.cat(
            [xf[rows].double(), torch.ones(len(rows), 1, dtype=torch.float64, device=dev)], 1
        )
        hscale = n / len(rows)
        reg = torch.full((d + 1,), 1.0 / self.C, dtype=torch.float64, device=dev)
        reg[-1] = 0.0  # the intercept (last entry of theta) is not penalised

        def logits(theta: torch.Tensor) -> torch.Tensor:
            return xf @ theta[:-1].float() + theta[-1].float()

        def objective(theta: torch.Tensor, z: torch.Tensor) -> float:
            data = (F.softplus(z) - t * z).sum(dtype=torch.float64)
            return float(data + 0.5 * (reg * theta * theta).sum())

        theta = torch.zeros(d + 1, dtype=torch.float64, device=dev)
        z = logits(theta)
        loss = objective(theta, z)
        for it in range(1, self.max_iter + 1):
            residual = torch.sigmoid(z) - t
            grad = torch.cat([(xf.T @ residual).double(), residual.sum(dtype=torch.float64)[None]])
            grad += reg * theta
            if grad.abs().max().item() / n < self.tol:
                self.n_iter_ = it - 1
                break
            ph = torch.sigmoid(xh @ theta)
            hess = hscale * (xh.T * (ph * (1 - ph))) @ xh + torch.diag(reg)
            step = torch.linalg.solve(hess, grad)
            lr = 1.0
            while True:
                candidate = theta - lr * step
                z_new = logits(candidate)
                new_loss = objective(candidate, z_new)
                if new_loss <= loss or lr < 1e-10:
                    break
                lr *= 0.5
            theta, z, loss = candidate, z_new, new_loss
            self.n_iter_ = it
        else:
            logger.warning("logistic regression: no convergence in %d iterations", self.max_iter)
        theta = theta.cpu().numpy()
        self.coef_, self.intercept_ = theta[:-1], float(theta[-1])
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """Logits (N,) of the positive class."""
        if self.coef_ is None:
            raise RuntimeError("fit first")
        return np.asarray(x, dtype=np.float64) @ self.coef_ + self.intercept_

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Labels (N,) in {0, 1}."""
        return (self.decision_function(x) > 0).astype(np.int64)


@dataclass
class Standardizer:
    """Zero mean, unit variance per feature, fitted on the training split only."""

    eps: float = 1e-12

    def fit(self, x: np.ndarray) -> Standardizer:
        self.mean_ = x.mean(axis=0, dtype=np.float64)
        self.scale_ = x.std(axis=0, dtype=np.float64)
        self.scale_[self.scale_ < self.eps] = 1.0  # a constant feature stays 0, like scikit-learn
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean_) / self.scale_).astype(np.float32)
