"""Open- and closed-set metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from dpeval.attribute import metrics


def test_eer_where_fpr_equals_fnr() -> None:
    # Threshold 0.7 accepts 3 of 4 known (FNR 1/4) and 1 of 4 unseen (0.75: FPR 1/4).
    known, unseen = np.array([0.9, 0.8, 0.7, 0.6]), np.array([0.75, 0.5, 0.4, 0.3])
    assert metrics.eer(known, unseen) == pytest.approx(0.25)
    # AUROC: 14 of the 16 (known, unseen) pairs are ordered right (0.7 and 0.6 lose to 0.75).
    assert metrics.auroc(known, unseen) == pytest.approx(14 / 16)


def test_eer_interpolates_between_thresholds() -> None:
    # A tie at 1: the ROC jumps from (0, .5) to (.5, 1); on that segment FPR = f, FNR = .5 - f,
    # equal at f = .25.
    known, unseen = np.array([2.0, 1.0]), np.array([1.0, 0.0])
    assert metrics.eer(known, unseen) == pytest.approx(0.25)
    assert metrics.eer(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0  # separable


def test_fpr_at_95_tpr() -> None:
    known = np.arange(1.0, 21.0)  # accepting 19 of 20 (95 %) needs threshold <= 2
    unseen = np.array([0.5, 1.5, 2.5, 100.0])  # at threshold 2: 2.5 and 100 accepted
    assert metrics.fpr_at_tpr(known, unseen) == pytest.approx(0.5)
    assert metrics.fpr_at_tpr(known, np.array([-1.0, 0.0])) == 0.0


def test_overlap_coefficient() -> None:
    a = np.linspace(0, 1, 100)
    assert metrics.overlap(a, a) == pytest.approx(1.0)
    assert metrics.overlap(a, a + 5) == 0.0
    # 2 bins split at the pooled median 2.5: known (3/4, 1/4), unseen (1/4, 3/4)
    assert metrics.overlap(np.arange(4.0), np.arange(2.0, 6.0)) == pytest.approx(0.5)
    # invariant to a monotone map of the score, unlike equal-width bins
    rng = np.random.default_rng(0)
    k, u = rng.normal(1, 1, 400), rng.normal(0, 1, 300)
    assert metrics.overlap(np.exp(3 * k), np.exp(3 * u)) == pytest.approx(metrics.overlap(k, u))
    assert 0.4 < metrics.overlap(k, u) < 0.8  # two unit normals 1 apart: 2 Phi(-1/2) = 0.62


def test_open_set_rejects_nan_and_empty() -> None:
    with pytest.raises(ValueError, match="NaN"):
        metrics.open_set_metrics(np.array([1.0, np.nan]), np.array([0.0]))
    with pytest.raises(ValueError, match="known and unseen"):
        metrics.open_set_metrics(np.array([1.0]), np.array([]))


def test_closed_set_metrics_by_hand() -> None:
    y = np.array([0, 0, 0, 1, 1, 2])
    scores = np.array(
        [
            [0.9, 0.1, 0.0],
            [0.2, 0.7, 0.1],
            [0.8, 0.1, 0.1],
            [0.1, 0.8, 0.1],
            [0.3, 0.6, 0.1],
            [0.2, 0.1, 0.7],
        ]
    )
    m = metrics.closed_set_metrics(y, scores, ["real", "sd21", "sdxl"])
    assert m["top1"] == pytest.approx(5 / 6)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, scores.argmax(1)))
    assert m["confusion"] == [[2, 1, 0], [0, 2, 0], [0, 0, 1]]
    # real vs rest on column 0: positives {.9, .2, .8}, negatives {.1, .3, .2}: 7.5 / 9 pairs.
    assert m["per_class_auc"]["real"] == pytest.approx(7.5 / 9)
    assert m["per_class_auc"]["sdxl"] == pytest.approx(1.0)
    assert m["macro_auc"] == pytest.approx(np.mean(list(m["per_class_auc"].values())))


def test_closed_set_metrics_undefined_auc_is_none() -> None:
    m = metrics.closed_set_metrics(np.array([0, 0]), np.array([[0.9, 0.1], [0.6, 0.4]]), ["a", "b"])
    assert m["per_class_auc"] == {"a": None, "b": None} and m["macro_auc"] is None
