"""Tiny random-weight pipelines: tokenizers, configs, save/reload, determinism, cache races."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import diffusers
import pytest
import torch
from transformers import CLIPTokenizer, T5TokenizerFast

from dpgen import tiny

# name -> (pipeline class, denoiser attribute, its in_channels, VAE latent channels)
EXPECTED = {
    "sd21-text2image": ("StableDiffusionPipeline", "unet", 4, 4),
    "sd21-inpaint": ("StableDiffusionInpaintPipeline", "unet", 9, 4),
    "sdxl-text2image": ("StableDiffusionXLPipeline", "unet", 4, 4),
    "sdxl-inpaint": ("StableDiffusionXLInpaintPipeline", "unet", 9, 4),
    "flux-text2image": ("FluxPipeline", "transformer", 64, 16),
    "flux-inpaint": ("FluxInpaintPipeline", "transformer", 64, 16),
    "flux-fill": ("FluxFillPipeline", "transformer", 384, 16),
}


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return module.state_dict()


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = state(a), state(b)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_cache_dir_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DPGEN_CACHE", str(tmp_path))
    assert tiny.tiny_cache_dir() == tmp_path / "tiny"
    monkeypatch.delenv("DPGEN_CACHE")
    assert tiny.tiny_cache_dir() == Path.home() / ".cache" / "dpgen" / "tiny"


def test_clip_tokenizer_knows_words_and_bytes() -> None:
    vocab, merges = tiny.clip_vocab_and_merges()
    tok = tiny.clip_tokenizer()
    assert len(tok) == len(vocab) == 512 + len(merges) + 2 > 900  # not the 2-token empty one
    assert tok.model_max_length == 77
    tokens = tok.convert_ids_to_tokens(tok("A photo of a cat").input_ids)
    assert tokens == [
        "<|startoftext|>",
        "a</w>",
        "photo</w>",
        "of</w>",
        "a</w>",
        "cat</w>",
        "<|endoftext|>",
    ]
    # An unknown word falls back to bytes, never to the unknown token (<|endoftext|>).
    ids = tok("xylophone ünïcode").input_ids
    assert ids.count(tok.eos_token_id) == 1 and len(ids) > 4
    assert len(tok("cat " * 200, truncation=True).input_ids) == 77


def test_t5_tokenizer_knows_words_and_letters() -> None:
    tok = tiny.t5_tokenizer()
    assert len(tok) > 150  # not the 104-token empty one
    assert tok.model_max_length == tiny.T5_MAX_LENGTH
    assert tok.convert_ids_to_tokens(tok("a cat").input_ids) == ["▁a", "▁cat", "</s>"]
    assert tok.unk_token_id not in tok("xylophone 42").input_ids


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_tiny_pipeline_saves_and_reloads(name: str) -> None:
    cls_name, denoiser, in_channels, latent_channels = EXPECTED[name]
    folder = tiny.ensure_tiny(tiny.TINY_PREFIX + name)
    assert folder.parent == tiny.tiny_cache_dir() / f"v{tiny.BUILD_VERSION}"
    assert json.loads((folder / "model_index.json").read_text())["_class_name"] == cls_name
    cls = getattr(diffusers, cls_name)
    pipe = cls.from_pretrained(folder)
    assert type(pipe) is cls
    assert getattr(pipe, denoiser).config.in_channels == in_channels
    assert pipe.vae.config.latent_channels == latent_channels
    assert len(pipe.vae.config.block_out_channels) == 4  # 8x downsampling, like the real VAEs
    assert pipe.vae_scale_factor == 8
    # The saved weights are the deterministic build's.
    fresh = tiny.build_tiny(name)
    for key, module in pipe.components.items():
        if isinstance(module, torch.nn.Module):
            assert same_weights(module, fresh.components[key]), key
    # Saved tokenizers are whole (a real CLIP tokenizer folder ships vocab.json + merges.txt too).
    assert {"vocab.json", "merges.txt", "tokenizer.json"} <= {
        p.name for p in (folder / "tokenizer").iterdir()
    }
    assert len(CLIPTokenizer.from_pretrained(folder / "tokenizer")) == len(tiny.clip_tokenizer())
    if name.startswith("flux"):
        t5 = T5TokenizerFast.from_pretrained(folder / "tokenizer_2")
        assert len(t5) == len(tiny.t5_tokenizer())
        assert t5.model_max_length == tiny.T5_MAX_LENGTH


def test_seeds_differ_between_families_and_are_shared_within() -> None:
    sd21, sd21_t2i = tiny.build_tiny("sd21-inpaint"), tiny.build_tiny("dpgen-tiny/sd21-text2image")
    sdxl = tiny.build_tiny("sdxl-inpaint")
    flux, flux_t2i = tiny.build_tiny("flux-inpaint"), tiny.build_tiny("flux-text2image")
    assert same_weights(sd21.vae, sd21_t2i.vae)  # a family shares its VAE and text encoder
    assert same_weights(sd21.text_encoder, sd21_t2i.text_encoder)
    assert not same_weights(sd21.vae, sdxl.vae)  # same shapes, different fingerprints
    assert not same_weights(sd21.text_encoder, sdxl.text_encoder)
    assert same_weights(flux.transformer, flux_t2i.transformer)  # one checkpoint, like schnell


def test_build_leaves_global_rng_alone() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    tiny.build_tiny("flux-inpaint")
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(
    "checkpoint", ["dpgen-tiny/nope", "nope", "stabilityai/stable-diffusion-2"]
)
def test_unknown_tiny_name_lists_known_ones(checkpoint: str) -> None:
    with pytest.raises(
        ValueError, match="known: dpgen-tiny/sd21-text2image, dpgen-tiny/sd21-inpaint"
    ):
        tiny.ensure_tiny(checkpoint)


def test_racing_threads_build_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DPGEN_CACHE", str(tmp_path))
    caplog.set_level(logging.INFO, logger="dpgen.tiny")
    with ThreadPoolExecutor(2) as pool:
        folders = list(pool.map(tiny.ensure_tiny, ["dpgen-tiny/sd21-inpaint"] * 2))
    assert folders[0] == folders[1] == tmp_path / "tiny" / f"v{tiny.BUILD_VERSION}" / "sd21-inpaint"
    assert sum("building tiny pipeline" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.slow  # two fresh interpreters importing diffusers: 10-30 s on 2 cores
def test_racing_processes_build_one_folder(tmp_path: Path) -> None:
    code = "from dpgen.tiny import ensure_tiny; print(ensure_tiny('dpgen-tiny/flux-inpaint'))"
    env = {**os.environ, "DPGEN_CACHE": str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    folder = tmp_path / "tiny" / f"v{tiny.BUILD_VERSION}" / "flux-inpaint"
    assert outputs == [str(folder)] * 2
    # Only the finished folder and its lock remain: no half-built temporary folder.
    assert sorted(p.name for p in folder.parent.iterdir()) == ["flux-inpaint", "flux-inpaint.lock"]
    assert (
        type(diffusers.FluxInpaintPipeline.from_pretrained(folder)) is diffusers.FluxInpaintPipeline
    )


def test_a_rank_other_than_0_refuses_to_build(tmp_path, monkeypatch) -> None:
    # transformers' save_pretrained writes nothing on such a rank: the cache would hold a
    # pipeline with empty text encoders (found by a two-rank build with an empty cache)
    monkeypatch.setenv("DPGEN_CACHE", str(tmp_path))
    monkeypatch.setattr(tiny.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(tiny.dist, "get_rank", lambda: 1)
    with pytest.raises(RuntimeError, match="build tiny pipelines on rank 0 first"):
        tiny.ensure_tiny("dpgen-tiny/sd21-inpaint")
    assert not (tmp_path / "tiny" / f"v{tiny.BUILD_VERSION}" / "sd21-inpaint").exists()
