"""A tiny trained-shape localizer saved with save_pretrained, shared by localize and score tests."""

from __future__ import annotations

import pytest
import torch

from dpeval.tgif.decoders.lightvae import LightVAE
from dpeval.tgif.lite_baseline import LiteBaseline

#: A SegFormer small enough to run in milliseconds (same structure as MiT-B2).
TINY_SEGFORMER = {
    "hidden_sizes": [16, 32, 40, 64],
    "depths": [1, 1, 1, 1],
    "num_attention_heads": [1, 1, 1, 1],
    "decoder_hidden_size": 32,
}
TINY_EXTRACTOR = {"out_channels": 4, "width": 8, "depth": 3}


@pytest.fixture(scope="session")
def tiny_localizer_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-localizer")
    LiteBaseline(
        rgb_encoder_config=TINY_SEGFORMER, extractor_config=TINY_EXTRACTOR
    ).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_diffiml_localizer_dir(tmp_path_factory):
    """The same localizer with a small DiffIML decoder (2 DDIM steps x 2 samples, flip TTA)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-diffiml-localizer")
    decoder_config = {"condition_channels": 16, "unet_channels": 32, "num_inference_steps": 2,
                      "ensemble": 2}  # fmt: skip
    rgb = LiteBaseline(rgb_encoder_config=TINY_SEGFORMER, extractor_config=TINY_EXTRACTOR)
    LiteBaseline.from_parts(
        rgb.rgb_encoder, rgb.extractor, "diffiml", decoder_config, LightVAE(base_channels=8)
    ).save_pretrained(path)
    return path
