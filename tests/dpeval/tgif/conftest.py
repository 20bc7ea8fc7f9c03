"""Shared tiny components: the TGIF-shaped fixture, a tiny DiffusionPrint, a tiny SegFormer."""

from __future__ import annotations

import pytest
import torch
from transformers import SegformerConfig

from dpeval.tgif.fixture import make_tgif_fixture
from dptrain.model import DiffusionPrint

TINY_SEGFORMER = {
    "hidden_sizes": [16, 32, 40, 64],
    "depths": [1, 1, 1, 1],
    "num_attention_heads": [1, 1, 1, 1],
    "decoder_hidden_size": 32,
}


@pytest.fixture(scope="session")
def tgif_root(tmp_path_factory):
    """A TGIF-shaped tree inpainted by dpgen's tiny pipelines (built once per session)."""
    return make_tgif_fixture(tmp_path_factory.mktemp("tgif"))


@pytest.fixture(scope="session")
def tiny_extractor_dir(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-dp")
    DiffusionPrint(out_channels=4, width=8, depth=3).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_segformer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-segformer")
    SegformerConfig(**TINY_SEGFORMER).save_pretrained(path)
    return path
