"""`dpeval tgif` end to end on the TGIF-shaped fixture (CPU, tiny models, a few steps)."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi
from PIL import Image

from dpeval.cli import main
from dpeval.extractors import load_extractor
from dpeval.tgif import card
from dpeval.tgif.card import MODEL_FILES, load_localizer
from dpeval.tgif.reader import GENERATORS
from dptrain.model import dncnn


def _args(extractor, data, seg, out, *extra):
    return [
        "tgif", "--extractor", str(extractor), "--data", str(data), "--output-dir", str(out),
        "--rgb-encoder", str(seg), "--rgb-encoder-init", "random", "--crop-size", "32",
        "--batch-size", "3", "--effective-batch", "6", "--num-workers", "0", "--figure-images", "2",
        *extra,
    ]  # fmt: skip


def test_noiseprint_formats_load_through_the_extractor_path(tmp_path):
    torch.manual_seed(0)
    state = dncnn(3, 1).state_dict()  # Noiseprint++'s shape: C = 1
    torch.save({"network": state, "global_step": 39}, tmp_path / "noiseprint++.th")  # TruFor
    torch.save({f"noiseprint.{k}": v for k, v in state.items()}, tmp_path / "np++.pth")  # MMFusion
    x = torch.randint(0, 256, (1, 3, 24, 24), dtype=torch.uint8)
    maps = []
    for name in ("noiseprint++.th", "np++.pth"):
        ext = load_extractor(f"noiseprint++:{tmp_path / name}")
        assert ext.out_channels == 1 and ext.model.input_divisor == 256.0
        maps.append(ext.extract(x))
    torch.testing.assert_close(maps[0], maps[1])
    with pytest.raises(ValueError, match="47.weight"):
        torch.save({"0.weight": state["0.weight"]}, tmp_path / "bad.pth")
        load_extractor(f"noiseprint++:{tmp_path / 'bad.pth'}")


class RecordingApi(HfApi):
    """The real client with its two network calls replaced by recorders."""

    calls: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(token="hf_test")

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kwargs):
        folder = Path(kwargs["folder_path"])
        files = sorted(p.name for p in folder.iterdir() if p.name in kwargs["allow_patterns"])
        self.calls.append(("upload_folder", kwargs["repo_id"], {**kwargs, "files": files}))
        return f"https://huggingface.co/{kwargs['repo_id']}/commit/abc"


def _check_best_model(best, results):
    """best/ is a complete Hub model with its F1 table, curves beside it, and it localizes."""
    assert {p.name for p in best.iterdir()} >= {*MODEL_FILES, "training_curves.png"}
    config = json.loads((best / "config.json").read_text())
    assert config["decoder"] == "mlp" and config["extractor_config"]["out_channels"] == 4
    readme = (best / "README.md").read_text()
    assert "TGIF convention (headline)" in readme and "| " + results["name"] + " |" in readme
    metrics = [
        json.loads(line) for line in (best.parent / "metrics.jsonl").read_text().splitlines()
    ]
    assert any("loss" in m for m in metrics) and any("val_f1" in m for m in metrics)
    model = load_localizer(str(best))
    image = torch.randint(0, 256, (1, 3, 48, 40), dtype=torch.uint8)
    assert model(image).shape == (1, 1, 48, 40)


def test_end_to_end_json_baseline_and_resume(
    tgif_root, tiny_extractor_dir, tiny_segformer_dir, tmp_path, capsys, caplog, monkeypatch
):
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(card, "HfApi", RecordingApi)
    RecordingApi.calls = []
    run_a = tmp_path / "a"
    assert (
        main(
            _args(
                tiny_extractor_dir,
                tgif_root,
                tiny_segformer_dir,
                run_a,
                "--max-steps",
                "2",
                "--json",
            )
        )
        == 0
    )
    results = json.loads(capsys.readouterr().out)
    # the reader's counts per split are logged and kept
    assert "validation" in caplog.text and "originals" in caplog.text
    assert results["reader"]["counts"]["training"]["sd2"] == {"bbox": 3, "segm": 3, "random": 3}
    for conv in ("tgif", "trufor_tgif"):
        for gen in GENERATORS:
            for cell in ("bbox", "segm", "random", "semantic"):
                assert 0.0 <= results["f1"][conv][gen][cell] <= 1.0
    assert results["n_images"]["flux1dev"] == {"bbox": 2, "segm": 2, "random": 2, "semantic": 4}
    assert results["training"]["steps"] == 2 and results["training"]["best_step"] in (1, 2)
    for name in (
        "results.json",
        "per_image.jsonl",
        "table.md",
        "qualitative.png",
        "best/model.safetensors",
    ):
        assert (run_a / name).is_file()
    assert [p.name for p in run_a.glob("checkpoint-*")] == ["checkpoint-2"]
    _check_best_model(run_a / "best", results)
    # a new run into a folder holding an earlier run's checkpoint needs an explicit resume
    caplog.clear()
    assert main(_args(tiny_extractor_dir, tgif_root, tiny_segformer_dir, run_a)) == 2
    assert "checkpoint-2 of an earlier run" in caplog.text

    # resume: continues from checkpoint-2 to step 3, with a baseline for the delta row
    run_args = _args(tiny_extractor_dir, tgif_root, tiny_segformer_dir, run_a, "--max-steps", "3")
    assert (
        main(
            [
                *run_args,
                "--resume-from-checkpoint",
                "latest",
                "--baseline",
                str(run_a / "results.json"),
                "--name",
                "resumed",
                "--push-to-hub",
                "--hub-model-id",
                "org/lite-baseline",
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "resumed from" not in table and "checkpoint-2" in caplog.text
    assert [p.name for p in run_a.glob("checkpoint-*")] == ["checkpoint-3"]
    assert (
        table.count("Δ vs baseline") == 2
        and "TruFor convention" in table
        and "TGIF convention" in table
    )
    assert "| resumed |" in table and "(baseline) |" in table
    # --push-to-hub uploads best/ (checked at the network boundary: no request is sent)
    assert [c[:2] for c in RecordingApi.calls] == [
        ("create_repo", "org/lite-baseline"),
        ("upload_folder", "org/lite-baseline"),
    ]
    upload = RecordingApi.calls[1][2]
    assert Path(upload["folder_path"]) == run_a / "best" and upload["files"] == sorted(MODEL_FILES)


def test_bad_inputs_are_one_line_errors_before_fine_tuning(
    tgif_root, tiny_extractor_dir, tiny_segformer_dir, tmp_path, caplog
):
    (tmp_path / "bad.json").write_text('{"f1": {"tgif": {}}}')
    (tmp_path / "checkpoint-3").mkdir()  # no marker: an interrupted save
    good = (tiny_extractor_dir, tgif_root, tiny_segformer_dir)
    cases = [
        (good, ["--baseline", str(tmp_path / "bad.json")], "not a dpeval tgif results file"),
        (good, ["--baseline", str(tmp_path / "none.json")], "cannot read results JSON"),
        ((tiny_extractor_dir, tmp_path / "nope", tiny_segformer_dir), [], "not a folder"),
        (good, ["--resume-from-checkpoint", str(tmp_path / "checkpoint-3")], "incomplete"),
        (good, ["--push-to-hub", "--hub-model-id", "a/b/c"], "not a valid repo id"),
        ((tmp_path / "missing", tgif_root, tiny_segformer_dir), [], "no such model folder"),
    ]
    for (extractor, data, seg), extra, message in cases:
        caplog.clear()
        out = tmp_path / "out"
        assert main([*_args(extractor, data, seg, out), *extra]) == 2, message
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and message in errors[0] and "\n" not in errors[0], errors
        assert not list(out.glob("checkpoint-*"))
    # a test mask that is not 0/255 stops the run before fine-tuning, naming the file
    bad_tree = tmp_path / "tgif"
    shutil.copytree(tgif_root, bad_tree)
    bad_mask = next((bad_tree / "masks" / "testing").rglob("*_mask_bbox_512.png"))
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(bad_mask)
    caplog.clear()
    assert main(_args(tiny_extractor_dir, bad_tree, tiny_segformer_dir, tmp_path / "out")) == 2
    assert f"{bad_mask}: mask has values other than 0 and 255" in caplog.text
    # the ImageNet-pretrained encoder offline: one line with the way out
    caplog.clear()
    args = _args(tiny_extractor_dir, tgif_root, tiny_segformer_dir, tmp_path / "out")
    args[args.index("random")] = "imagenet"
    assert main(args) == 2
    assert "--rgb-encoder-init random" in caplog.text
