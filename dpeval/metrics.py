"""Pixel-level localization metrics under every convention the literature reports.

One implementation of each metric, used by `dpeval score` (any prediction folder) and by
`dpeval tgif` (its tables). A map is ``(H, W)`` float, the probability that each pixel was
inpainted, in [0, 1]; a mask is ``(H, W)`` 0/1 or bool (1 = inpainted). Every function scores
ONE image; papers average the per-image values over images (`mean_over_images`).

F1 conventions (keys of `F1_CONVENTIONS`; a pixel is predicted inpainted when ``map > t``,
strictly, in all of them):

* ``tgif`` -- TGIF (IDLabMedia/tgif-dataset, ``computeLocF1_th`` / ``localization_metrics.py``):
  ``2TP / (2TP + FP + FN)`` over all pixels; 1 when mask and prediction are both empty.
* ``trufor`` -- TruFor as published (grip-unina/TruFor, ``metrics.py``,
  ``computeLocalizationMetrics``): pixels near the mask border are not counted (positives = the
  mask eroded by a 15-px minimum filter, negatives = outside the mask dilated by an 11-px maximum
  filter); the score is ``max(F1(map), F1(1 - map))``, each ``2TP / max(2TP + FP + FN, 1e-32)``.
  At a fixed threshold the original builds its confusion matrix with scikit-learn without
  ``labels=``: when the counted pixels hold a single class (empty or fully eroded mask with no
  predicted pixel, say) the matrix is 1x1, indexing it fails, and the image scores **NaN**
  (skipped by TruFor's ``nanmean``).
* ``trufor_tgif`` -- the same metric as TGIF's copy of it computes (``code/TruFor/common/
  metrics.py``, ``labels=[0, 1]``): such an image scores **0** instead of NaN.
* ``imdl_origin`` / ``imdl_reverse`` / ``imdl_double`` -- IMDL-BenCo's ``PixelF1``
  (scu-zjz/IMDLBenCo, ``evaluation/F1.py``): ``P = TP / (TP + FP + 1e-8)``,
  ``R = TP / (TP + FN + 1e-8)``, ``F1 = 2PR / (P + R + 1e-8)`` over all pixels, of the map
  (origin), of the inverted prediction (reverse), or the larger of the two (double); an empty
  mask with an empty prediction scores 0.

Each is given at the fixed threshold 0.5 (``@0.5``) and at the image's best threshold
(``@best``: the maximum over every threshold ``t`` in {-inf} and the map's values). For TruFor
``@best`` is the original's ``F1_best`` (its sweep over the map's values, max with the inverse;
NaN only when no pixel is counted), identical for both variants.

Other metrics: ``iou`` = ``TP / (TP + FP + FN)`` (1 when both are empty, as TGIF's
``computeMetrics``), ``mcc`` = Matthews correlation (0 when its denominator is 0, as
scikit-learn), both over all pixels at 0.5 and at the best threshold; ``auc`` = pixel ROC AUC
(scikit-learn ``roc_auc_score``; NaN when the mask holds one class, as TGIF's
``safe_roc_auc_score``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter, minimum_filter
from sklearn.metrics import roc_auc_score

THRESHOLD = 0.5
ERODE_SIZE = 15  # TruFor: positives = minimum_filter(mask, 15)
DILATE_SIZE = 11  # TruFor: negatives = not maximum_filter(mask, 11)
TRUFOR_EPS = 1e-32  # TruFor's and TGIF's denominators: np.maximum(..., 1e-32)
IMDL_EPS = 1e-8  # IMDL-BenCo's smoothing in P, R and F1

#: F1 conventions: key -> one-line description (what the tables print).
F1_CONVENTIONS = {
    "tgif": "TGIF: 2TP/(2TP+FP+FN) over all pixels; empty mask + empty prediction = 1",
    "trufor": "TruFor (original): 15-px eroded / 11-px dilated border excluded, "
    "max(F1(map), F1(1-map)); single-class counted pixels = NaN (skipped)",
    "trufor_tgif": "TruFor as TGIF's copy computes it: same, but single-class counted pixels = 0",
    "imdl_origin": "IMDL-BenCo origin: 2PR/(P+R) with 1e-8 smoothing, all pixels; "
    "empty + empty = 0",
    "imdl_reverse": "IMDL-BenCo reverse: the same F1 of the inverted prediction",
    "imdl_double": "IMDL-BenCo double: max(origin, reverse)",
}
#: Threshold-based metrics that are not F1.
OTHER_METRICS = {
    "iou": "IoU TP/(TP+FP+FN), all pixels; empty + empty = 1",
    "mcc": "Matthews correlation, all pixels; 0 when undefined",
}
AUC = "auc"
AUC_DESCRIPTION = "pixel ROC AUC (scikit-learn); NaN when the mask holds one class"
#: Column suffixes: the fixed threshold and the per-image best threshold.
AT_FIXED, AT_BEST = "@0.5", "@best"


@dataclass(frozen=True)
class Confusion:
    """Pixel counts; scalars, or arrays with one entry per threshold (`sweep`)."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray

    def inverse(self) -> Confusion:
        """The counts of the inverted prediction (``map <= t`` called inpainted)."""
        return Confusion(tp=self.fn, fp=self.tn, fn=self.tp, tn=self.fp)


