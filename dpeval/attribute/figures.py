"""Figures of an attribution run: the embedding in 2-D and the ROC curves of the open-set scores.

Drawn with matplotlib's object API (no pyplot, no display), like `dptrain.curves`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.metrics import roc_curve

logger = logging.getLogger(__name__)


def project_2d(z: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """(N, D) -> (N, 2) with UMAP when ``umap-learn`` is installed, else PCA; and the method."""
    try:
        import umap  # optional: not a dependency of the toolkit
    except ImportError:
        umap = None
    if umap is not None and len(z) > 15:
        return umap.UMAP(n_components=2, random_state=seed).fit_transform(z), "UMAP"
    return PCA(n_components=2, random_state=seed).fit_transform(z), "PCA"


def embedding_plot(
    z: np.ndarray, producers: list[str], unseen: np.ndarray, out_png: Path, title: str = ""
) -> Path:
    """Scatter of the embeddings in 2-D, one colour per producer, unseen producers as crosses.

    Args:
        z: (N, D) embeddings.
        producers: N producer names (``real`` for pristine patches).
        unseen: (N,) bool, rows of unseen generators.
        out_png: the file written.
    """
    xy, method = project_2d(z)
    fig = Figure(figsize=(6.4, 5.2))
    ax = fig.add_subplot(1, 1, 1)
    names = np.asarray(producers)
    for i, name in enumerate(sorted(set(producers))):
        rows = names == name
        is_unseen = bool(unseen[rows].any())
        ax.scatter(
            xy[rows, 0],
            xy[rows, 1],
            s=14 if is_unseen else 8,
            marker="x" if is_unseen else "o",
            color=f"C{i % 10}",
            alpha=0.8 if is_unseen else 0.5,
            label=f"{name} (unseen)" if is_unseen else name,
        )
    ax.set_xlabel(f"{method} 1")
    ax.set_ylabel(f"{method} 2")
    ax.set_title(title or f"embedding z ({method})", fontsize=10)
    ax.legend(fontsize=8, markerscale=1.5)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    return Path(out_png)


def roc_plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], out_png: Path, title: str) -> Path:
    """ROC curves of known-ness scores: name -> (known scores, unseen scores); known positive."""
    fig = Figure(figsize=(5.2, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    for name, (known, unseen) in curves.items():
        y = np.r_[np.ones(len(known)), np.zeros(len(unseen))]
        fpr, tpr, _ = roc_curve(y, np.r_[known, unseen])
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1)
    ax.set_xlabel("false positive rate (unseen accepted as known)")
    ax.set_ylabel("true positive rate (known accepted)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    return Path(out_png)
