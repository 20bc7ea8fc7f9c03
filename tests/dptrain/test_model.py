"""dptrain.model: parameter counts, Hub round trip, Noiseprint++ loading."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from dptrain.model import DiffusionPrint, dncnn


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_the_paper_and_noiseprint():
    assert count(dncnn(out_channels=64)) == 593_600
    assert count(dncnn(out_channels=1)) == 557_249


@pytest.mark.parametrize("channels", [1, 8])
def test_shapes(channels):
    model = DiffusionPrint(out_channels=channels, width=8, depth=4, patch_size=16).eval()
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert model.extract(x).shape == (2, channels, 16, 16)
    assert model.pool(x).shape == (2, channels)
    z = model(x)
    assert z.shape == (2, 128)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(2))


def test_save_pretrained_round_trip(tmp_path):
    model = DiffusionPrint(out_channels=8, width=8, depth=4, proj_hidden=16, patch_size=16).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config == {
        "out_channels": 8,
        "width": 8,
        "depth": 4,
        "embed_dim": 128,
        "proj_hidden": 16,
        "patch_size": 16,
        "input_divisor": 255.0,
    }
    loaded = DiffusionPrint.from_pretrained(tmp_path).eval()
    x = torch.rand(2, 3, 24, 24) * 255
    torch.testing.assert_close(loaded.extract(x), model.extract(x), rtol=0, atol=0)


def test_from_pretrained_prints_nothing_on_stdout(tmp_path, capsys, caplog):
    """huggingface_hub's "Loading weights from local directory" goes to the log, not stdout."""
    DiffusionPrint(out_channels=8, width=8, depth=3).save_pretrained(tmp_path)
    with caplog.at_level(logging.DEBUG, logger="dptrain.hub"):
        DiffusionPrint.from_pretrained(tmp_path)
    assert capsys.readouterr().out == ""
    assert "Loading weights from local directory" in caplog.text


def noiseprint_state(prefix: str = "") -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {prefix + k: v.clone() for k, v in dncnn(out_channels=1).state_dict().items()}


@pytest.mark.parametrize("layout", ["trufor", "mmfusion"])
def test_from_noiseprint_both_formats(tmp_path, layout):
    state = noiseprint_state()
    if layout == "trufor":  # {'network': state_dict, 'global_step': 39}, DataParallel keys
        path = tmp_path / "noiseprint++.th"
        torch.save({"network": noiseprint_state("module."), "global_step": 39}, path)
    else:  # a plain state dict, MMFusion's `noiseprint.` prefix
        path = tmp_path / "np++.pth"
        torch.save(noiseprint_state("noiseprint."), path)
    model = DiffusionPrint.from_noiseprint(path).eval()
    assert model.out_channels == 1 and model.input_divisor == 256.0
    for key, value in state.items():
        torch.testing.assert_close(model.backbone.state_dict()[key], value)
    x = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)
    reference = dncnn(out_channels=1)
    reference.load_state_dict(state)
    torch.testing.assert_close(model.extract(x), reference.eval()(x.float() / 256.0))


def test_from_noiseprint_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="bad.pth"):
        DiffusionPrint.from_noiseprint(bad)
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        DiffusionPrint.from_noiseprint(junk)
