"""`Generator` on the tiny pipelines, through the real `from_pretrained` loading path."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import shutil
from pathlib import Path

import diffusers
import numpy as np
import pytest
import torch
from PIL import Image

from dpgen.manifest import (
    MANIFEST_DIR,
    GeneratorSpec,
    PipelineRef,
    load_manifest,
    resolve_generators,
)
from dpgen.masks import MaskError
from dpgen.pipelines import (
    FullRegenerationError,
    Generator,
    pasted_back_fraction,
    resolve_checkpoint,
)
from dpgen.tiny import ensure_tiny

TINY = ("tiny-sd21", "tiny-sdxl", "tiny-flux")
W, H = 128, 96  # not square, to catch a swapped width/height; a multiple of 16


@pytest.fixture(scope="module")
def generators(cache: Path) -> dict[str, Generator]:
    return {spec.name: Generator(spec) for spec in resolve_generators(list(TINY))}


def picture(seed: int, width: int = W, height: int = H) -> Image.Image:
    """A smooth random picture (gradients and blobs), RGB."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
    channels = [
        np.sin(rng.uniform(2, 9) * xx + rng.uniform(2, 9) * yy + rng.uniform(0, 6))
        for _ in range(3)
    ]
    return Image.fromarray((np.stack(channels, -1) * 120 + 128).astype(np.uint8))


def box_mask(width: int = W, height: int = H) -> Image.Image:
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4 : height // 2, width // 4 : width // 2] = 255
    return Image.fromarray(mask)


def inpaint(
    gen: Generator, seeds: tuple[int, ...] = (0, 1), size: tuple[int, int] = (W, H)
) -> list[Image.Image]:
    n = len(seeds)
    images = [picture(i, *size) for i in range(n)]
    return gen.inpaint(
        images, [box_mask(*size)] * n, ["a cat", ""][:n], list(seeds), steps=2, guidance=3.0
    )


def pixels(images: list[Image.Image]) -> bytes:
    return b"".join(im.tobytes() for im in images)


def with_inpaint(spec: GeneratorSpec, checkpoint: str, pipeline: str, **changes) -> GeneratorSpec:
    return dataclasses.replace(spec, inpaint=PipelineRef(checkpoint, pipeline), **changes)


@pytest.mark.parametrize("name", TINY)
def test_calls_return_rgb_images_of_the_input_size(
    generators: dict[str, Generator], name: str
) -> None:
    gen = generators[name]
    images = [picture(0), picture(1)]
    fakes = inpaint(gen)
    made = gen.generate(
        ["a dog", "a photo of a cat"], [0, 1], steps=2, guidance=3.0, width=W, height=H
    )
    rebuilt = gen.roundtrip(images)
    assert type(gen.inpaint_pipeline).__name__ == gen.spec.inpaint.pipeline
    assert type(gen.text2image_pipeline).__name__ == gen.spec.text2image.pipeline
    for im in [*fakes, *made, *rebuilt]:
        assert im.size == (W, H) and im.mode == "RGB"
    assert pixels(rebuilt[:1]) != pixels(images[:1])  # the VAE changes pixels


@pytest.mark.parametrize("name", TINY)
def test_same_seed_same_bytes(generators: dict[str, Generator], name: str) -> None:
    gen = generators[name]
    assert pixels(inpaint(gen)) == pixels(inpaint(gen))
    assert pixels(inpaint(gen, seeds=(0,))) != pixels(inpaint(gen, seeds=(1,)))
    made = [
        gen.generate(["a cat"], [7], steps=2, guidance=3.0, width=W, height=H) for _ in range(2)
    ]
    assert pixels(made[0]) == pixels(made[1])
    assert pixels(gen.roundtrip([picture(3)])) == pixels(gen.roundtrip([picture(3)]))


