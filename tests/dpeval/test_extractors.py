"""Extractors: every spec loads frozen, layouts agree, Noiseprint++ weights load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dpeval.extractors import load_extractor
from dpgen.errors import InputError
from dptrain.model import DiffusionPrint


def test_random_is_seeded_and_frozen() -> None:
    a, b = load_extractor("random:3"), load_extractor("random:3")
    assert a.fingerprint() == b.fingerprint() != load_extractor("random:4").fingerprint()
    assert not a.model.training
    assert not any(p.requires_grad for p in a.model.parameters())
    assert a.out_channels == 64


def test_layouts_agree_and_shapes(tmp_path) -> None:
    torch.manual_seed(0)
    DiffusionPrint(out_channels=4, width=8, depth=3).save_pretrained(tmp_path / "m")
    ext = load_extractor(str(tmp_path / "m"))
    x = np.random.default_rng(0).integers(0, 256, size=(5, 3, 16, 16), dtype=np.uint8)
    x.setflags(write=False)  # Arrow views are read-only
    pooled = ext.pool(x)
    assert pooled.shape == (5, 4)
    torch.testing.assert_close(ext.pool(x.transpose(0, 2, 3, 1)), pooled)
    assert ext.extract(x).shape == (5, 4, 16, 16)
    np.testing.assert_allclose(
        ext.pool_all(x, batch_size=2, progress=False), pooled.numpy(), rtol=1e-5, atol=1e-6
    )


def test_noiseprint_spec(tmp_path) -> None:
    model = DiffusionPrint(out_channels=1)
    torch.save({"network": model.backbone.state_dict(), "global_step": 39}, tmp_path / "np.th")
    ext = load_extractor(f"noiseprint++:{tmp_path / 'np.th'}")
    assert ext.out_channels == 1 and ext.model.input_divisor == 256.0


def test_a_folder_that_is_not_a_diffusionprint_is_one_line_naming_it(tmp_path) -> None:
    from dpeval.fingerprint.denoiser import DnCNNDenoiser
    from dpeval.tgif.decoders.lightvae import LightVAE

    (tmp_path / "notes.md").write_text("# not a model")
    (tmp_path / "empty").mkdir()
    DnCNNDenoiser(width=8, depth=3).save_pretrained(tmp_path / "dncnn")
    LightVAE(base_channels=8).save_pretrained(tmp_path / "vae")
    DiffusionPrint(out_channels=4, width=8, depth=3).save_pretrained(tmp_path / "noweights")
    (tmp_path / "noweights" / "model.safetensors").unlink()
    cases = {
        "notes.md": "notes.md: a file, not a DiffusionPrint model folder",
        "empty": "empty: not a DiffusionPrint model folder (no config.json)",
        "dncnn": "dncnn: a DnCNN denoiser, not a DiffusionPrint extractor",
        "vae": "vae: a LightVAE, not a DiffusionPrint extractor",
        "noweights": "noweights: not a DiffusionPrint model folder (no model.safetensors)",
    }
    for name, message in cases.items():
        with pytest.raises(InputError) as err:
            load_extractor(str(tmp_path / name))
        assert str(err.value).startswith(f"{tmp_path}/{message}") and "\n" not in str(err.value)
    with pytest.raises(InputError, match="no such Noiseprint"):
        load_extractor(f"noiseprint++:{tmp_path / 'none.th'}")


def test_bad_specs() -> None:
    with pytest.raises(ValueError, match="no such model folder"):
        load_extractor("/nonexistent/folder")
    with pytest.raises(ValueError, match="cannot load a DiffusionPrint"):
        load_extractor("not-a-model")
    with pytest.raises(ValueError, match="random:SEED"):
        load_extractor("random:x")
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        load_extractor("random").pool(np.zeros((2, 5, 5), np.uint8))
