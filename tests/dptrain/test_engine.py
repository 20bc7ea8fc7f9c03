"""dptrain.engine end to end on CPU: the tiny CLI run, ablation flags, resume, 2 processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import load_from_disk
from huggingface_hub import ModelCard
from PIL import Image
from safetensors.torch import load_file

from dptrain import card
from dptrain.__main__ import main
from dptrain.engine import NonFiniteLossError
from dptrain.model import DiffusionPrint
from tests.dptrain.conftest import PATCH

FAST = ["--preset", "tiny", "--max-steps", "2", "--checkpointing-steps", "0", "--batch-size", "4"]


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def launch(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def tiny_build_generators(build) -> list[str]:
    return load_from_disk(str(build))["pairs"].features["generator"].names


def test_tiny_cli_run_writes_a_loadable_model(tiny_build, tmp_path):
    out = tmp_path / "out"
    proc = launch(
        "--num_processes", "1", "-m", "dptrain", "--preset", "tiny",
        "--data", str(tiny_build), "--output-dir", str(out), "--max-steps", "20",
    )  # fmt: skip
    assert "1 process(es)" in proc.stderr
    for name in card.MODEL_FILES:
        assert (out / name).is_file()
    model = DiffusionPrint.from_pretrained(out).eval()
    x = torch.randint(0, 256, (2, 3, 48, 40), dtype=torch.uint8)
    assert model.extract(x).shape == (2, 8, 48, 40)
    logged = [r for r in records(out) if "loss" in r]
    assert [r["step"] for r in logged] == list(range(1, 21))
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in logged)
    text = (out / "README.md").read_text()
    assert "anchor_rows" in text and "infonce" in text and "library_name: diffusionprint" in text
    # the generators it was trained on, for dpeval's in-domain accuracy
    trained = ModelCard.load(out / "README.md").data.to_dict()["training_generators"]
    assert trained == [n for n in tiny_build_generators(tiny_build) if n != "real"]
    # --checkpoints-total-limit 2 of the tiny preset, a checkpoint every 10 steps
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-20"]
    # the training curves, drawn from metrics.jsonl: a real PNG with content
    with Image.open(out / "training_curves.png") as png:
        assert png.format == "PNG" and png.size[0] > 400
        assert len(png.convert("L").getcolors(2**16)) > 10


@pytest.mark.parametrize(
    "flags",
    [
        ["--pairing", "augment"],
        ["--out-channels", "1", "--head", "none"],
        ["--out-channels", "64", "--top-k", "8", "--head", "binary"],
        ["--augment", "none", "--in-batch-negatives"],
        ["--augment", "jpeg"],
        ["--augment", "hp", "--exclude-generators", "flux"],
    ],
    ids=["moco-pairing", "c1-no-head", "c64-topk8-binary", "no-aug-in-batch", "jpeg", "hp-dagger"],
)
def test_ablation_flags_train(tiny_build, tmp_path, flags):
    main(FAST + ["--data", str(tiny_build), "--output-dir", str(tmp_path), *flags])
    config = json.loads((tmp_path / "config.json").read_text())
    model = DiffusionPrint.from_pretrained(tmp_path)
    assert model.extract(torch.zeros(1, 3, PATCH, PATCH)).shape[1] == config["out_channels"]
    run = records(tmp_path)[0]["config"]
    for flag, value in zip(flags, flags[1:] + [None], strict=True):
        if flag.startswith("--") and value is not None and not value.startswith("--"):
            assert str(run[flag[2:].replace("-", "_")]).strip("[]'") == value


def test_step_lr_schedule_counts_epochs(tiny_build, tmp_path):
    # batch 16 on 72 anchors: 4 steps per epoch; StepLR x0.1 every epoch
    main(FAST + ["--batch-size", "16", "--max-steps", "6", "--lr-step-epochs", "1"]
         + ["--data", str(tiny_build), "--output-dir", str(tmp_path)])  # fmt: skip
    lrs = [r["lr"] for r in records(tmp_path) if "lr" in r]
    assert lrs == pytest.approx([1e-3] * 4 + [1e-4] * 2)


def test_bf16_mixed_precision(tiny_build, tmp_path):
    proc = launch(
        "--num_processes", "1", "--mixed_precision", "bf16", "-m", "dptrain", *FAST,
        "--data", str(tiny_build), "--output-dir", str(tmp_path),
    )  # fmt: skip
    assert "mixed precision bf16" in proc.stderr
    assert torch.isfinite(torch.tensor(records(tmp_path)[-2]["loss"]))


def test_non_finite_loss_stops_with_step_and_ids(tiny_build, tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"step \d+.*real/|step \d+.*generated/"):
        main(
            FAST
            + [
                "--max-steps",
                "6",
                "--data",
                str(tiny_build),
                "--output-dir",
                str(tmp_path),
                "--lr",
                "inf",
            ]
        )
    dumped = list(tmp_path.glob("nonfinite-step*-rank0.json"))
    assert len(dumped) == 1 and len(json.loads(dumped[0].read_text())["anchor_patch_ids"]) == 4
    assert not (tmp_path / "model.safetensors").exists()


def test_push_to_hub_uploads_only_the_model(tiny_build, tmp_path, monkeypatch):
    calls = []

    class RecordingApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create", repo_id))
            return f"https://hub/{repo_id}"

        def upload_folder(self, **kwargs):
            calls.append(("upload", kwargs["repo_id"], sorted(kwargs["allow_patterns"])))
            assert {p.name for p in Path(kwargs["folder_path"]).iterdir()} >= set(card.MODEL_FILES)

    monkeypatch.setattr(card, "HfApi", RecordingApi)
    main(
        FAST
        + [
            "--data",
            str(tiny_build),
            "--output-dir",
            str(tmp_path),
            "--push-to-hub",
            "--hub-model-id",
            "me/dp",
        ]
    )
    assert calls == [("create", "me/dp"), ("upload", "me/dp", sorted(card.MODEL_FILES))]


def test_new_run_over_earlier_checkpoints_is_refused(tiny_build, tmp_path, caplog):
    out = tmp_path / "run"
    args = [*FAST, "--data", str(tiny_build), "--output-dir", str(out)]
    main([*args, "--checkpointing-steps", "2"])
    before = (out / "metrics.jsonl").read_text()
    assert main(args) == 2  # no --resume-from-checkpoint: the earlier run would be overwritten
    assert "checkpoint-2 of an earlier run" in caplog.text
    assert (out / "metrics.jsonl").read_text() == before  # refused before any step


def test_resume_with_other_settings_is_refused(tiny_build, tmp_path, caplog):
    out = tmp_path / "run"
    args = [*FAST, "--data", str(tiny_build), "--output-dir", str(out)]
    main([*args, "--checkpointing-steps", "2"])
    resume = [*args, "--resume-from-checkpoint", "latest"]
    assert main([*resume, "--lr", "0.5"]) == 2
    assert "saved with --lr 0.001, not 0.5" in caplog.text
    # the run's length may change: 2 steps more from checkpoint-2
    assert main([*resume, "--max-steps", "4"]) == 0
    assert records(out)[-1]["step"] == 4


def test_resume_from_a_missing_checkpoint_says_so(tiny_build, tmp_path, caplog):
    missing = tmp_path / "run" / "checkpoint-9"
    args = [*FAST, "--data", str(tiny_build), "--output-dir", str(tmp_path / "run")]
    assert main([*args, "--resume-from-checkpoint", str(missing)]) == 2
    assert f"{missing}: no such checkpoint folder" in caplog.text


@pytest.mark.slow
def test_resume_gives_the_same_weights(tiny_build, tmp_path):
    common = ["--preset", "tiny", "--data", str(tiny_build), "--checkpointing-steps", "5"]
    common += ["--seed", "3", "--batch-size", "4", "--queue-size", "64", "--top-k", "16"]
    main(common + ["--output-dir", str(tmp_path / "straight"), "--max-steps", "10"])
    split = tmp_path / "split"
    # 'latest' with no checkpoint yet starts a new run
    main(
        common
        + ["--output-dir", str(split), "--max-steps", "5", "--resume-from-checkpoint", "latest"]
    )
    # a kill during a later save_state leaves an incomplete checkpoint: 'latest' passes it over
    (split / "checkpoint-8").mkdir()
    (split / "checkpoint-8" / "optimizer.bin").write_bytes(b"half")
    (split / ".checkpoint-9.tmp").mkdir()
    main(
        common
        + ["--output-dir", str(split), "--max-steps", "10", "--resume-from-checkpoint", "latest"]
    )
    a = load_file(tmp_path / "straight" / "model.safetensors")
    b = load_file(split / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the momentum encoder and the queue resumed too
    for name in ("custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl"):
        sa = torch.load(tmp_path / "straight" / "checkpoint-10" / name, weights_only=True)
        sb = torch.load(split / "checkpoint-10" / name, weights_only=True)
        for key in sa:
            assert torch.equal(sa[key], sb[key]), (name, key)


@pytest.mark.slow
def test_two_processes_share_one_queue(tiny_build, tmp_path):
    proc = launch(
        "--multi_gpu", "--num_processes", "2", "-m", "dptrain", "--preset", "tiny",
        "--data", str(tiny_build), "--output-dir", str(tmp_path), "--max-steps", "6", "--lr-step-epochs", "1",
    )  # fmt: skip
    assert "2 process(es)" in proc.stderr and "MULTI_CPU" in proc.stderr
    checksums = [r["queue_checksums"] for r in records(tmp_path) if "queue_checksums" in r]
    assert len(checksums) == 1 and len(checksums[0]) == 2
    assert checksums[0][0] == checksums[0][1]
    # 72 anchors / (8 x 2 processes) = 4 steps per epoch; the prepared scheduler counts steps
    lrs = [r["lr"] for r in records(tmp_path) if "lr" in r]
    assert lrs == pytest.approx([1e-3] * 4 + [1e-4] * 2)
    assert DiffusionPrint.from_pretrained(tmp_path).extract(torch.zeros(1, 3, 8, 8)).shape == (
        1,
        8,
        8,
        8,
    )
