import math

import numpy as np
import pytest

from dpeval.tgif.metrics import f1_tgif, f1_trufor, mean_f1


def _square(size: int, lo: int, hi: int) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    m[lo:hi, lo:hi] = 1
    return m


def test_tgif_hand_computed():
    mask = np.zeros((4, 4), np.uint8)
    mask[0, :] = 1  # 4 positives
    prob = np.zeros((4, 4))
    prob[0, :2] = 0.9  # TP 2
    prob[1, 0] = 0.7  # FP 1
    prob[0, 2] = 0.5  # exactly 0.5 is NOT positive (strict >): FN 2
    assert f1_tgif(prob, mask) == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))


def test_tgif_empty_cases():
    empty, full = np.zeros((8, 8), np.uint8), np.ones((8, 8))
    assert f1_tgif(np.zeros((8, 8)), empty) == 1.0  # both empty
    assert f1_tgif(full, empty) == 0.0  # prediction on an empty mask
    assert f1_tgif(np.zeros((8, 8)), _square(8, 2, 6)) == 0.0  # empty prediction


def test_masks_must_be_binary():
    with pytest.raises(ValueError, match="0/1"):
        f1_tgif(np.zeros((4, 4)), np.full((4, 4), 255, np.uint8))
    with pytest.raises(ValueError, match="shape"):
        f1_trufor(np.zeros((4, 4)), np.zeros((4, 5), np.uint8))


def test_trufor_border_band_hand_computed():
    # 60x60 image, 30x30 square mask at [15, 45): eroded by 15 (7 px each side) -> [22, 38) = 16x16
    # positives; negatives = outside the mask dilated by 11 (5 px) -> outside [10, 50) = 3600 - 1600.
    mask = _square(60, 15, 45)
    pred = mask.astype(float)  # perfect on the mask
    assert f1_trufor(pred, mask) == 1.0
    # predict exactly the band around the mask only: no valid TP, and every valid negative is a TN
    band = np.zeros((60, 60))
    band[10:50, 10:50] = 1
    band[15:45, 15:45] = 0
    # F1(map): TP 0 -> 0. Inverse map = 1 inside the mask and outside the band: TP' = 256,
    # FP' = 2000 (all valid negatives), FN' = 0 -> 512 / 2512.
    assert f1_trufor(band, mask) == pytest.approx(512 / 2512)


def test_trufor_empty_cases():
    empty = np.zeros((40, 40), np.uint8)
    # empty mask: no positives; F1(map) = 0 and F1(inverse) = 0 (TruFor's zero denominator)
    assert f1_trufor(np.zeros((40, 40)), empty) == 0.0
    assert f1_trufor(np.ones((40, 40)), empty) == 0.0
    # empty prediction on a 20x20 mask at [10, 30): positives [17, 23) = 36 px, negatives outside
    # [5, 35) = 1600 - 900 = 700. F1(map) = 0; inverse predicts everything: 72 / (72 + 700).
    mask = _square(40, 10, 30)
    assert f1_trufor(np.zeros((40, 40)), mask) == pytest.approx(72 / 772)
    # a mask thinner than the erosion has no positive left: inverse of an empty map scores 0 too
    thin = _square(40, 18, 22)
    assert f1_trufor(np.zeros((40, 40)), thin) == 0.0


def test_mean_f1_ignores_nan():
    assert mean_f1([1.0, math.nan, 0.0]) == 0.5
    assert math.isnan(mean_f1([]))
