"""Every convention of `dpeval.metrics` on crafted maps, against values computed by hand.

The image is 40 x 40 (1600 px) with a 20 x 20 square mask at [10, 30) (400 positives, 1200
negatives) unless said otherwise. TruFor's counted pixels: positives = the mask eroded by a
15-px minimum filter (7 px per side) = [17, 23)^2 = 36 px; negatives = outside the mask dilated
by an 11-px maximum filter (5 px per side) = 1600 - 30^2 = 700 px.
"""

import math

import numpy as np
import pytest

from dpeval.metrics import (
    f1_tgif,
    mean_over_images,
    metric_columns,
    pixel_metrics,
    sweep,
    trufor_regions,
)

NAN = math.nan


def imdl(tp: float, fp: float, fn: float) -> float:
    """IMDL-BenCo's Cal_F1, transcribed."""
    p = tp / (tp + fp + 1e-8)
    r = tp / (tp + fn + 1e-8)
    return 2 * p * r / (p + r + 1e-8)


def square(lo: int = 10, hi: int = 30, size: int = 40) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    m[lo:hi, lo:hi] = 1
    return m


MASK = square()
HALF = np.zeros((40, 40))
HALF[10:30, 20:40] = 1  # the mask shifted right by half its width: 200 px overlap
AT_HALF = MASK * 0.5  # exactly 0.5 inside the mask
SMALL = square(15, 25)  # 10 x 10: nothing survives the 15-px erosion

# (name, map, mask, {column: hand-computed value})
CASES = [
    (
        "perfect map",
        MASK.astype(float),
        MASK,
        {
            "tgif@0.5": 1.0, "trufor@0.5": 1.0, "trufor_tgif@0.5": 1.0,
            "imdl_origin@0.5": imdl(400, 0, 0), "imdl_reverse@0.5": 0.0,
            "imdl_double@0.5": imdl(400, 0, 0), "iou@0.5": 1.0, "mcc@0.5": 1.0, "auc": 1.0,
            # the inverse's best cut predicts everything: P' = 400/1600, R' = 1
            "imdl_reverse@best": imdl(400, 1200, 0), "tgif@best": 1.0, "trufor@best": 1.0,
        },
    ),
    (
        "empty prediction",
        np.zeros((40, 40)),
        MASK,
        {
            "tgif@0.5": 0.0,
            # TruFor: F1(map) = 0; the inverse predicts all 736 counted px: 2*36 / (72 + 700)
            "trufor@0.5": 72 / 772, "trufor_tgif@0.5": 72 / 772,
            "imdl_origin@0.5": 0.0, "imdl_reverse@0.5": imdl(400, 1200, 0),
            "imdl_double@0.5": imdl(400, 1200, 0), "iou@0.5": 0.0, "mcc@0.5": 0.0, "auc": 0.5,
            "tgif@best": 800 / 2000, "trufor@best": 72 / 772,  # best: predict everything
        },
    ),
    (
        "empty mask, empty prediction",
        np.zeros((40, 40)),
        np.zeros((40, 40), np.uint8),
        {
            "tgif@0.5": 1.0,
            # every counted px is a negative predicted negative: one class; TGIF's copy: 0
            "trufor@0.5": NAN, "trufor_tgif@0.5": 0.0,
            "imdl_origin@0.5": 0.0, "imdl_reverse@0.5": 0.0, "imdl_double@0.5": 0.0,
            "iou@0.5": 1.0, "mcc@0.5": 0.0, "auc": NAN,
            "tgif@best": 1.0, "trufor@best": 0.0, "trufor_tgif@best": 0.0, "iou@best": 1.0,
        },
    ),
    (
        "inverted map",
        1.0 - MASK,
        MASK,
        {
            "tgif@0.5": 0.0,
            "trufor@0.5": 1.0, "trufor_tgif@0.5": 1.0,  # the inverse is perfect on counted px
            "imdl_origin@0.5": 0.0, "imdl_reverse@0.5": imdl(400, 0, 0),
            "imdl_double@0.5": imdl(400, 0, 0), "iou@0.5": 0.0, "mcc@0.5": -1.0, "auc": 0.0,
            "tgif@best": 0.4, "iou@best": 0.25, "mcc@best": 0.0, "trufor@best": 1.0,
        },
    ),
    (
        "half overlap",
        HALF,
        MASK,
        {
            "tgif@0.5": 400 / 800,  # TP 200, FP 200, FN 200
            # counted: TP 18, FN 18 (positives' columns 20..22 vs 17..19); FP 100 (columns
            # 35..39 of rows 10..29); TN 600. max(36/154, 36/654)
            "trufor@0.5": 36 / 154, "trufor_tgif@0.5": 36 / 154,
            "imdl_origin@0.5": imdl(200, 200, 200),
            "imdl_reverse@0.5": imdl(200, 1000, 200),  # TP' = FN, FP' = TN, FN' = TP
            "imdl_double@0.5": imdl(200, 200, 200),
            "iou@0.5": 1 / 3,
            "mcc@0.5": (200 * 1000 - 200 * 200) / (400 * 1200),
            "auc": 2 / 3,  # ROC (0, 0) -> (1/6, 1/2) -> (1, 1)
            "tgif@best": 0.5,
        },
    ),
    (
        "map exactly 0.5 inside the mask",
        AT_HALF,
        MASK,
        {
            # strict > 0.5: nothing predicted, as the empty prediction
            "tgif@0.5": 0.0, "trufor@0.5": 72 / 772, "imdl_origin@0.5": 0.0,
            "imdl_reverse@0.5": imdl(400, 1200, 0), "iou@0.5": 0.0,
            # any threshold below 0.5 is perfect
            "tgif@best": 1.0, "trufor@best": 1.0, "imdl_origin@best": imdl(400, 0, 0),
            "iou@best": 1.0, "mcc@best": 1.0, "auc": 1.0,
        },
    ),
    (
        "mask smaller than the 15-px erosion, perfect map",
        SMALL.astype(float),
        SMALL,
        {
            "tgif@0.5": 1.0,
            # counted: the 1200 px outside the dilated mask, all negative, all predicted
            # negative: one class -> NaN in TruFor, 0 in TGIF's copy
            "trufor@0.5": NAN, "trufor_tgif@0.5": 0.0, "trufor@best": 0.0,
            "imdl_origin@0.5": imdl(100, 0, 0), "iou@0.5": 1.0, "mcc@0.5": 1.0,
        },
    ),
    (
        "mask smaller than the 15-px erosion, all-ones map",
        np.ones((40, 40)),
        SMALL,
        {
            "tgif@0.5": 200 / 1700,  # TP 100, FP 1500
            # counted negatives predicted positive: two classes, F1 0 in both variants
            "trufor@0.5": 0.0, "trufor_tgif@0.5": 0.0,
        },
    ),
    (
        "all-ones map",
        np.ones((40, 40)),
        MASK,
        {
            "tgif@0.5": 800 / 2000,
            "trufor@0.5": 72 / 772, "trufor_tgif@0.5": 72 / 772,  # TP 36, FP 700
            "imdl_origin@0.5": imdl(400, 1200, 0), "imdl_reverse@0.5": 0.0,
            "imdl_double@0.5": imdl(400, 1200, 0), "iou@0.5": 0.25, "mcc@0.5": 0.0, "auc": 0.5,
        },
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "prob", "mask", "expected"), CASES, ids=[c[0] for c in CASES])
def test_crafted_case(name, prob, mask, expected):
    got = pixel_metrics(prob, mask)
    assert list(got) == metric_columns()
    for column, value in expected.items():
        if math.isnan(value):
            assert math.isnan(got[column]), (name, column, got[column])
        else:
            assert got[column] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, column)


