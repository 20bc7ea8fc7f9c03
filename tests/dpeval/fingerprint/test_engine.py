"""Training: outputs, the learnt separation, and resume = uninterrupted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dpeval.cli import main
from dpeval.fingerprint.config import FingerprintConfig
from dpeval.fingerprint.detect import detect
from dpeval.fingerprint.engine import epoch_batches, train
from dpeval.fingerprint.model import DeepImageFingerprint

from .conftest import SIZE


def _config(sets, out, **kw) -> FingerprintConfig:
    values = dict(
        real=str(sets["real"]),
        fake=str(sets["fake"]),
        out=str(out),
        size=SIZE,
        batch_size=16,
        epochs=4,
        checkpointing_epochs=2,
    )
    return FingerprintConfig(**{**values, **kw})


def test_epoch_batches_cover_every_image_once_in_near_equal_parts():
    batches = epoch_batches(33, 16, seed=0, epoch=3)
    assert sorted(len(b) for b in batches) == [11, 11, 11]
    assert sorted(np.concatenate(batches).tolist()) == list(range(33))
    assert [b.tolist() for b in batches] == [b.tolist() for b in epoch_batches(33, 16, 0, 3)]


@pytest.mark.slow
def test_training_writes_a_fingerprint_that_separates_the_classes(pattern_sets, tmp_path):
    summary = train(_config(pattern_sets, tmp_path / "fp"))
    out = tmp_path / "fp"
    for name in (
        "config.json",
        "model.safetensors",
        "fingerprint.npy",
        "fingerprint.png",
        "spectrum.png",
        "training.json",
        "metrics.jsonl",
        "training_curves.png",
    ):
        assert (out / name).is_file(), name
    assert (out / "checkpoint-8").is_dir()  # 2 steps per epoch, checkpoints at epochs 2 and 4
    model = DeepImageFingerprint.from_pretrained(out)
    assert (model.size, model.denoiser, model.channels) == (SIZE, "highpass", 3)
    assert model.mu_fake > model.mu_real  # canonical orientation
    assert summary["mu_fake"] == pytest.approx(model.mu_fake)
    assert np.load(out / "fingerprint.npy").shape == (SIZE, SIZE, 3)
    assert json.loads((out / "training.json").read_text())["real"]["count"] == 16


@pytest.mark.slow
def test_resume_gives_the_uninterrupted_fingerprint(pattern_sets, tmp_path):
    train(_config(pattern_sets, tmp_path / "whole"))
    train(_config(pattern_sets, tmp_path / "parts", epochs=2))
    train(_config(pattern_sets, tmp_path / "parts", resume_from_checkpoint="latest"))
    whole = np.load(tmp_path / "whole" / "fingerprint.npy")
    parts = np.load(tmp_path / "parts" / "fingerprint.npy")
    np.testing.assert_array_equal(whole, parts)
    a, b = (json.loads((tmp_path / d / "config.json").read_text()) for d in ("whole", "parts"))
    assert a == b  # mu_real and mu_fake included
    with pytest.raises(Exception, match="was trained with --lr"):
        train(_config(pattern_sets, tmp_path / "parts", lr=1e-3, resume_from_checkpoint="latest"))


@pytest.mark.slow
def test_detect_labels_held_out_images_as_json_lines(pattern_sets, tmp_path, capsys, caplog):
    assert (
        main(
            [
                "fingerprint",
                "--real",
                str(pattern_sets["real"]),
                "--fake",
                str(pattern_sets["fake"]),
                "--out",
                str(tmp_path / "fp"),
                "--size",
                str(SIZE),
                "--epochs",
                "6",
                "--batch-size",
                "16",
            ]
        )
        == 0
    )
    capsys.readouterr()
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tiny / "small.png")
    args = [str(pattern_sets["test_real"]), str(pattern_sets["test_fake"]), str(tiny)]
    assert main(["fingerprint", "--detect", str(tmp_path / "fp"), *args]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == 17 and "smaller than --size 32" in records[-1]["error"]
    labels = [r["label"] for r in records[:16]]
    accuracy = (labels[:8].count("real") + labels[8:].count("generated")) / 16
    assert accuracy >= 0.75, records
    # nothing could be labelled: the error records, then exit 2 with one line
    caplog.clear()
    assert main(["fingerprint", "--detect", str(tmp_path / "fp"), str(tiny)]) == 2
    assert "error" in json.loads(capsys.readouterr().out)
    assert "no input could be read: 1 failed" in caplog.text
    caplog.clear()
    assert main(["fingerprint", "--detect", str(tmp_path / "fp"), str(tmp_path / "no.png")]) == 2
    assert f"{tmp_path / 'no.png'}: no such file or folder" in caplog.text


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["train", "diffusionprint"])
def test_trained_and_backbone_residuals_are_recorded_and_reloaded(pattern_sets, tmp_path, kind):
    if kind == "train":
        settings = {"denoiser": f"train:{pattern_sets['real']}", "denoiser_steps": 2}
    else:
        settings = {"denoiser": "diffusionprint:random:0"}
    train(_config(pattern_sets, tmp_path / "fp", epochs=1, **settings))
    model = DeepImageFingerprint.from_pretrained(tmp_path / "fp")
    if kind == "train":
        assert model.denoiser == "dncnn:denoiser" and model.channels == 3
        assert (tmp_path / "fp" / "denoiser" / "model.safetensors").is_file()
        assert "denoiser_mse" in (tmp_path / "fp" / "metrics.jsonl").read_text()
    else:
        assert model.denoiser == "diffusionprint:random:0" and model.channels == 64
    records = list(detect(tmp_path / "fp", [str(pattern_sets["test_fake"])], device="cpu"))
    assert len(records) == 8 and all(r["label"] in ("real", "generated") for r in records)
