"""Density scorers: closed forms, scikit-learn equivalence and the out-of-fold rule."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.neighbors import KernelDensity

from dpeval.attribute import density


def _blobs(seed: int = 0):
    rng = np.random.default_rng(seed)
    z = np.r_[rng.normal(0, 1, (40, 3)), rng.normal(4, 0.5, (40, 3))]
    y = np.r_[np.zeros(40, int), np.ones(40, int)]
    groups = [f"img{i // 4}" for i in range(80)]  # 4 patches per image, 20 images
    return z, y, groups


def test_mahalanobis_closed_form_and_calibration() -> None:
    z, y, _ = _blobs()
    scorer = density.ClassDensity("mahalanobis", 2).fit(z, y)
    q = np.array([[0.5, -1.0, 2.0]])
    mu, var = z[y == 1].mean(0), z[y == 1].var(0)
    raw = -(((q - mu) ** 2) / var).sum()
    assert scorer.scores(q)[0, 1] == pytest.approx((raw - scorer.center[1]) / scorer.scale[1])
    own = scorer.scores(z)[np.arange(80), y]  # calibrated: each class's own scores are z-scores
    for c in (0, 1):
        assert own[y == c].mean() == pytest.approx(0, abs=1e-9)
        assert own[y == c].std() == pytest.approx(1)


@pytest.mark.parametrize("kind", ["gmm", "kde"])
def test_other_scorers_attribute_the_blobs(kind: str) -> None:
    z, y, _ = _blobs()
    scorer = density.ClassDensity(kind, 2, gmm_components=2, bandwidth=0.5).fit(z, y)
    assert (scorer.scores(z).argmax(1) == y).mean() == 1.0
    again = density.ClassDensity(kind, 2, gmm_components=2, bandwidth=0.5).fit(z, y)
    assert np.array_equal(
        scorer.scores(z), again.scores(z)
    )  # deterministic refit (attributor load)


def test_bandwidth_is_grid_search_with_grouped_folds() -> None:
    z, _, groups = _blobs()
    chosen = density.select_bandwidth(z, groups)
    ref = GridSearchCV(KernelDensity(), {"bandwidth": list(density.BANDWIDTHS)}, cv=GroupKFold(5))
    assert chosen == ref.fit(z, groups=groups).best_params_["bandwidth"]
    folds = density.fold_ids(groups)
    for g in set(groups):  # an image's patches share a fold
        assert len(set(folds[[i for i, h in enumerate(groups) if h == g]])) == 1
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]


def test_out_of_fold_scores_fit_rows_without_their_fold() -> None:
    z, y, groups = _blobs()
    folds = density.fold_ids(groups)
    kde = density.OutOfFold(density.kde_fitter(0.5), z, y, folds)
    query = np.r_[z[:3], [[10.0, 10, 10]]]
    fold = np.r_[folds[:3], -1]
    got = kde(query, fold)
    for i in range(3):
        ref = KernelDensity(bandwidth=0.5).fit(z[folds != folds[i]]).score_samples(z[i : i + 1])
        assert got[i] == pytest.approx(ref[0])
    full = KernelDensity(bandwidth=0.5).fit(z).score_samples(query[3:])
    assert got[3] == pytest.approx(full[0])
    # in-sample scores would be higher: out of fold removes the point's own kernel
    assert (kde(z[:3], np.full(3, -1)) > got[:3]).all()


def test_mahalanobis_baseline_and_energy() -> None:
    z, y, _ = _blobs()
    score = density.mahalanobis_fitter(z, y)
    near, far = score(np.array([[0.0, 0, 0]])), score(np.array([[20.0, -20, 20]]))
    assert near > far
    logits = np.array([[0.0, 0.0], [10.0, -5.0]])
    assert density.energy(logits) == pytest.approx([np.log(2), 10 + np.log1p(np.exp(-15))])


def test_patch_keys_depend_on_pixels_only() -> None:
    patches = np.zeros((3, 3, 4, 4), np.uint8)
    patches[2, 0, 0, 0] = 1
    keys = density.patch_keys(patches)
    assert keys[0] == keys[1] != keys[2] and len(keys[0]) == 20