def test_trufor_regions_of_the_square():
    negatives, positives = trufor_regions(MASK.astype(bool))
    assert positives.sum() == 36 and negatives.sum() == 700
    assert positives[17:23, 17:23].all()


def test_tgif_hand_computed_small():
    mask = np.zeros((4, 4), np.uint8)
    mask[0, :] = 1  # 4 positives
    prob = np.zeros((4, 4))
    prob[0, :2] = 0.9  # TP 2
    prob[1, 0] = 0.7  # FP 1
    prob[0, 2] = 0.5  # exactly 0.5 is NOT positive (strict >): FN 2
    assert pixel_metrics(prob, mask)["tgif@0.5"] == pytest.approx(4 / 7)


def test_trufor_border_band():
    # 60x60, 30x30 mask at [15, 45): positives [22, 38)^2 = 256, negatives outside [10, 50)^2 =
    # 2000. Predicting the band around the mask only: F1(map) has no TP -> 0; the inverse is 1
    # inside the mask and outside the band: TP' 256, FP' 2000, FN' 0 -> 512 / 2512.
    mask = square(15, 45, 60)
    band = np.zeros((60, 60))
    band[10:50, 10:50] = 1
    band[15:45, 15:45] = 0
    assert pixel_metrics(band, mask)["trufor@0.5"] == pytest.approx(512 / 2512)


def test_best_threshold_sweep_matches_brute_force():
    rng = np.random.default_rng(0)
    prob = np.round(rng.random((30, 30)), 2)  # ties on purpose
    mask = rng.random((30, 30)) < 0.3
    swept = f1_tgif(sweep(prob, mask))
    brute = []
    for t in [-np.inf, *np.unique(prob.astype(np.float32))]:
        pred = prob.astype(np.float32) > t
        tp, fp, fn = (pred & mask).sum(), (pred & ~mask).sum(), (~pred & mask).sum()
        brute.append(1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))
    np.testing.assert_allclose(swept, brute)
    assert pixel_metrics(prob, mask)["tgif@best"] == pytest.approx(max(brute))


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="0/1"):
        pixel_metrics(np.zeros((4, 4)), np.full((4, 4), 255, np.uint8))
    with pytest.raises(ValueError, match="shape"):
        pixel_metrics(np.zeros((4, 4)), np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pixel_metrics(np.full((4, 4), 2.0), np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        pixel_metrics(np.full((4, 4), np.nan), np.zeros((4, 4), np.uint8))


def test_mean_over_images_skips_nan_and_counts():
    assert mean_over_images([1.0, NAN, 0.0]) == (0.5, 2)
    mean, n = mean_over_images([])
    assert math.isnan(mean) and n == 0


def test_trufor_zero_denominators_in_tgifs_copy():
    empty = np.zeros((40, 40), np.uint8)
    # an all-ones map on an empty mask: two classes counted, F1 0 in both variants
    got = pixel_metrics(np.ones((40, 40)), empty)
    assert got["trufor_tgif@0.5"] == 0.0 and got["trufor@0.5"] == 0.0 and got["tgif@0.5"] == 0.0
    # a mask thinner than the erosion with an empty map: one class counted
    got = pixel_metrics(np.zeros((40, 40)), square(18, 22))
    assert got["trufor_tgif@0.5"] == 0.0 and math.isnan(got["trufor@0.5"])
