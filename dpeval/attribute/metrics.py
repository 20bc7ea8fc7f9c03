"""Closed-set attribution and open-set detection metrics (Proto-LeakNet Sec. 4).

Open set: every score is a *known-ness* score (higher = more like the known classes, e.g. a log
density), the known (closed-set) patches are the positive class and the unseen ones the
negative class, as in Proto-LeakNet's ``open_set.py`` and the OOD literature (Hendrycks &
Gimpel 2017). So FPR@95%TPR is the fraction of unseen patches accepted as known when 95 % of the
known ones are accepted. AUROC and EER do not depend on that orientation.

Closed set: top-1 accuracy, balanced accuracy (mean per-class recall), one-vs-rest AUC per class
and their macro mean, and the confusion matrix (rows true, columns predicted), from
scikit-learn; balanced accuracy from that confusion matrix (scikit-learn's definition, without
its warning for classes predicted but absent).
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.metrics import (
    confusion_matrix,
    roc_auc_score,
    roc_curve,
)

logger = logging.getLogger(__name__)

#: True-positive rate of FPR@TPR.
TARGET_TPR = 0.95


def _roc(known: np.ndarray, unseen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) at every threshold, known patches positive."""
    if len(known) == 0 or len(unseen) == 0:
        raise ValueError("open-set metrics need known and unseen scores")
    y = np.r_[np.ones(len(known)), np.zeros(len(unseen))]
    scores = np.r_[known, unseen].astype(np.float64)
    if not np.isfinite(scores).all():
        raise ValueError("open-set scores contain NaN or infinite values")
    fpr, tpr, _ = roc_curve(y, scores, drop_intermediate=False)
    return fpr, tpr


def auroc(known: np.ndarray, unseen: np.ndarray) -> float:
    """Area under the ROC of known (positive) vs unseen scores, in [0, 1]; 0.5 is chance."""
    _roc(known, unseen)  # validates
    y = np.r_[np.ones(len(known)), np.zeros(len(unseen))]
    return float(roc_auc_score(y, np.r_[known, unseen]))


def eer(known: np.ndarray, unseen: np.ndarray) -> float:
    """Equal error rate in [0, 1]: where the FPR equals the FNR (1 - TPR).

    The ROC is piecewise linear between thresholds; the crossing is interpolated linearly on
    the segment where FPR - FNR changes sign.
    """
    fpr, tpr = _roc(known, unseen)
    gap = fpr - (1.0 - tpr)  # increases from -1 (threshold +inf) to +1 (threshold -inf)
    i = int(np.flatnonzero(gap >= 0)[0])
    if gap[i] == 0 or i == 0:
        return float(fpr[i])
    frac = -gap[i - 1] / (gap[i] - gap[i - 1])
    return float(fpr[i - 1] + frac * (fpr[i] - fpr[i - 1]))


def fpr_at_tpr(known: np.ndarray, unseen: np.ndarray, target: float = TARGET_TPR) -> float:
    """The lowest FPR among thresholds that accept at least ``target`` of the known patches."""
    fpr, tpr = _roc(known, unseen)
    return float(fpr[tpr >= target - 1e-12].min())


def overlap(known: np.ndarray, unseen: np.ndarray) -> float:
    """Overlap coefficient of the two score distributions, in [0, 1] (1: identical, 0: apart).

    ``sum_b min(p_known(b), p_unseen(b))``, p the fraction of each sample in bin b
    (Proto-LeakNet's ``compute_overlap_coefficient``), with bins at quantiles of the pooled
    scores, ``sqrt`` of the smaller sample many (2 to 32): like AUROC it is unchanged by a
    monotone map of the score, so a log-density's long tail cannot squeeze both samples into
    one equal-width bin.
    """
    known, unseen = np.asarray(known, np.float64), np.asarray(unseen, np.float64)
    bins = int(np.clip(np.sqrt(min(len(known), len(unseen))), 2, 32))
    edges = np.unique(np.quantile(np.r_[known, unseen], np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 1.0  # every score equal
    p = np.histogram(known, edges)[0] / len(known)
    q = np.histogram(unseen, edges)[0] / len(unseen)
    return float(np.minimum(p, q).sum())


def open_set_metrics(known: np.ndarray, unseen: np.ndarray) -> dict[str, float | int]:
    """AUROC, EER, FPR@95%TPR and overlap of known-ness scores (see the module docstring)."""
    return {
        "auroc": auroc(known, unseen),
        "eer": eer(known, unseen),
        "fpr95": fpr_at_tpr(known, unseen),
        "overlap": overlap(known, unseen),
        "n_known": int(len(known)),
        "n_unseen": int(len(unseen)),
    }


def closed_set_metrics(y_true: np.ndarray, scores: np.ndarray, classes: list[str]) -> dict:
    """Attribution metrics of class scores.

    Args:
        y_true: (N,) int class indices into ``classes``.
        scores: (N, K) class scores or probabilities; higher = more likely; argmax predicts.
        classes: the K class names.

    Returns:
        ``top1``, ``balanced_accuracy`` (in [0, 1]), ``per_class_auc`` (name -> one-vs-rest AUC,
        None for a class without positives or negatives in ``y_true``), ``macro_auc`` (mean of
        the defined ones, None if none), ``confusion`` (K x K counts, rows true), ``n``.
    """
    y_true = np.asarray(y_true)
    pred = scores.argmax(axis=1)
    per_class: dict[str, float | None] = {}
    for k, name in enumerate(classes):
        positive = y_true == k
        if positive.all() or not positive.any():
            logger.warning("class %s: no positives or no negatives; its AUC is undefined", name)
            per_class[name] = None
            continue
        per_class[name] = float(roc_auc_score(positive, scores[:, k]))
    defined = [v for v in per_class.values() if v is not None]
    confusion = confusion_matrix(y_true, pred, labels=list(range(len(classes))))
    support = confusion.sum(axis=1)
    recall = confusion.diagonal()[support > 0] / support[support > 0]
    return {
        "top1": float((pred == y_true).mean()),
        "balanced_accuracy": float(recall.mean()),  # sklearn's balanced_accuracy_score
        "macro_auc": float(np.mean(defined)) if defined else None,
        "per_class_auc": per_class,
        "confusion": confusion.tolist(),
        "n": int(len(y_true)),
    }
