"""dptrain.config: presets, YAML and flag precedence, errors."""

from __future__ import annotations

import pytest

from dptrain.config import PRESETS, TrainConfig, config_from_args

REQUIRED = ["--data", "d", "--output-dir", "o"]


def test_paper_preset_is_the_paper():
    c = config_from_args(REQUIRED)
    assert (c.batch_size, c.queue_size, c.top_k, c.out_channels) == (512, 65536, 512, 64)
    assert (c.temperature, c.momentum, c.lr, c.weight_decay, c.max_grad_norm) == (
        0.07,
        0.999,
        1e-3,
        1e-4,
        10.0,
    )
    assert (c.depth, c.width, c.pool_per_step, c.augment, c.pairing) == (
        17,
        64,
        128,
        "geometric",
        "paired",
    )
    assert c.in_batch_negatives is False


def test_precedence_preset_yaml_flags(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("top_k: 64\nbatch_size: 4\nexclude_generators: [flux]\n")
    c = config_from_args(
        REQUIRED + ["--preset", "tiny", "--config", str(yaml_file), "--batch-size", "2"]
    )
    assert c.queue_size == PRESETS["tiny"]["queue_size"]
    assert c.top_k == 64
    assert c.batch_size == 2
    assert c.exclude_generators == ("flux",)
    c = config_from_args(REQUIRED + ["--exclude-generators", "flux,sdxl", "--in-batch-negatives"])
    assert c.exclude_generators == ("flux", "sdxl") and c.in_batch_negatives


def test_unknown_yaml_key_names_the_file(tmp_path, capsys):
    yaml_file = tmp_path / "bad.yaml"
    yaml_file.write_text("topk: 3\n")
    with pytest.raises(ValueError, match="bad.yaml.*topk"):
        TrainConfig.read_file(yaml_file)
    with pytest.raises(SystemExit) as exit_info:
        config_from_args(REQUIRED + ["--config", str(yaml_file)])
    assert exit_info.value.code == 2
    assert "bad.yaml: unknown key(s) ['topk']" in capsys.readouterr().err


def test_invalid_values_are_rejected():
    with pytest.raises(SystemExit):
        config_from_args(["--data", "d"])  # no --output-dir
    with pytest.raises(SystemExit):
        config_from_args(REQUIRED + ["--head", "ternary"])
    with pytest.raises(SystemExit):
        config_from_args(REQUIRED + ["--top-k", "100000"])
    with pytest.raises(ValueError, match="augment"):
        TrainConfig(data="d", output_dir="o", augment="blur")
