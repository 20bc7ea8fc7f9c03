"""The LightVAE loop: trains on TGIF masks, reports reconstruction F1, resumes exactly, distils."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from dpeval.tgif.decoders.lightvae import LightVAE
from dpeval.tgif.decoders.lightvae_train import (
    LightVAETrainConfig,
    global_batch,
    reconstruction_f1,
    train_lightvae,
)
from dpeval.tgif.decoders.mask_data import MaskSet, list_masks
from dpgen.errors import InputError
from dpgen.masks import MaskError
from dpgen.options import OptionError

FAST = dict(image_size=32, batch_size=4, base_channels=8, num_workers=0, log_every=1, lr=1e-3)


def write_masks(folder: Path, count: int, side: int = 40, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        mask = np.zeros((side, side), np.uint8)
        y, x = rng.integers(0, side // 2, 2)
        h, w = rng.integers(4, side // 2, 2)
        mask[y : y + h, x : x + w] = 255
        paths.append(folder / f"{i}_mask.png")
        Image.fromarray(mask).save(paths[-1])
    return paths


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_trains_on_tgif_masks_and_reports_reconstruction_f1(tgif_root, tmp_path):
    out = tmp_path / "vae"
    config = LightVAETrainConfig(data=str(tgif_root), output_dir=str(out), max_steps=3, **FAST)
    report = train_lightvae(config)
    assert (report.steps, report.train_masks, report.eval_masks) == (3, 27, 9)
    assert 0 <= report.recon_f1_tgif <= 1 and 0 <= report.recon_f1_pooled <= 1
    for name in ("config.json", "model.safetensors", "metrics.jsonl", "training_curves.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "reconstruction.json").read_text())
    assert saved["recon_f1_tgif"] == report.recon_f1_tgif
    assert [r["step"] for r in records(out) if "loss" in r] == [1, 2, 3]
    vae = LightVAE.from_pretrained(out)
    assert vae.base_channels == 8
    # the reported F1 is the saved model's
    again = reconstruction_f1(vae, MaskSet(list_masks(tgif_root, "validation"), 32), 4, "cpu")
    assert again["recon_f1_tgif"] == pytest.approx(report.recon_f1_tgif)


class Constant(nn.Module):
    """Reconstructs every pixel as +1 (all inpainted), or as its input when ``value`` is None."""

    def __init__(self, value: float | None) -> None:
        super().__init__()
        self.value = value

    def forward(self, x):
        return x if self.value is None else torch.full_like(x, self.value)


def test_reconstruction_f1_per_image_and_pooled(tmp_path):
    paths = write_masks(tmp_path, 3, side=16)
    masks = MaskSet(paths, 16)
    assert reconstruction_f1(Constant(None), masks, 2, "cpu") == {
        "recon_f1_tgif": 1.0,
        "recon_f1_pooled": 1.0,
    }
    areas = np.array([float(masks[i].sum()) for i in range(3)])
    f1 = reconstruction_f1(Constant(1.0), masks, 2, "cpu")  # TP = area, FP = 256 - area
    assert f1["recon_f1_tgif"] == pytest.approx(np.mean(2 * areas / (areas + 256)))
    assert f1["recon_f1_pooled"] == pytest.approx(2 * areas.sum() / (areas.sum() + 3 * 256))


@pytest.mark.slow
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    write_masks(tmp_path / "masks", 10)
    base = dict(data=str(tmp_path / "masks"), checkpointing_steps=2, **FAST)
    train_lightvae(LightVAETrainConfig(output_dir=str(tmp_path / "a"), max_steps=4, **base))
    train_lightvae(LightVAETrainConfig(output_dir=str(tmp_path / "b"), max_steps=2, **base))
    assert (tmp_path / "b" / "checkpoint-2" / "checkpoint.json").is_file()
    resumed = LightVAETrainConfig(
        output_dir=str(tmp_path / "b"), max_steps=4, resume_from_checkpoint="latest", **base
    )
    assert train_lightvae(resumed).steps == 4
    a = load_file(tmp_path / "a" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # a run with fewer steps does differ: the comparison can fail
    c = load_file(tmp_path / "b" / "checkpoint-2" / "model.safetensors")  # the loss module's
    assert not all(torch.equal(a[k], c[f"vae.{k}"]) for k in a)


def test_distillation_towards_an_image_vae(tmp_path):
    write_masks(tmp_path / "masks", 4)
    teacher = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 32, 32),
        layers_per_block=1,
        norm_num_groups=8,
    )
    teacher.save_pretrained(tmp_path / "teacher")
    out = tmp_path / "out"
    config = LightVAETrainConfig(
        data=str(tmp_path / "masks"), output_dir=str(out), max_steps=2,
        teacher_vae=str(tmp_path / "teacher"), distill_weight=0.5, **FAST,
    )  # fmt: skip
    train_lightvae(config)
    logged = [r for r in records(out) if "loss" in r]
    assert len(logged) == 2
    for r in logged:
        assert r["distill"] > 0
        assert r["loss"] == pytest.approx(r["l1"] + 0.5 * r["distill"])


def test_global_batches_cover_each_epoch_once_and_repeat():
    n, size = 10, 4
    stream = np.concatenate([global_batch(s, n, size, seed=3) for s in range(5)])
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert np.array_equal(global_batch(3, n, size, 3), global_batch(3, n, size, 3))
    assert not np.array_equal(stream[:10], stream[10:20])  # a new permutation per epoch


def test_list_masks_of_a_tgif_tree_and_of_plain_folders(tgif_root, tmp_path):
    masks = list_masks(tgif_root, "training")
    assert len(masks) == 27 and all(p.parts[-4].startswith("masks") for p in masks)
    assert {p.parts[-3] for p in masks} == {"training"}
    write_masks(tmp_path / "flat", 3)
    assert len(list_masks(tmp_path / "flat", "validation")) == 3  # no splits: every mask
    write_masks(tmp_path / "split" / "training", 2)
    write_masks(tmp_path / "split" / "validation", 1)
    assert len(list_masks(tmp_path / "split", "training")) == 2
    assert len(list_masks(tmp_path / "split", "validation")) == 1
    with pytest.raises(InputError, match="no masks found"):
        list_masks(tmp_path / "split", "testing")
    with pytest.raises(InputError, match="not one of"):
        list_masks(tmp_path / "flat", "train")


def test_masks_are_resized_by_nearest_and_checked(tmp_path):
    (path,) = write_masks(tmp_path, 1, side=80)
    mask = MaskSet([path], 32)[0]
    assert mask.shape == (1, 32, 32) and set(mask.unique().tolist()) <= {0.0, 1.0}
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(MaskError, match="grey.png"):
        MaskSet([tmp_path / "grey.png"], 8)[0]


def test_config_rejects_bad_sizes():
    with pytest.raises(OptionError, match="multiple of 8"):
        LightVAETrainConfig(data="x", output_dir="y", image_size=30)
    with pytest.raises(OptionError, match="odd"):
        LightVAETrainConfig(data="x", output_dir="y", edge_width=6)


def test_dpeval_lightvae_command_trains_and_prints_the_reconstruction_f1(
    tgif_root, tmp_path, capsys
):
    from dpeval.cli import main

    out = tmp_path / "lightvae"
    argv = ["lightvae", "--data", str(tgif_root), "--output-dir", str(out), "--max-steps", "2"]
    argv += ["--image-size", "32", "--batch-size", "4", "--base-channels", "8"]
    assert main([*argv, "--num-workers", "0"]) == 0
    line = capsys.readouterr().out
    saved = json.loads((out / "reconstruction.json").read_text())
    assert "after 2 steps on 27 masks; reconstruction F1 at 0.5 on 9 masks: " in line
    assert f"{saved['recon_f1_tgif']:.4f} (TGIF, per image)" in line
    assert LightVAE.from_pretrained(out).base_channels == 8