def check_pair(prob: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mask as bool after checking both arrays.

    Raises:
        ValueError: different or non-2-D shapes, a mask with values other than 0/1, or a map
            with values outside [0, 1] or NaN.
    """
    if prob.ndim != 2 or prob.shape != mask.shape:
        raise ValueError(f"map {prob.shape} and mask {mask.shape} must be the same (H, W) shape")
    if mask.dtype != np.bool_ and mask.size and not np.isin(mask, (0, 1)).all():
        raise ValueError(f"mask values must be 0/1, got range [{mask.min()}, {mask.max()}]")
    if np.isnan(prob).any():
        raise ValueError("map holds NaN")
    if prob.size and not (prob.min() >= 0 and prob.max() <= 1):
        raise ValueError(f"map values must lie in [0, 1], got [{prob.min()}, {prob.max()}]")
    return mask.astype(bool)


def confusion(pred: np.ndarray, gt: np.ndarray) -> Confusion:
    """Counts of a bool prediction against a bool ground truth of the same shape."""
    tp = int(np.count_nonzero(pred & gt))
    fp = int(np.count_nonzero(pred & ~gt))
    fn = int(np.count_nonzero(gt)) - tp
    return Confusion(*map(np.asarray, (tp, fp, fn, pred.size - tp - fp - fn)))


def sweep(values: np.ndarray, gt: np.ndarray) -> Confusion:
    """Counts at every threshold ``t`` in {-inf} and the distinct values, prediction ``> t``.

    As TruFor's ``computeMetricsContinue``: values are cast to float32 and sorted; at the last
    occurrence of each distinct value ``u``, the pixels ``<= u`` are the predicted negatives.
    The extra first entry (``t = -inf``) predicts every pixel inpainted.
    """
    values = values.ravel().astype(np.float32)
    gt = gt.ravel()
    order = np.argsort(values, kind="stable")
    sorted_values, sorted_gt = values[order], gt[order]
    negatives_below = np.cumsum(~sorted_gt)  # TN at each cut
    positives_below = np.cumsum(sorted_gt)  # FN at each cut
    last = np.append(sorted_values[1:] > sorted_values[:-1], True)
    tn = np.concatenate([[0], negatives_below[last]])
    fn = np.concatenate([[0], positives_below[last]])
    n_pos = int(np.count_nonzero(gt))
    return Confusion(tp=n_pos - fn, fp=(gt.size - n_pos) - tn, fn=fn, tn=tn)


# --------------------------------------------------------------------------- formulas


def _div(num: np.ndarray, den: np.ndarray, eps: float) -> np.ndarray:
    return np.asarray(num, dtype=np.float64) / np.maximum(np.asarray(den, dtype=np.float64), eps)


def f1_plain(c: Confusion) -> np.ndarray:
    """``2TP / max(2TP + FP + FN, 1e-32)`` (TruFor's ``computeF1``)."""
    return _div(2 * c.tp, 2 * c.tp + c.fp + c.fn, TRUFOR_EPS)


def f1_tgif(c: Confusion) -> np.ndarray:
    """TGIF: `f1_plain`, and 1 where TP = FP = FN = 0 (empty mask, empty prediction)."""
    return np.where(c.tp + c.fp + c.fn == 0, 1.0, f1_plain(c))


def f1_trufor(c: Confusion) -> np.ndarray:
    """TruFor: ``max(F1(map), F1(inverse))`` on the border-excluded counts."""
    return np.maximum(f1_plain(c), f1_plain(c.inverse()))


def f1_imdl(c: Confusion) -> np.ndarray:
    """IMDL-BenCo's ``Cal_F1``: smoothed precision and recall, then F1."""
    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (c.tp, c.fp, c.fn))
    precision = tp / (tp + fp + IMDL_EPS)
    recall = tp / (tp + fn + IMDL_EPS)
    return 2 * precision * recall / (precision + recall + IMDL_EPS)


def iou(c: Confusion) -> np.ndarray:
    """``TP / (TP + FP + FN)``; 1 when both are empty (TGIF's ``computeMetrics``)."""
    union = c.tp + c.fp + c.fn
    return np.where(union == 0, 1.0, _div(c.tp, union, 1.0))


def mcc(c: Confusion) -> np.ndarray:
    """Matthews correlation coefficient; 0 where the denominator is 0 (scikit-learn)."""
    tp, fp, fn, tn = (np.asarray(v, dtype=np.float64) for v in (c.tp, c.fp, c.fn, c.tn))
    den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return np.where(den == 0, 0.0, (tp * tn - fp * fn) / np.where(den == 0, 1.0, den))


#: Conventions computed on all pixels: key -> formula on the counts.
_ALL_PIXELS = {
    "tgif": f1_tgif,
    "imdl_origin": f1_imdl,
    "imdl_reverse": lambda c: f1_imdl(c.inverse()),
    "imdl_double": lambda c: np.maximum(f1_imdl(c), f1_imdl(c.inverse())),
    "iou": iou,
    "mcc": mcc,
}


# --------------------------------------------------------------------------- TruFor


def trufor_regions(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TruFor's counted pixels: ``(negatives, positives)`` (``extractGTs``), bool (H, W)."""
    positives = minimum_filter(mask, ERODE_SIZE)
    negatives = ~maximum_filter(mask, DILATE_SIZE)
    return negatives, positives


def trufor_fixed(prob: np.ndarray, mask: np.ndarray, threshold: float = THRESHOLD) -> dict:
    """TruFor's F1 at a fixed threshold, both variants: ``{"trufor": .., "trufor_tgif": ..}``."""
    negatives, positives = trufor_regions(mask)
    counted = negatives | positives
    if not counted.any():  # scikit-learn raises on empty input: NaN in both codes
        return {"trufor": math.nan, "trufor_tgif": math.nan}
    pred = prob[counted] > threshold
    gt = positives[counted]
    value = float(f1_trufor(confusion(pred, gt)))
    single_class = (gt.all() and pred.all()) or not (gt.any() or pred.any())
    return {"trufor": math.nan if single_class else value, "trufor_tgif": value}


def trufor_best(prob: np.ndarray, mask: np.ndarray) -> float:
    """TruFor's ``F1_best``: the best threshold's ``max(F1, F1 inverse)``; NaN if nothing counted."""
    negatives, positives = trufor_regions(mask)
    counted = negatives | positives
    if not counted.any():
        return math.nan
    return float(f1_trufor(sweep(prob[counted], positives[counted])).max())


# --------------------------------------------------------------------------- per image


def pixel_auc(prob: np.ndarray, gt: np.ndarray) -> float:
    """Pixel ROC AUC; NaN when ``gt`` holds a single class."""
    if gt.all() or not gt.any():
        return math.nan
    return float(roc_auc_score(gt.ravel(), prob.ravel()))


def pixel_metrics(
    prob: np.ndarray, mask: np.ndarray, best: bool = True, auc: bool = True
) -> dict[str, float]:
    """Every metric of one image.

    Args:
        prob: (H, W) map in [0, 1].
        mask: (H, W) 0/1 or bool ground truth.
        best: also compute the ``@best`` columns (one sort of the map).
        auc: also compute the pixel AUC.

    Returns:
        ``{"<key>@0.5": v, ["<key>@best": v,] ["auc": v]}`` for every key of `F1_CONVENTIONS`
        and `OTHER_METRICS`; NaN where the convention leaves the image undefined.

    Raises:
        ValueError: bad shapes or values (`check_pair`).
    """
    gt = check_pair(prob, mask)
    fixed = confusion(prob > THRESHOLD, gt)
    out = {key + AT_FIXED: float(formula(fixed)) for key, formula in _ALL_PIXELS.items()}
    out.update({key + AT_FIXED: v for key, v in trufor_fixed(prob, gt).items()})
    if best:
        swept = sweep(prob, gt)
        out.update({key + AT_BEST: float(f(swept).max()) for key, f in _ALL_PIXELS.items()})
        out["trufor" + AT_BEST] = out["trufor_tgif" + AT_BEST] = trufor_best(prob, gt)
    if auc:
        out[AUC] = pixel_auc(prob, gt)
    return {k: out[k] for k in metric_columns(best, auc) if k in out}


def metric_columns(best: bool = True, auc: bool = True) -> list[str]:
    """Column names in table order: each F1 convention, IoU, MCC (@0.5, @best), then AUC."""
    keys = [*F1_CONVENTIONS, *OTHER_METRICS]
    columns = [k + AT_FIXED for k in keys] + ([k + AT_BEST for k in keys] if best else [])
    return columns + ([AUC] if auc else [])


def describe(column: str) -> str:
    """The one-line description of a column's metric."""
    key = column.split("@")[0]
    return {**F1_CONVENTIONS, **OTHER_METRICS, AUC: AUC_DESCRIPTION}[key]


def mean_over_images(values: Iterable[float]) -> tuple[float, int]:
    """Mean over images, NaN skipped (TruFor's ``nanmean``): ``(mean, images counted)``.

    NaN for no counted image.
    """
    kept = [v for v in values if not math.isnan(v)]
    return (float(np.mean(kept)) if kept else math.nan), len(kept)
