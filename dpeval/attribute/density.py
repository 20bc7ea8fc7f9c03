"""Densities on the head's embedding z = sqrt(w) * h: closed-set scorers and open-set scores.

Closed set (Proto-LeakNet Sec. 3.4), per class c a score s_c(z), then z-score calibration
``(s_c(z) - m_c) / s_c`` with m_c, s_c the mean and standard deviation of s_c over class c's own
training embeddings (so classes of different spread compare on one scale):

- ``mahalanobis`` (default): ``-sum_i (z_i - mu_c,i)^2 / var_c,i``, diagonal;
- ``gmm``: log-likelihood of a diagonal Gaussian mixture per class (scikit-learn);
- ``kde``: log-density of a Gaussian KDE per class (scikit-learn), the open-set bandwidth.

Open set (Sec. 3.5): a Gaussian KDE on every known patch's z, bandwidth by K-fold
cross-validated log-likelihood over {0.1, ..., 1.0} (`select_bandwidth`; folds group patches by
image, so no image has patches on both sides). Known patches the KDE was fitted on are scored
out of fold, by the KDE fitted without their fold; every other patch (unseen generators
included) by the KDE fitted on all known patches (`OutOfFold`). Which model scores a patch is
decided by its pixels alone (a digest of its bytes), never by its label. Baselines: the
Mahalanobis score of Lee et al. (NeurIPS 2018; class means, one shared Ledoit-Wolf covariance,
``-min_c`` distance), scored out of fold the same way, and the energy score
``logsumexp(logits)`` (Liu et al., NeurIPS 2020) of the prototype head.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
from scipy.special import logsumexp
from sklearn.covariance import LedoitWolf
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.neighbors import KernelDensity

BANDWIDTHS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
CLOSED_SCORERS = ("mahalanobis", "gmm", "kde")
#: Variance floor of the diagonal Mahalanobis scorer (z is in standardised units).
VAR_FLOOR = 1e-3

#: Fits on (z, y) and returns a scorer z -> (N,) or (N, K) scores.
Fitter = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]


def patch_keys(patches: np.ndarray) -> list[bytes]:
    """A 20-byte SHA-1 digest of every patch's pixels: (N, ...) uint8 -> N keys."""
    return [hashlib.sha1(np.ascontiguousarray(p).tobytes()).digest() for p in patches]


# --------------------------------------------------------------------------- closed set


def _mahalanobis(z: np.ndarray, y: np.ndarray, num_classes: int) -> Callable:
    mean = np.stack([z[y == c].mean(0) for c in range(num_classes)])  # (K, D)
    var = np.stack([z[y == c].var(0) for c in range(num_classes)]).clip(min=VAR_FLOOR)
    return lambda q: -(((q[:, None, :] - mean) ** 2) / var).sum(-1)


def _per_class(z: np.ndarray, y: np.ndarray, num_classes: int, make: Callable) -> Callable:
    models = [make().fit(z[y == c]) for c in range(num_classes)]
    return lambda q: np.stack([m.score_samples(q) for m in models], axis=1)


