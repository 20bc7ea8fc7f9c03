"""Linear probe: the classifier against its objective, the split, the CLI end to end."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict

from dpeval import cli, probe
from dpeval.extractors import load_extractor
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


def _objective_gradient(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: float, C: float):
    """Gradient of 0.5 ||w||^2 + C sum_i [log(1 + e^{z_i}) - y_i z_i], z = x w + b."""
    residual = 1 / (1 + np.exp(-(x @ w + b))) - y
    return w + C * x.T @ residual, C * residual.sum()


@pytest.mark.parametrize("C", [1.0, 0.01])
def test_fit_classifier_minimises_the_l2_logistic_objective(C) -> None:
    x, y = _embeddings(3000, 16)
    clf = probe.fit_classifier(x, y, C=C)
    scaler, logreg = clf[0], clf[-1]
    xs = (x.astype(np.float64) - x.mean(0)) / x.std(0)  # standardised with the fit's own data
    np.testing.assert_allclose(scaler.transform(x), xs, atol=1e-4)
    w, b = logreg.coef_[0].astype(np.float64), float(logreg.intercept_[0])
    grad_w, grad_b = _objective_gradient(xs, y, w, b, C)
    # at the minimum the gradient vanishes (relative to the data term's scale, C * N)
    assert np.abs(grad_w).max() / (C * len(y)) < 1e-3 and abs(grad_b) / (C * len(y)) < 1e-3
    assert set(np.unique(clf.predict(x))) <= {0, 1}


def test_fit_classifier_keeps_a_constant_feature_at_zero() -> None:
    x, y = _embeddings(500, 4)
    x[:, 2] = 7.0
    clf = probe.fit_classifier(x, y)
    assert np.allclose(clf[0].transform(x)[:, 2], 0) and np.isfinite(clf[-1].coef_).all()


def test_fit_classifier_logs_no_convergence(monkeypatch, caplog) -> None:
    monkeypatch.setattr(probe, "MAX_ITER", 1)
    x, y = _embeddings(500, 8)
    probe.fit_classifier(x, y)
    assert "no convergence in 1 iterations" in caplog.text


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
    assert set(out) == {
        "model", "overall", "in_domain", "in_domain_generators", "per_source", "confusion",
        "n_train", "n_test", "fit_seconds", "labels",
    }  # fmt: skip
    assert out["fit_seconds"] > 0
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


def test_cli_checks_the_model_before_its_card(tmp_path, caplog) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# a file\n")
    cases = {
        "docs": "docs: not a DiffusionPrint model folder (no config.json)",
        "missing": "missing: no such model folder",
        "README.md": "README.md: a file, not a DiffusionPrint model folder",
    }
    for name, message in cases.items():
        for extra in ([], ["--in-domain", "sd21"]):
            caplog.clear()
            args = ["probe", "--model", str(tmp_path / name), "--data", str(tmp_path), *extra]
            assert cli.main(args) == 2
            errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            assert errors == [f"{tmp_path / name}: {message.partition(': ')[2]}"], errors


def test_probe_rejects_non_evalset(tmp_path) -> None:
    with pytest.raises(ValueError, match="not a dataset saved by dpgen evalset"):
        probe.load_evalset(tmp_path / "missing")
