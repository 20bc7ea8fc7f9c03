"""``dpeval fingerprint`` and ``dpeval lineage`` options: no flag is silently ignored."""

from __future__ import annotations

import pytest

from dpeval.cli import main
from dpeval.fingerprint.config import FingerprintConfig
from dpgen.options import OptionError


def test_training_flags_are_refused_with_detect():
    with pytest.raises(OptionError, match="--epochs: a training setting"):
        FingerprintConfig(detect="fp", images=["x"], epochs=3)
    with pytest.raises(OptionError, match="--real: a training setting"):
        FingerprintConfig(detect="fp", images=["x"], real="r")
    FingerprintConfig(detect="fp", images=["x"], batch_size=8, device="cpu")  # shared settings


def test_images_need_detect_and_denoiser_steps_need_train():
    with pytest.raises(OptionError, match="only read with --detect"):
        FingerprintConfig(real="r", fake="f", out="o", images=["x"])
    with pytest.raises(OptionError, match="--denoiser-steps: only read with --denoiser train"):
        FingerprintConfig(denoiser_steps=5)
    FingerprintConfig(denoiser="train:real", denoiser_steps=5)


def test_bad_values_are_refused():
    with pytest.raises(OptionError, match="multiple of 16 and >= 32"):
        FingerprintConfig(size=40)
    with pytest.raises(OptionError, match="denoiser 'median'"):
        FingerprintConfig(denoiser="median")


def test_command_line_errors_are_one_line_and_exit_2(tmp_path, caplog, capsys):
    assert main(["fingerprint", "--out", str(tmp_path / "o")]) == 2
    assert "--real, --fake: required to train" in caplog.text
    with pytest.raises(SystemExit) as stop:
        main(["fingerprint", "--detect", str(tmp_path), "--epochs", "3", "x.png"])
    assert stop.value.code == 2
    assert "--epochs: a training setting" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["fingerprint", "--denoiser", "median"])
    assert stop.value.code == 2 and "expected highpass" in capsys.readouterr().err
    assert main(["fingerprint", "--detect", str(tmp_path), "x.png"]) == 2
    assert "not a fingerprint folder" in caplog.text
    assert main(["lineage", "--fingerprints", "a", "--real", "r", "--out", "o"]) == 2
    assert "--images: give at least one NAME=DIR" in caplog.text
