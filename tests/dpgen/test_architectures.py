"""Config folders and weightless models: the shipped configs resolve, and meta counts are exact."""

from __future__ import annotations

import dataclasses
import json

import diffusers
import pytest
import torch

from dpgen.architectures import (
    MODEL,
    OTHER,
    config_folder,
    empty_models,
    largest_leaf,
    parameter_count,
    read_index,
)
from dpgen.manifest import CONFIG_DIR, ManifestError, PipelineRef, resolve_generators
from dpgen.tiny import BUILDERS, TINY_PREFIX, ensure_tiny

REAL = ("sd21", "sdxl", "flux", "flux-fill")


@pytest.mark.parametrize("name", REAL)
def test_every_real_checkpoint_has_a_shipped_config_folder(name):
    spec = resolve_generators(name)[0]
    assert spec.configs == name
    for role in ("text2image", "inpaint"):
        folder = config_folder(spec, role)
        assert folder.is_relative_to(CONFIG_DIR)
        assert folder.name == getattr(spec, role).checkpoint.split("/")[-1]
        components, _ = read_index(folder)
        for c in components:
            if c.kind == OTHER:
                continue  # absent safety checker, feature extractor
            config = "scheduler_config.json" if c.name == "scheduler" else None
            config = config or ("tokenizer_config.json" if "tokenizer" in c.name else "config.json")
            assert (folder / c.name / config).is_file(), (folder, c.name)
        denoiser = "transformer" if "Flux" in getattr(spec, role).pipeline else "unet"
        assert {c.name for c in components if c.kind == MODEL} >= {"vae", "text_encoder", denoiser}


def test_inpainting_denoisers_take_the_mask_channels():
    # 4 latent + 1 mask + 4 masked-image latent (SD, SDXL); Fill: 64 + 64 + 256 (packed 2x2).
    channels = {
        "sd21": 9,
        "sdxl": 9,
        "flux-fill": 384,
        "flux": 64,  # FluxInpaint reuses the text-to-image transformer
    }
    for name, expected in channels.items():
        folder = config_folder(resolve_generators(name)[0], "inpaint")
        sub = "transformer" if name.startswith("flux") else "unet"
        assert json.loads((folder / sub / "config.json").read_text())["in_channels"] == expected


def test_a_hub_checkpoint_without_configs_is_refused_naming_the_manifest(tmp_path):
    spec = dataclasses.replace(resolve_generators("sd21")[0], configs=None)
    with pytest.raises(ManifestError, match=r"sd21\.yaml: .*Hub id .*`configs`"):
        config_folder(spec, "inpaint")
    spec = dataclasses.replace(spec, configs=str(tmp_path))
    with pytest.raises(ManifestError, match="no model_index.json"):
        config_folder(spec, "inpaint")
    no_t2i = dataclasses.replace(spec, text2image=None)
    with pytest.raises(ManifestError, match="no text2image pipeline"):
        config_folder(no_t2i, "text2image")


def test_a_local_pipeline_folder_is_its_own_config_folder(cache):
    folder = ensure_tiny("dpgen-tiny/sd21-inpaint")
    spec = resolve_generators("tiny-sd21")[0]
    spec = dataclasses.replace(spec, inpaint=PipelineRef(str(folder), spec.inpaint.pipeline))
    assert config_folder(spec, "inpaint") == folder


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_meta_counts_equal_real_weight_counts(cache, name):
    """Counting on the meta device gives exactly the parameters of the loaded pipeline.

    tiny-flux's T5 ties its encoder embedding to ``shared``: a count that does not keep the tie
    (accelerate's default `init_empty_weights`) is too large by the embedding table.
    """
    folder = ensure_tiny(TINY_PREFIX + name)
    real = diffusers.DiffusionPipeline.from_pretrained(folder)
    empty = empty_models(folder)
    loaded = {k: m for k, m in real.components.items() if isinstance(m, torch.nn.Module)}
    assert set(empty) == set(loaded)
    for key, model in empty.items():
        assert all(p.device.type == "meta" for p in model.parameters())
        assert parameter_count(model) == sum(p.numel() for p in loaded[key].parameters()), key
        assert largest_leaf(model) == largest_leaf(loaded[key])