def test_tiny_generators_leave_different_outputs(generators: dict[str, Generator]) -> None:
    fakes = {name: pixels(inpaint(gen)) for name, gen in generators.items()}
    rebuilt = {name: pixels(gen.roundtrip([picture(0)])) for name, gen in generators.items()}
    for a, b in itertools.combinations(TINY, 2):
        assert fakes[a] != fakes[b], (a, b)
        assert rebuilt[a] != rebuilt[b], (a, b)


@pytest.mark.parametrize("name", TINY)
def test_roundtrip_is_the_pipelines_encode_decode(
    generators: dict[str, Generator], name: str
) -> None:
    """Mode latent, scaled and shifted as the pipeline does, decoded, rounded like its postprocess."""
    gen = generators[name]
    pipe = gen.inpaint_pipeline
    vae = pipe.vae
    image = picture(5)
    x = pipe.image_processor.preprocess(image, height=H, width=W)
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mean
        z = (z - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor
        decoded = vae.decode(
            z / vae.config.scaling_factor + (vae.config.shift_factor or 0.0)
        ).sample
    expected = pipe.image_processor.postprocess(decoded, output_type="pil")[0]
    assert (vae.config.shift_factor is not None) == name.endswith("flux")
    got = np.asarray(gen.roundtrip([image])[0], dtype=int)
    assert np.abs(got - np.asarray(expected, dtype=int)).max() <= 1  # float rounding only


def test_roundtrip_keeps_a_half_precision_vae(cache: Path) -> None:
    gen = Generator(resolve_generators("tiny-sd21")[0])
    reference = np.asarray(gen.roundtrip([picture(0)])[0], dtype=int)
    gen.inpaint_pipeline.vae.to(torch.bfloat16)
    rebuilt = np.asarray(gen.roundtrip([picture(0)])[0], dtype=int)
    assert gen.inpaint_pipeline.vae.dtype == torch.bfloat16  # restored for the pipeline's calls
    assert np.abs(rebuilt - reference).mean() < 3  # computed in float32 from bf16-rounded weights


def test_sizes_not_a_multiple_are_refused(generators: dict[str, Generator]) -> None:
    flux, sd = generators["tiny-flux"], generators["tiny-sd21"]
    with pytest.raises(
        ValueError, match="tiny-flux: size 136x128 is not a positive multiple of 16"
    ):
        inpaint(flux, size=(136, 128))  # Flux would resize it silently
    with pytest.raises(ValueError, match="multiple of 16"):
        flux.roundtrip([picture(0, 136, 128)])
    with pytest.raises(ValueError, match="multiple of 16"):
        flux.generate(["a cat"], [0], steps=2, guidance=3.0, width=136, height=128)
    assert inpaint(sd, seeds=(0,), size=(136, 128))[0].size == (136, 128)  # fine for SD (8)
    with pytest.raises(ValueError, match="multiple of 8"):
        inpaint(sd, size=(100, 100))


def test_masks_in_other_encodings_are_refused_not_guessed() -> None:
    # checked before any pipeline loads: a fresh Generator never loads here
    gen = Generator(resolve_generators("tiny-sd21")[0])
    base = np.asarray(box_mask())
    cases = {
        "0/1": (Image.fromarray((base > 0).astype(np.uint8)), r"values must be 0 or 255.*0/1 mask"),
        "float": (Image.fromarray((base > 0).astype(np.float32)), "mode F"),
        "rgba alpha": (Image.merge("RGBA", [Image.fromarray(base)] * 4), "mode RGBA"),
        "empty": (Image.new("L", box_mask().size), "mask is empty"),
        "full": (Image.new("L", box_mask().size, 255), "mask is full"),
    }
    for case, (mask, match) in cases.items():
        with pytest.raises(MaskError, match="tiny-sd21: mask 0: .*" + match):
            gen.inpaint([picture(0)], [mask], [""], [0], 2, 3.0)
        assert not gen._pipelines, case


def test_mismatched_batches_are_refused(generators: dict[str, Generator]) -> None:
    gen = generators["tiny-sd21"]
    with pytest.raises(ValueError, match="share a size"):
        gen.inpaint([picture(0), picture(1, 64, 64)], [box_mask()] * 2, ["", ""], [0, 1], 2, 3.0)
    with pytest.raises(ValueError, match="share a size"):
        gen.inpaint([picture(0)], [box_mask(64, 64)], [""], [0], 2, 3.0)
    with pytest.raises(ValueError, match="different lengths"):
        gen.inpaint([picture(0)], [box_mask()], ["", ""], [0], 2, 3.0)
    with pytest.raises(ValueError, match="at least one image"):
        gen.roundtrip([])


def test_strength_none_keeps_the_pipeline_default() -> None:
    """FluxInpaintPipeline's default strength is 0.6; TGIF passed none to the Flux pipelines."""
    spec = resolve_generators("tiny-flux")[0]
    outputs = {}
    for strength in (None, 0.6, 1.0):
        gen = Generator(dataclasses.replace(spec, strength=strength))
        # 4 steps: at 2, strength 0.6 still starts from pure noise (int(2 - 1.2) = 0 skipped).
        outputs[strength] = pixels(gen.inpaint([picture(0)], [box_mask()], ["a cat"], [0], 4, 3.0))
    assert outputs[None] == outputs[0.6]
    assert outputs[None] != outputs[1.0]


class PasteBackInpaintPipeline(diffusers.StableDiffusionInpaintPipeline):
    """The real SD inpainting pipeline, then the source pasted back outside the mask (blending)."""

    def __call__(self, *args, **kwargs):
        out = super().__call__(*args, **kwargs)
        pairs = zip(out.images, kwargs["image"], kwargs["mask_image"], strict=True)
        out.images = [Image.composite(fake, source, mask) for fake, source, mask in pairs]
        return out


def test_pasted_back_source_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        diffusers, "PasteBackInpaintPipeline", PasteBackInpaintPipeline, raising=False
    )
    spec = resolve_generators("tiny-sd21")[0]
    gen = Generator(with_inpaint(spec, "dpgen-tiny/sd21-inpaint", "PasteBackInpaintPipeline"))
    with pytest.raises(FullRegenerationError, match=r"tiny-sd21 \(dpgen-tiny/sd21-inpaint\)"):
        inpaint(gen)