class ClassDensity:
    """Per-class density scores with z-score calibration (module docstring).

    Args:
        kind: one of `CLOSED_SCORERS`.
        num_classes: K.
        gmm_components: mixture components per class (at most the class's sample count).
        bandwidth: the KDE's bandwidth.
        seed: the mixtures' initialisation.
    """

    def __init__(
        self,
        kind: str,
        num_classes: int,
        gmm_components: int = 3,
        bandwidth: float = 1.0,
        seed: int = 0,
    ) -> None:
        if kind not in CLOSED_SCORERS:
            raise ValueError(f"kind must be one of {CLOSED_SCORERS}, got {kind!r}")
        self.kind, self.num_classes = kind, num_classes
        self.gmm_components, self.bandwidth, self.seed = gmm_components, bandwidth, seed

    def fit(self, z: np.ndarray, y: np.ndarray) -> ClassDensity:
        """Fit on embeddings z (N, D) of classes y (N,) in [0, K); every class needs 2 samples."""
        counts = np.bincount(y, minlength=self.num_classes)
        if counts.min() < 2:
            raise ValueError(
                f"every class needs at least 2 embeddings, got counts {counts.tolist()}"
            )
        z = z.astype(np.float64)
        if self.kind == "mahalanobis":
            self._raw = _mahalanobis(z, y, self.num_classes)
        elif self.kind == "kde":
            make = lambda: KernelDensity(bandwidth=self.bandwidth)  # noqa: E731
            self._raw = _per_class(z, y, self.num_classes, make)
        else:
            n = int(counts.min())
            make = lambda: GaussianMixture(  # noqa: E731
                min(self.gmm_components, n), covariance_type="diag", random_state=self.seed
            )
            self._raw = _per_class(z, y, self.num_classes, make)
        own = self._raw(z)[np.arange(len(y)), y]  # each embedding under its own class
        self.center = np.array([own[y == c].mean() for c in range(self.num_classes)])
        self.scale = np.array([own[y == c].std() for c in range(self.num_classes)]).clip(1e-12)
        return self

    def scores(self, z: np.ndarray) -> np.ndarray:
        """Calibrated class scores (N, K); higher = more like class c."""
        return (self._raw(z.astype(np.float64)) - self.center) / self.scale


# --------------------------------------------------------------------------- open set


def select_bandwidth(
    z: np.ndarray, groups: Sequence[str], grid: Sequence[float] = BANDWIDTHS, n_splits: int = 5
) -> float:
    """The Gaussian-KDE bandwidth of highest cross-validated log-likelihood (GroupKFold)."""
    search = GridSearchCV(
        KernelDensity(kernel="gaussian"), {"bandwidth": list(grid)}, cv=GroupKFold(n_splits)
    )
    search.fit(z.astype(np.float64), groups=np.asarray(groups))
    return float(search.best_params_["bandwidth"])


def fold_ids(groups: Sequence[str], n_splits: int = 5) -> np.ndarray:
    """(N,) fold index in [0, n_splits) of every row; one group's rows share a fold."""
    folds = np.empty(len(groups), dtype=np.int64)
    dummy = np.zeros((len(groups), 1))
    for k, (_, test) in enumerate(GroupKFold(n_splits).split(dummy, groups=np.asarray(groups))):
        folds[test] = k
    return folds


def kde_fitter(bandwidth: float) -> Fitter:
    """Gaussian KDE log-density (the open-set score)."""

    def fit(z: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        return KernelDensity(kernel="gaussian", bandwidth=bandwidth).fit(z).score_samples

    return fit


def mahalanobis_fitter(z: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Lee et al.'s score: -min_c squared Mahalanobis distance to class means, shared covariance."""
    classes = np.unique(y)
    means = np.stack([z[y == c].mean(0) for c in classes])
    cov = LedoitWolf().fit(z - means[np.searchsorted(classes, y)])
    return lambda q: -np.stack([cov.mahalanobis(q - m) for m in means], axis=1).min(1)


class OutOfFold:
    """A scorer fitted on all known rows and on each fold's complement.

    Args:
        fitter: (z, y) -> scorer.
        z, y: the known rows' embeddings (N, D) and classes (N,).
        folds: (N,) fold of each row (`fold_ids`).
    """

    def __init__(self, fitter: Fitter, z: np.ndarray, y: np.ndarray, folds: np.ndarray) -> None:
        z = z.astype(np.float64)
        self.full = fitter(z, y)
        self.per_fold = [fitter(z[folds != k], y[folds != k]) for k in np.unique(folds)]

    def __call__(self, z: np.ndarray, fold: np.ndarray) -> np.ndarray:
        """Scores (N,): rows with ``fold`` k >= 0 by the model without fold k, -1 by the full one."""
        z = z.astype(np.float64)
        out = np.empty(len(z))
        for k, model in [(-1, self.full), *enumerate(self.per_fold)]:
            rows = fold == k
            if rows.any():
                out[rows] = model(z[rows])
        return out


def energy(logits: np.ndarray) -> np.ndarray:
    """Negative free energy logsumexp_c(logits), (N, K) -> (N,): higher = more known."""
    return logsumexp(logits, axis=1)
