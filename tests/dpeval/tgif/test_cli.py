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


def test_a_missing_extractor_is_reported_before_the_masks_are_read(
    tgif_root, tiny_segformer_dir, tmp_path, caplog, monkeypatch
):
    from dpeval.tgif import run

    def no_masks(samples):
        raise AssertionError("masks read before the extractor was checked")

    monkeypatch.setattr(run, "check_masks", no_masks)
    for extractor, message in [
        (tmp_path / "missing", "missing: no such model folder"),
        (tmp_path, "not a DiffusionPrint model folder (no config.json)"),
    ]:
        caplog.clear()
        assert main(_args(extractor, tgif_root, tiny_segformer_dir, tmp_path / "out")) == 2
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and message in errors[0], errors


def _table_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("| ")]


@pytest.mark.slow
def test_both_decoders_land_in_one_table_and_the_diffiml_model_localizes(
    tgif_root, tiny_extractor_dir, tiny_segformer_dir, tmp_path, capsys
):
    mlp, diffiml = tmp_path / "mlp", tmp_path / "diffiml"
    base = (tiny_extractor_dir, tgif_root, tiny_segformer_dir)
    assert main([*_args(*base, mlp), "--max-steps", "2", "--name", "DP"]) == 0
    capsys.readouterr()
    # no --lightvae: the LightVAE is trained first into OUTPUT/lightvae
    diffiml_args = [
        *_args(*base, diffiml), "--max-steps", "2", "--name", "DP", "--decoder", "diffiml",
        "--inference-steps", "2", "--ensemble", "2", "--baseline", str(mlp / "results.json"),
    ]  # fmt: skip
    assert main(diffiml_args) == 0
    rows = _table_rows(capsys.readouterr().out)
    assert rows[1].startswith("| DP | diffiml | 1 | ")
    assert rows[2].startswith("| DP (baseline) | mlp | 1 | ")
    assert rows[3].startswith("| Δ vs baseline | diffiml − mlp |  | ")
    results = json.loads((diffiml / "results.json").read_text())
    assert results["decoder"] == "diffiml" and results["decoder_config"]["ensemble"] == 2
    reconstruction = json.loads((diffiml / "lightvae" / "reconstruction.json").read_text())
    assert 0 <= reconstruction["recon_f1_tgif"] <= 1 and reconstruction["steps"] == 50
    config = json.loads((diffiml / "best" / "config.json").read_text())
    assert config["decoder"] == "diffiml" and config["decoder_config"]["num_inference_steps"] == 2
    # the saved localizer reloads with from_pretrained and localizes, the same map every time
    model = load_localizer(str(diffiml / "best"))
    assert model.sampling and model(torch.zeros(1, 3, 40, 48, dtype=torch.uint8)).shape == (
        1, 1, 40, 48,
    )  # fmt: skip
    image = next((tgif_root / "SD2-fr" / "testing").rglob("*.png"))
    maps = []
    for out in (tmp_path / "maps-a", tmp_path / "maps-b"):
        argv = ["localize", "--model", str(diffiml / "best"), str(image), "--out", str(out)]
        assert main([*argv, "--batch-size", "2"]) == 0
        maps.append(np.array(Image.open(out / "maps" / f"{image.stem}.png")))
    assert maps[0].shape == np.array(Image.open(image)).shape[:2] and np.array_equal(*maps)


@pytest.mark.slow
def test_seeds_report_mean_and_std_and_resume_per_seed(
    tgif_root, tiny_extractor_dir, tiny_segformer_dir, tmp_path, capsys, caplog
):
    caplog.set_level(logging.INFO)
    out = tmp_path / "seeds"
    argv = [
        *_args(tiny_extractor_dir, tgif_root, tiny_segformer_dir, out), "--max-steps", "1",
        "--seeds", "2", "--seed", "5", "--figure-images", "0", "--name", "DP",
    ]  # fmt: skip
    assert main(argv) == 0
    rows = _table_rows(capsys.readouterr().out)
    assert rows[1].startswith("| DP | mlp | 2 | ") and " ± " in rows[1]
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == [5, 6] and set(results) >= {"f1", "f1_std", "per_seed"}
    for seed in (5, 6):
        single = json.loads((out / f"seed-{seed}" / "results.json").read_text())
        assert single["training"]["config"]["seed"] == seed
        assert (out / f"seed-{seed}" / "best" / "model.safetensors").is_file()
    mean = np.mean([r["f1"]["tgif"]["sd2"]["segm"] for r in results["per_seed"]])
    assert results["f1"]["tgif"]["sd2"]["segm"] == pytest.approx(mean)
    # a finished seed is not run again on resume; a new run needs --resume-from-checkpoint
    (out / "seed-6" / "results.json").unlink()
    caplog.clear()
    assert main([*argv, "--resume-from-checkpoint", "latest"]) == 0
    assert "seed 5: complete" in caplog.text and "resuming from" in caplog.text
    assert json.loads((out / "results.json").read_text())["f1"] == results["f1"]
    assert main(argv) == 2 and "seed-5: holds checkpoint-1 of an earlier run" in caplog.text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ensemble", "3"], "--ensemble: only for --decoder diffiml"),
        (["--lightvae", "lv"], "--lightvae: only for --decoder diffiml"),
        (["--no-flip-tta"], "--flip-tta: only for --decoder diffiml"),
        (["--decoder", "diffiml", "--crop-size", "36"], "--crop-size: 36 is not a multiple of 8"),
        (["--decoder", "diffiml", "--edge-weight", "1.5"], "--edge-weight (1.5)"),
        (["--seeds", "2", "--push-to-hub"], "--push-to-hub: uploads one model"),
        (["--seeds", "0"], "--seeds: 0 is not a positive"),
    ],
)
def test_decoder_and_seed_options_are_checked_before_anything_runs(extra, message, capsys):
    argv = ["tgif", "--extractor", "random", "--data", "d", "--output-dir", "o", *extra]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_lightvae_path_that_is_not_a_model_is_one_line(
    tgif_root, tiny_extractor_dir, tiny_segformer_dir, tmp_path, caplog
):
    args = _args(tiny_extractor_dir, tgif_root, tiny_segformer_dir, tmp_path / "out")
    assert main([*args, "--decoder", "diffiml", "--lightvae", str(tmp_path / "none")]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "--lightvae is not a folder with a config.json" in errors[0]
