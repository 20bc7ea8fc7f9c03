"""Pixel F1 at threshold 0.5 under the two conventions localization papers report on TGIF.

* **TGIF** (headline; TGIF's ``computeLocF1_th``): binarise the map with a strict ``> 0.5`` and
  compute ``2TP / (2TP + FP + FN)`` over every pixel; an image whose mask and prediction are
  both empty scores 1.
* **TruFor** (second column; TruFor's / MMFusion's ``computeLocalizationMetrics``, fixed
  threshold): pixels near the mask border are ignored (positives = mask eroded with a 15-px
  minimum filter, negatives = outside of the mask dilated with an 11-px maximum filter); the
  score is the larger of the F1 of the map and of its inverse; a zero denominator gives 0.

Both are computed per image on fake images and averaged (`mean_f1`). Masks must be 0/1:
TGIF's code silently breaks on 0/255 masks, so these functions refuse them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from scipy.ndimage import maximum_filter, minimum_filter

#: The two conventions, headline first; keys of every result table and JSON.
CONVENTIONS = ("tgif", "trufor")
THRESHOLD = 0.5
ERODE_SIZE = 15  # TruFor: positives = minimum_filter(mask, 15)
DILATE_SIZE = 11  # TruFor: negatives = not maximum_filter(mask, 11)


def _check(prob: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if prob.shape != mask.shape or prob.ndim != 2:
        raise ValueError(f"map {prob.shape} and mask {mask.shape} must be the same (H, W) shape")
    if mask.size and (mask.min() < 0 or mask.max() > 1):
        raise ValueError(f"mask values must be 0/1, got range [{mask.min()}, {mask.max()}]")
    return mask.astype(bool)


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / max(2 * tp + fp + fn, 1e-32)


def f1_tgif(prob: np.ndarray, mask: np.ndarray) -> float:
    """TGIF's F1 of ``prob > 0.5`` against ``mask``; 1 when both are empty.

    Args:
        prob: (H, W) map of probabilities of being inpainted.
        mask: (H, W) 0/1 ground truth (1 = inpainted).
    """
    gt = _check(prob, mask)
    pred = prob > THRESHOLD
    tp = int(np.count_nonzero(pred & gt))
    fp = int(np.count_nonzero(pred & ~gt))
    fn = int(np.count_nonzero(~pred & gt))
    if tp + fp + fn == 0:
        return 1.0
    return _f1(tp, fp, fn)


def f1_trufor(prob: np.ndarray, mask: np.ndarray) -> float:
    """TruFor's border-excluded F1 at 0.5, the max of the map's and its inverse's.

    Args:
        prob: (H, W) map of probabilities of being inpainted.
        mask: (H, W) 0/1 ground truth (1 = inpainted).
    """
    gt = _check(prob, mask)
    positives = minimum_filter(gt, ERODE_SIZE)
    negatives = ~maximum_filter(gt, DILATE_SIZE)
    pred = prob > THRESHOLD
    tp = int(np.count_nonzero(pred & positives))
    fn = int(np.count_nonzero(~pred & positives))
    fp = int(np.count_nonzero(pred & negatives))
    tn = int(np.count_nonzero(~pred & negatives))
    # The inverse map swaps predicted classes: its TP are our FN, its FP our TN, its FN our TP.
    return max(_f1(tp, fp, fn), _f1(fn, tn, tp))


F1_FUNCTIONS = {"tgif": f1_tgif, "trufor": f1_trufor}


def mean_f1(scores: Iterable[float]) -> float:
    """Mean over images, ignoring NaN (TruFor's ``nanmean``); NaN for no image."""
    values = [s for s in scores if not math.isnan(s)]
    return float(np.mean(values)) if values else math.nan