def test_pasted_back_fraction_on_a_real_output(generators: dict[str, Generator]) -> None:
    source, mask = picture(0), box_mask()
    fake = inpaint(generators["tiny-sd21"], seeds=(0,))[0]
    assert pasted_back_fraction(source, fake, mask) < 0.5  # fully regenerated
    assert pasted_back_fraction(source, Image.composite(fake, source, mask), mask) == 1.0
    assert pasted_back_fraction(source, fake, Image.new("L", source.size, 255)) == 0.0  # no outside


def test_flux_fill_loads_with_its_own_class() -> None:
    spec = load_manifest(MANIFEST_DIR / "flux-fill.yaml")
    spec = with_inpaint(
        spec, "dpgen-tiny/flux-fill", "FluxFillPipeline", text2image=None, dtype="float32"
    )
    gen = Generator(spec)
    fakes = inpaint(gen)
    assert type(gen.inpaint_pipeline) is diffusers.FluxFillPipeline
    assert gen.inpaint_pipeline.transformer.config.in_channels == 384
    assert [im.size for im in fakes] == [(W, H)] * 2
    assert gen.roundtrip([picture(0)])[0].size == (W, H)
    with pytest.raises(ValueError, match="names no text2image pipeline"):
        gen.generate(["a cat"], [0], steps=2, guidance=3.0, width=W, height=H)


def test_one_checkpoint_for_both_pipelines_is_loaded_once() -> None:
    """Like FLUX.1 schnell: FluxPipeline and FluxInpaintPipeline on one checkpoint share modules."""
    spec = resolve_generators("tiny-flux")[0]
    spec = dataclasses.replace(
        spec, text2image=PipelineRef("dpgen-tiny/flux-inpaint", "FluxPipeline")
    )
    gen = Generator(spec)
    inpainter, maker = gen.inpaint_pipeline, gen.text2image_pipeline
    assert type(maker) is diffusers.FluxPipeline
    assert maker.transformer is inpainter.transformer and maker.vae is inpainter.vae
    assert gen.generate(["a cat"], [0], steps=2, guidance=3.0, width=W, height=H)[0].size == (W, H)


