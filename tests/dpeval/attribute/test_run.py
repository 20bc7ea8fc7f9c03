"""`dpeval attribute fit` / `score` end to end on a synthetic evaluation set."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from dpeval import cli
from dpeval.attribute import density, embed, run
from dpeval.attribute.attributor import Attributor
from dpeval.probe import load_evalset

FAST = ["--steps", "150", "--head-batch-size", "64", "--no-progress"]


def _fit(tmp_path, evalset, tiny_model, name="attr", *extra) -> dict:
    out = tmp_path / name
    args = ["attribute", "fit", "--model", str(tiny_model), "--data", str(evalset)]
    assert cli.main([*args, "--known", "sd21,tiny-sdxl", "--out", str(out), *FAST, *extra]) == 0
    return json.loads((out / "report.json").read_text())


def test_fit_then_score_round_trip(tmp_path, evalset, tiny_model, capsys) -> None:
    fitted = _fit(tmp_path, evalset, tiny_model, "attr", "--json")
    printed = json.loads(capsys.readouterr().out)
    assert printed == fitted
    folder = tmp_path / "attr"
    for name in (
        "config.json",
        "model.safetensors",
        "attributor.json",
        "density.safetensors",
        "backbone/config.json",
        "metrics.jsonl",
        "training_curves.png",
        "report.md",
        "patches.csv",
        "images.csv",
        "embedding.png",
        "roc.png",
    ):
        assert (folder / name).is_file(), name
    assert fitted["classes"] == ["real", "sd21", "sdxl"]
    # 6 images per class, 2 held out: 8 test patches per class
    assert fitted["counts"]["known_evaluated"] == 24 and fitted["counts"]["unseen"] == 24
    assert set(fitted["closed_set"]) == {"prototype", "mahalanobis", "linear_probe"}
    assert fitted["closed_set"]["prototype"]["top1"] >= 0.9  # the producers differ plainly
    assert 0.1 <= fitted["bandwidth"] <= 1.0
    for m in fitted["open_set"]["patches"].values():
        assert 0 <= m["auroc"] <= 1 and 0 <= m["eer"] <= 1 and 0 <= m["fpr95"] <= 1

    out = tmp_path / "scored"
    assert (
        cli.main(
            [
                "attribute",
                "score",
                "--attributor",
                str(folder),
                "--data",
                str(evalset),
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    scored = json.loads((out / "report.json").read_text())
    # the same set scored by the saved attributor: the fit's own evaluation, exactly
    assert scored["closed_set"]["prototype"] == fitted["closed_set"]["prototype"]
    assert scored["closed_set"]["mahalanobis"] == fitted["closed_set"]["mahalanobis"]
    assert scored["open_set"] == fitted["open_set"] and scored["unseen"] == ["tiny-flux"]
    with open(out / "patches.csv") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 5 * 6 * 4  # every patch, the latent-reconstructed ones included
    probs = np.array([[float(r[f"p_{c}"]) for c in ("real", "sd21", "sdxl")] for r in table])
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    with open(out / "images.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 5 * 6


def test_known_and_unseen_inputs_share_one_embedding(
    tmp_path, evalset, tiny_model, monkeypatch
) -> None:
    _fit(tmp_path, evalset, tiny_model)
    calls = []
    real_embed = embed.embed

    def spy(embedder, patches, *args, **kwargs):
        calls.append(len(patches))
        return real_embed(embedder, patches, *args, **kwargs)

    monkeypatch.setattr(embed, "embed", spy)
    config = run.ScoreConfig(
        attributor=str(tmp_path / "attr"),
        data=str(evalset),
        out=str(tmp_path / "s"),
        progress=False,
    )
    run.score(config)
    ev = load_evalset(evalset)
    assert calls == [len(ev.patches)]  # one call, every patch: known, unseen and the rest

    # the same pixels as a known (tiny-sd21) and an unseen (held-out tiny-flux) patch
    known = ev.sources.index("tiny-sd21", ev.kinds.index("generated"))
    unseen = ev.sources.index("tiny-flux", ev.kinds.index("generated"))
    assert np.array_equal(ev.patches[known], ev.patches[unseen]) and ev.held_out[unseen]
    attributor = Attributor.load(tmp_path / "attr")
    x = real_embed(attributor.embedder("cpu"), ev.patches)
    assert np.array_equal(x[known], x[unseen])
    scores = attributor.score(x, density.patch_keys(ev.patches))
    assert np.array_equal(scores.z[known], scores.z[unseen])
    assert np.array_equal(scores.probabilities[known], scores.probabilities[unseen])
    for name, s in scores.open.items():
        assert s[known] == s[unseen], name


def test_bad_input_is_one_line_and_exit_2(tmp_path, evalset, tiny_model, caplog) -> None:
    base = ["attribute", "fit", "--data", str(evalset), "--out", str(tmp_path / "a")]
    assert cli.main([*base, "--model", str(tiny_model), "--known", "flux"]) == 2
    assert "--known flux: marked held out" in caplog.text
    assert cli.main(base) == 2 and "--model: required" in caplog.text
    assert cli.main([*base, "--model", str(tiny_model), "--known", "midjourney"]) == 2
    assert not (tmp_path / "a").exists()  # refused before anything was written
    args = ["attribute", "score", "--attributor", str(tmp_path / "none"), "--data", str(evalset)]
    assert cli.main([*args, "--out", str(tmp_path / "b")]) == 2
    assert "not an attributor" in caplog.text


@pytest.mark.slow
def test_latent_features_fit_and_score(tmp_path, evalset) -> None:
    out = tmp_path / "latent"
    args = [
        "attribute",
        "fit",
        "--features",
        "latent:tiny-sd21",
        "--timesteps",
        "0,200",
        "--data",
        str(evalset),
        "--out",
        str(out),
        *FAST,
    ]
    assert cli.main(args) == 0
    fitted = json.loads((out / "report.json").read_text())
    assert not (out / "backbone").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["num_steps"] == 2 and config["in_dim"] == 4 * 2 * 2  # 16 px -> 2x2 latent
    again = tmp_path / "again"
    assert (
        cli.main(
            [
                "attribute",
                "score",
                "--attributor",
                str(out),
                "--data",
                str(evalset),
                "--out",
                str(again),
                "--no-progress",
            ]
        )
        == 0
    )
    assert json.loads((again / "report.json").read_text())["open_set"] == fitted["open_set"]


def test_lse_head_gmm_scorer_and_projector_reload_identically(
    tmp_path, evalset, tiny_model
) -> None:
    fitted = _fit(
        tmp_path,
        evalset,
        tiny_model,
        "lse",
        "--aggregation",
        "lse",
        "--closed-scorer",
        "gmm",
        "--features",
        "projector",
    )
    assert set(fitted["closed_set"]) == {"prototype", "gmm", "linear_probe"}
    attributor = Attributor.load(tmp_path / "lse")
    assert attributor.head.aggregation == "lse"
    ev = load_evalset(evalset)
    x = embed.embed(attributor.embedder("cpu"), ev.patches)
    assert x.shape == (len(ev.patches), 1, 8)  # the projector's embed_dim
    scores = attributor.score(x, density.patch_keys(ev.patches))
    with open(tmp_path / "lse" / "patches.csv") as fh:
        saved = np.array([float(r["score_kde"]) for r in csv.DictReader(fh)])
    assert np.allclose(scores.open["kde"], saved, rtol=1e-5)  # CSV keeps 6 significant digits


def test_densities_fit_on_a_subset_score_the_rest_out_of_sample(
    tmp_path, evalset, tiny_model
) -> None:
    fitted = _fit(tmp_path, evalset, tiny_model, "sub", "--density-max-patches", "40")
    attributor = Attributor.load(tmp_path / "sub")
    assert len(attributor.fit["z"]) == 40  # of 72 known patches
    ev = load_evalset(evalset)
    x = embed.embed(attributor.embedder("cpu"), ev.patches)
    scores = attributor.score(x, density.patch_keys(ev.patches))
    known = np.array(
        [k != "latent-reconstructed" and not h for k, h in zip(ev.kinds, ev.held_out, strict=True)]
    )
    assert scores.in_fit.sum() == 40 and (scores.in_fit <= known).all()
    assert np.isfinite(scores.open["kde"]).all()
    assert fitted["counts"]["known_evaluated"] == 24  # the closed-set split is unchanged


@pytest.mark.slow  # two fits
def test_fit_is_reproducible(tmp_path, evalset, tiny_model) -> None:
    first = _fit(tmp_path, evalset, tiny_model, "one")
    second = _fit(tmp_path, evalset, tiny_model, "two")
    for report in (first, second):
        report.pop("attributor")
    assert first == second
