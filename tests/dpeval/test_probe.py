"""Linear probe: the logistic regression against scikit-learn, the split, the CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict

from dpeval import cli, probe
from dpeval.extractors import load_extractor
from dpeval.logistic import LogisticRegression, Standardizer
from dpgen.schema import EVAL, eval_features
from dptrain.model import DiffusionPrint


def _embeddings(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correlated low-rank embeddings with a noisy linear label, like GAP features."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 6))
    x = latent @ rng.normal(size=(6, d)) + 0.3 * rng.normal(size=(n, d)) + 2.0
    logit = latent @ rng.normal(size=6)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return x.astype(np.float32), y


def test_logistic_matches_sklearn() -> None:
    sklearn = pytest.importorskip("sklearn.linear_model")
    x, y = _embeddings(6000, 32)
    xtr, ytr, xte, yte = x[:4200], y[:4200], x[4200:], y[4200:]
    scaler = Standardizer().fit(xtr)
    ours = LogisticRegression().fit(scaler.transform(xtr), ytr)
    ref = sklearn.LogisticRegression(max_iter=1000).fit(scaler.transform(xtr), ytr)
    acc_ours = (ours.predict(scaler.transform(xte)) == yte).mean()
    acc_ref = (ref.predict(scaler.transform(xte)) == yte).mean()
    assert abs(acc_ours - acc_ref) <= 0.005

    # Same objective (scikit-learn's C-weighted sum of log-losses + 0.5 ||w||^2): ours is at
    # least as low, and the solutions agree to the solvers' tolerances.
    def objective(w: np.ndarray, b: float) -> float:
        z = scaler.transform(xtr).astype(np.float64) @ w + b
        return float(np.sum(np.logaddexp(0, z) - ytr * z) + 0.5 * w @ w)

    assert (
        objective(ours.coef_, ours.intercept_) <= objective(ref.coef_[0], ref.intercept_[0]) + 1e-6
    )
    np.testing.assert_allclose(ours.coef_, ref.coef_[0], atol=0.05)


def test_logistic_rejects_one_class() -> None:
    with pytest.raises(ValueError, match="both 0 and 1"):
        LogisticRegression().fit(np.zeros((4, 2), np.float32), np.zeros(4, np.int64))


def test_stratified_split_holds_out_each_stratum() -> None:
    strata = ["a"] * 10 + ["b"] * 20 + ["c"] * 2
    test = probe.stratified_split(strata, 0.3, seed=1)
    arr = np.asarray(strata)
    assert [int(test[arr == s].sum()) for s in "abc"] == [3, 6, 1]
    assert np.array_equal(test, probe.stratified_split(strata, 0.3, seed=1))


def test_in_domain_mask_matches_names_labels_and_pristine() -> None:
    mask = probe.in_domain_mask(
        ["tiny-sd21", "tiny-flux", "real", "midjourney", "sd21"],
        ["sd21", "flux", "real", "midjourney", "sd21"],
        ["generated", "latent-reconstructed", "pristine", "generated", "generated"],
        ["sd21"],
    )
    assert mask.tolist() == [True, False, True, False, True]


def _evalset(path, n_per_source: int = 24, patch: int = 16) -> None:
    """Real patches are smooth, generated ones noisy: linearly visible in GAP features."""
    rng = np.random.default_rng(0)
    rows = {k: [] for k in eval_features(patch)}
    for kind, source, label in [
        ("pristine", "real", 0),
        ("latent-reconstructed", "tiny-sd21", 0),
        ("generated", "tiny-sd21", 1),
        ("generated", "tiny-flux", 1),
    ]:
        for i in range(n_per_source):
            noise = 20 if label else 3  # generated patches carry strong pixel noise
            base = rng.normal(120, 10, size=(3, 1, 1)) + rng.normal(0, noise, (3, patch, patch))
            rows["patch_id"].append(f"{kind}/{source}/{i}")
            rows["image_id"].append(f"{source}/{i // 4}")
            rows["label"].append(label)
            rows["kind"].append(kind)
            rows["source"].append(source)
            rows["source_label"].append(
                {"tiny-sd21": "sd21", "tiny-flux": "flux"}.get(source, source)
            )
            rows["held_out"].append(False)
            rows["box"].append([0, 0, patch, patch])
            rows["patch"].append(np.clip(base, 0, 255).astype(np.uint8))
    ds = Dataset.from_dict(rows, features=eval_features(patch))
    DatasetDict({EVAL: ds}).save_to_disk(str(path))


@pytest.fixture
def tiny_model(tmp_path):
    torch.manual_seed(0)
    model = DiffusionPrint(out_channels=8, width=8, depth=3, embed_dim=8, proj_hidden=8)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    (folder / "README.md").write_text("---\ntraining_generators: [sd21]\n---\n\n# Model\n")
    return folder


def test_run_probe_reports_and_keeps_weights(tmp_path, tiny_model) -> None:
    _evalset(tmp_path / "eval")
    extractor = load_extractor(str(tiny_model))
    before = extractor.fingerprint()
    config = probe.ProbeConfig(
        model=str(tiny_model), data=str(tmp_path / "eval"), in_domain=("sd21",), progress=False
    )
    result = probe.run_probe(extractor, config)
    assert extractor.fingerprint() == before
    assert result.n_train + result.n_test == 96 and result.n_test == 28
    assert 0 <= result.overall <= 1 and 0 <= result.in_domain <= 1
    assert set(result.per_source) == {
        "pristine/real",
        "latent-reconstructed/tiny-sd21",
        "generated/tiny-sd21",
        "generated/tiny-flux",
    }
    assert sum(map(sum, result.confusion)) == result.n_test
    assert result.overall > 0.8  # the noise level is linearly visible even to random features


def test_cli_json_and_update_card(tmp_path, tiny_model, capsys) -> None:
    _evalset(tmp_path / "eval")
    args = ["probe", "--model", str(tiny_model), "--data", str(tmp_path / "eval"), "--json"]
    assert cli.main([*args, "--update-card"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"overall", "in_domain", "per_source", "confusion"} <= set(out)
    assert out["in_domain_generators"] == ["sd21"]
    for value in [out["overall"], out["in_domain"], *out["per_source"].values()]:
        assert 0 <= value <= 1
    assert cli.main([*args, "--update-card"]) == 0  # replaces, never duplicates
    card = (tiny_model / "README.md").read_text()
    assert card.count(probe.CARD_SECTION) == 1 and "| overall |" in card


def test_cli_requires_in_domain_without_card_key(tmp_path, tiny_model, caplog) -> None:
    _evalset(tmp_path / "eval")
    (tiny_model / "README.md").write_text("# no metadata\n")
    assert cli.main(["probe", "--model", str(tiny_model), "--data", str(tmp_path / "eval")]) == 2
    assert "--in-domain" in caplog.text and str(tiny_model) in caplog.text


def test_probe_rejects_non_evalset(tmp_path) -> None:
    with pytest.raises(ValueError, match="not a dataset saved by dpgen evalset"):
        probe.load_evalset(tmp_path / "missing")
