"""Random-weight pipelines from configs: the manifest's class, real shapes, fresh weights."""

from __future__ import annotations

import diffusers
import numpy as np
import pytest
import torch
from PIL import Image

from dpgen.architectures import config_folder
from dpgen.manifest import resolve_generators
from dpgen.pipelines import Generator
from dpgen.random_weights import offline_tokenizer, random_pipeline
from dpgen.tiny import clip_tokenizer, ensure_tiny


def modules(pipe) -> dict[str, torch.nn.Module]:
    return {k: m for k, m in pipe.components.items() if isinstance(m, torch.nn.Module)}


@pytest.mark.parametrize(("name", "role"), [("tiny-sd21", "inpaint"), ("tiny-flux", "text2image")])
def test_random_pipeline_has_the_checkpoint_shapes_and_its_own_weights(cache, name, role):
    spec = resolve_generators(name)[0]
    state = torch.random.get_rng_state()
    pipe = random_pipeline(spec, role)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    assert type(pipe).__name__ == getattr(spec, role).pipeline
    loaded = diffusers.DiffusionPipeline.from_pretrained(
        ensure_tiny(getattr(spec, role).checkpoint)
    )
    ours, theirs = modules(pipe), modules(loaded)
    assert set(ours) == set(theirs)
    again = modules(random_pipeline(spec, role))
    for key, model in ours.items():
        mine = dict(model.state_dict())
        assert {k: v.shape for k, v in mine.items()} == {
            k: v.shape for k, v in theirs[key].state_dict().items()
        }
        weight = next(k for k, v in mine.items() if v.dim() == 2 and v.numel() > 16)
        assert not torch.equal(mine[weight], theirs[key].state_dict()[weight])  # not loaded
        assert all(torch.equal(v, again[key].state_dict()[k]) for k, v in mine.items())  # seeded


def test_offline_tokenizers_have_the_real_lengths():
    sd21 = config_folder(resolve_generators("sd21")[0], "inpaint")
    clip = offline_tokenizer("CLIPTokenizer", sd21 / "tokenizer")
    assert clip.model_max_length == 77 and len(clip) == len(clip_tokenizer()) > 512
    ids = clip("a photo of a cat").input_ids
    assert len(ids) == 7 and len(set(ids)) == 6  # bos, five words (two "a"), eos: no unknowns
    sdxl = config_folder(resolve_generators("sdxl")[0], "inpaint")
    assert offline_tokenizer("CLIPTokenizer", sdxl / "tokenizer_2").pad_token == "!"
    for name, role in (("flux", "inpaint"), ("flux-fill", "inpaint")):
        folder = config_folder(resolve_generators(name)[0], role)
        assert offline_tokenizer("T5TokenizerFast", folder / "tokenizer_2").model_max_length == 512
    with pytest.raises(ValueError, match="no offline tokenizer for class 'BertTokenizer'"):
        offline_tokenizer("BertTokenizer", sd21 / "tokenizer")


def picture(size: int = 64) -> tuple[Image.Image, Image.Image]:
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = Image.new("L", (size, size))
    mask.paste(255, (16, 16, 48, 48))
    return Image.fromarray(pixels), mask


def test_generator_with_random_weights_says_so_and_is_not_the_checkpoint(cache):
    spec = resolve_generators("tiny-sd21")[0]
    gen, pretrained = Generator(spec, random_weights=True), Generator(spec)
    assert gen.weights == "random" and pretrained.weights == "pretrained"
    assert gen.provenance() == {**spec.to_dict(), "weights": "random"}
    image, mask = picture()
    ours = gen.inpaint([image], [mask], ["a photo of a cat"], [0], steps=2, guidance=3.0)
    theirs = pretrained.inpaint([image], [mask], ["a photo of a cat"], [0], steps=2, guidance=3.0)
    assert ours[0].size == (64, 64)
    assert not np.array_equal(np.asarray(ours[0]), np.asarray(theirs[0]))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny-sdxl", "tiny-flux"])
def test_random_weight_pipelines_of_the_other_families_run(cache, name):
    """SDXL (two CLIP tokenizers, one padding with "!") and Flux (T5): both pipelines run."""
    gen = Generator(resolve_generators(name)[0], random_weights=True)
    image, mask = picture()
    out = gen.inpaint([image], [mask], ["a photo of a cat"], [0], steps=2, guidance=3.0)
    made = gen.generate(["a dog"], [1], steps=2, guidance=3.0, width=64, height=64)
    assert out[0].size == made[0].size == (64, 64)
