"""Residuals: the fixed high-pass in closed form, the DnCNN denoiser, extractor backbones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpeval.fingerprint.denoiser import (
    DnCNNDenoiser,
    HighPassResidual,
    load_residual,
    parse_spec,
    residuals_of,
)
from dpeval.fingerprint.train_denoiser import noisy_batch, train_denoiser
from dpgen.errors import InputError


def test_highpass_closed_form():
    hp = HighPassResidual()
    assert hp(torch.full((1, 3, 8, 8), 0.7)).abs().max() < 1e-6  # flat: no residual
    x = torch.zeros(1, 3, 9, 9)
    x[0, 1, 4, 4] = 1.0
    r = hp(x)[0, 1]
    assert r[4, 4].item() == pytest.approx(8 / 9)
    assert r[3:6, 3:6].sum().item() == pytest.approx(0.0, abs=1e-6)  # 8/9 - 8 * 1/9
    assert r[3, 3].item() == pytest.approx(-1 / 9) and r[0, 0].item() == 0.0
    assert hp(x)[0, 0].abs().max() == 0.0  # channels are filtered separately


def test_parse_spec():
    assert parse_spec("highpass") == ("highpass", "")
    assert parse_spec("noiseprint++:w.th") == ("noiseprint++", "w.th")
    assert parse_spec("diffusionprint:random:3") == ("diffusionprint", "random:3")
    for bad in ("median", "train:", "dncnn"):
        with pytest.raises(InputError, match="expected highpass"):
            parse_spec(bad)
    with pytest.raises(InputError, match="train the denoiser before"):
        load_residual("train:real")


def test_dncnn_folder_loads_relative_to_a_fingerprint(tmp_path):
    torch.manual_seed(0)
    DnCNNDenoiser(width=8, depth=3).save_pretrained(tmp_path / "denoiser")
    residual = load_residual("dncnn:denoiser", root=tmp_path)
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    r = residuals_of(residual, x, batch_size=1, device="cpu")
    assert r.shape == (2, 3, 16, 16) and not residual.training
    with pytest.raises(InputError, match="cannot load a DnCNN denoiser"):
        load_residual("dncnn:nowhere", root=tmp_path)


def test_diffusionprint_backbone_gives_its_channels():
    residual = load_residual("diffusionprint:random:1")
    assert residual(torch.rand(1, 3, 16, 16)).shape == (1, 64, 16, 16)


def test_noisy_batch_noise_levels():
    pixels = torch.full((4, 3, 80, 80), 128, dtype=torch.uint8)
    noisy, noise = noisy_batch(pixels, torch.Generator().manual_seed(0))
    assert noisy.shape == noise.shape == (16, 3, 64, 64)
    assert torch.allclose(noisy - noise, torch.full_like(noisy, 128 / 255))
    assert noise.std(dim=(1, 2, 3)).max() <= 25 / 255 * 1.1


@pytest.mark.slow
def test_train_denoiser_is_seeded():
    from accelerate import Accelerator

    pixels = torch.from_numpy(
        np.random.default_rng(0).integers(0, 256, (4, 3, 16, 16), dtype=np.uint8)
    )
    accelerator = Accelerator(cpu=True)
    a, b = (train_denoiser(accelerator, pixels, steps=2, seed=5) for _ in range(2))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not a.training