def test_unload_then_reload(cache: Path) -> None:
    gen = Generator(resolve_generators("tiny-sd21")[0])
    first = gen.inpaint_pipeline
    gen.unload()
    assert gen.inpaint_pipeline is not first
    assert inpaint(gen, seeds=(0,))[0].size == (W, H)


def test_cpu_runs_float32_whatever_the_manifest_says(cache: Path) -> None:
    spec = dataclasses.replace(resolve_generators("tiny-sd21")[0], dtype="float16")
    gen = Generator(spec, device="cpu")
    assert gen.dtype == torch.float32
    assert gen.inpaint_pipeline.unet.dtype == torch.float32


def test_resolve_checkpoint(tmp_path: Path) -> None:
    assert resolve_checkpoint("dpgen-tiny/sd21-inpaint") == str(
        ensure_tiny("dpgen-tiny/sd21-inpaint")
    )
    assert resolve_checkpoint("stabilityai/stable-diffusion-2-inpainting") == (
        "stabilityai/stable-diffusion-2-inpainting"  # a Hub id, for from_pretrained
    )
    folder = ensure_tiny("dpgen-tiny/sd21-inpaint")
    assert resolve_checkpoint(str(folder)) == str(folder)
    with pytest.raises(FileNotFoundError, match="no such pipeline folder"):
        resolve_checkpoint(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no model_index.json"):
        resolve_checkpoint(str(tmp_path))
    with pytest.raises(ValueError, match="unknown tiny checkpoint"):
        resolve_checkpoint("dpgen-tiny/sd15")


def test_bad_checkpoint_or_class_gives_a_clear_error(tmp_path: Path) -> None:
    spec = resolve_generators("tiny-sd21")[0]
    missing = Generator(
        with_inpaint(spec, str(tmp_path / "nope"), "StableDiffusionInpaintPipeline")
    )
    with pytest.raises(FileNotFoundError, match="nope: no such pipeline folder"):
        inpaint(missing)
    broken = tmp_path / "broken"
    shutil.copytree(ensure_tiny("dpgen-tiny/sd21-inpaint"), broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    damaged = Generator(with_inpaint(spec, str(broken), "StableDiffusionInpaintPipeline"))
    with pytest.raises(OSError, match="tiny-sd21.yaml: cannot load StableDiffusionInpaintPipeline"):
        inpaint(damaged)
    wrong = Generator(
        with_inpaint(spec, "dpgen-tiny/sd21-inpaint", "StableDiffusionInpaintPipelin")
    )
    with pytest.raises(ValueError, match="no pipeline class 'StableDiffusionInpaintPipelin'"):
        inpaint(wrong)


@pytest.mark.parametrize("name", TINY)
def test_tiny_calls_leave_no_library_warning(generators: dict[str, Generator], name: str) -> None:
    """The tiny pipelines give diffusers and transformers nothing to warn about.

    Each cause is fixed in `dpgen.tiny`: VAEs without ``force_upcast`` (no float32 cast per call)
    and a T5 context that holds the longest bundled prompt (no truncation).
    """
    from dpgen.sources import load_prompts

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    libraries = [logging.getLogger(n) for n in ("diffusers", "transformers")]
    for lib in libraries:
        lib.addHandler(handler)
    try:
        gen = generators[name]
        prompt = max(load_prompts(None), key=len)
        gen.inpaint([picture(0)], [box_mask()], [prompt], [0], steps=2, guidance=3.0)
        gen.generate([prompt], [0], steps=2, guidance=3.0, width=W, height=H)
    finally:
        for lib in libraries:
            lib.removeHandler(handler)
    assert [r.getMessage() for r in records] == []
