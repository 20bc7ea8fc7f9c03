"""One loading and calling path for every generator, real (Hub or local folder) or tiny.

`Generator` wraps the diffusers pipelines a `GeneratorSpec` names and exposes the three calls dpgen
makes (paper Sec. 3.1): inpaint a batch of images under their masks, generate source images from
text, and round-trip real images through the VAE (the linear probe's "latent-reconstructed real"
class, Sec. 4.1). All calls take and return RGB PIL images of one size, which must be a multiple
of the spec's ``size_multiple``; outputs have exactly the input size.

DiffusionPrint learns the fingerprint the VAE decoder leaves on every pixel, so an inpainting must
be fully regenerated: a pipeline (or option) that pastes the source back outside the mask makes
the outside-mask patches identical to the real ones and is refused with `FullRegenerationError`.
"""

from __future__ import annotations

import gc
import inspect
import logging
from pathlib import Path

import diffusers
import numpy as np
import torch
import transformers
from diffusers import DiffusionPipeline
from PIL import Image

from dpgen.errors import InputError
from dpgen.manifest import GeneratorSpec, PipelineRef
from dpgen.masks import check_mask_image
from dpgen.random_weights import RANDOM_WEIGHTS, random_pipeline
from dpgen.tiny import TINY_PREFIX, ensure_tiny

logger = logging.getLogger(__name__)

#: An inpainting whose outside-mask pixels equal the source's in at least this fraction was
#: pasted back, not regenerated. A VAE decode changes nearly every pixel by at least one level.
PASTE_BACK_FRACTION = 0.99

#: ``--offload``: diffusers' CPU offload of a pipeline's modules; ``auto`` picks the least that
#: fits the device (`resolve_offload`).
OFFLOAD_MODES = ("auto", "none", "model", "sequential")

#: What `Generator.weights` says for pipelines loaded from their checkpoints.
PRETRAINED_WEIGHTS = "pretrained"

#: Longest T5 prompt the Flux pipelines accept (and their default).
FLUX_MAX_SEQUENCE_LENGTH = 512


class FullRegenerationError(InputError):
    """An inpainting pipeline returned the source untouched outside the mask.

    dpgen needs every pixel to pass through the VAE decoder: a blending or paste-back option
    gives spliced images, whose outside-mask patches are real ones.
    """


def resolve_checkpoint(checkpoint: str) -> str:
    """What to hand ``from_pretrained``: a tiny pipeline's folder (built on first use), else as is.

    Args:
        checkpoint: ``dpgen-tiny/<name>``, a local pipeline folder, or a Hub repo id.

    Raises:
        ValueError: an unknown tiny name, or an existing folder that is not a diffusers pipeline.
        FileNotFoundError: a path (absolute, or starting with ``.`` or ``~``) that does not exist.
    """
    if checkpoint.startswith(TINY_PREFIX):
        return str(ensure_tiny(checkpoint))
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ValueError(
                f"{checkpoint}: not a diffusers pipeline folder (no model_index.json); "
                "save one with pipeline.save_pretrained(folder)"
            )
        return str(path)
    if path.is_absolute() or checkpoint.startswith((".", "~")):
        raise FileNotFoundError(f"{checkpoint}: no such pipeline folder")
    return checkpoint  # a Hub repo id


def _check_batch(images: list[Image.Image], multiple: int, what: str, name: str) -> tuple[int, int]:
    """The common (width, height) of ``images``; it must be a multiple of ``multiple``."""
    if not images:
        raise ValueError(f"{name}: {what} needs at least one image")
    sizes = {im.size for im in images}
    if len(sizes) != 1:
        raise ValueError(f"{name}: all images of one {what} call must share a size, got {sizes}")
    width, height = sizes.pop()
    _check_size(width, height, multiple, name)
    return width, height


def _check_size(width: int, height: int, multiple: int, name: str) -> None:
    # SD raises on such sizes, Flux silently resizes (and the mask no longer aligns): refuse both.
    if width % multiple or height % multiple or width <= 0 or height <= 0:
        raise ValueError(
            f"{name}: size {width}x{height} is not a positive multiple of {multiple}; crop first"
        )


def _check_lengths(name: str, **lists: list) -> None:
    lengths = {key: len(value) for key, value in lists.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{name}: lists of different lengths {lengths}")


def _seeded_generators(seeds: list[int]) -> list[torch.Generator]:
    # CPU generators: the initial noise of a seed is the same on every device.
    return [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]


def resolve_offload(spec: GeneratorSpec, device: torch.device, requested: str) -> str:
    """The offload mode a pipeline is placed with: ``none`` on a CPU (nothing to offload to),
    else ``requested``, with ``auto`` resolved to the least that the generator's memory plan
    (`dpgen.plan`) says fits the device's free memory; the choice is logged."""
    if device.type != "cuda":
        return "none"
    if requested != "auto":
        return requested
    from dpgen.plan import choose_offload, plan_generator  # reads the shipped configs

    free, _ = torch.cuda.mem_get_info(device)
    mode = choose_offload(plan_generator(spec), free)
    logger.info("%s: offload %s (%.1f GB free on %s)", spec.name, mode, free / 1e9, device)
    return mode


def pasted_back_fraction(source: Image.Image, output: Image.Image, mask: Image.Image) -> float:
    """Fraction of the pixels outside ``mask`` where ``output`` equals ``source`` exactly.

    Args:
        source, output: RGB images of one size.
        mask: L image, inpainted where >= 128 (the pipelines binarise at 0.5).

    Returns:
        A value in [0, 1]; 0 when the mask covers the whole image.
    """
    outside = np.asarray(mask.convert("L")) < 128
    if not outside.any():
        return 0.0
    same = (np.asarray(source.convert("RGB")) == np.asarray(output.convert("RGB"))).all(axis=-1)
    return float(same[outside].mean())


class Generator:
    """The pipelines of one generator, loaded on first use.

    Args:
        spec: the generator's manifest.
        device: where to run. CUDA runs in ``spec.dtype``; CPU always in float32 (half precision
            is slow or unsupported there).
        random_weights: build each pipeline at real size from the manifest's configs with random
            weights (`dpgen.random_weights`) instead of loading its checkpoint: no download, for
            benchmarks and GPU smoke runs. `provenance` then says ``weights: random``.

    Example::

        gen = Generator(resolve_generators("tiny-sd21")[0])
        fakes = gen.inpaint(images, masks, prompts, seeds=[0, 1], steps=2, guidance=3.0)
    """

    def __init__(
        self,
        spec: GeneratorSpec,
        device: str | torch.device = "cpu",
        offload: str = "none",
        vae_tiling: bool = False,
        random_weights: bool = False,
    ) -> None:
        if offload not in OFFLOAD_MODES:
            raise ValueError(f"offload must be one of {OFFLOAD_MODES}, got {offload!r}")
        self.spec = spec
        self.device = torch.device(device)
        self.offload = offload
        self.vae_tiling = vae_tiling
        self.random_weights = random_weights
        if self.device.type == "cuda":
            self.dtype = getattr(torch, spec.dtype)
        else:
            self.dtype = torch.float32
            if spec.dtype != "float32":
                logger.info(
                    "%s: running in float32 on %s (manifest: %s)", spec.name, device, spec.dtype
                )
        self._pipelines: dict[str, DiffusionPipeline] = {}

    # --- loading ------------------------------------------------------------------------------

    @property
    def inpaint_pipeline(self) -> DiffusionPipeline:
        """The inpainting pipeline, loaded on first use."""
        return self._pipeline("inpaint")

    @property
    def text2image_pipeline(self) -> DiffusionPipeline:
        """The text-to-image pipeline, loaded on first use.

        Raises:
            ValueError: if the spec has none.
        """
        if self.spec.text2image is None:
            raise ValueError(f"{self.spec.name}: the manifest names no text2image pipeline")
        return self._pipeline("text2image")

    def _pipeline(self, role: str) -> DiffusionPipeline:
        if role not in self._pipelines:
            self._pipelines[role] = self._load(role)
        return self._pipelines[role]

    def _load(self, role: str) -> DiffusionPipeline:
        ref: PipelineRef = getattr(self.spec, role)
        cls = getattr(diffusers, ref.pipeline, None)
        if cls is None:
            raise ValueError(
                f"{self.spec.source}: diffusers has no pipeline class {ref.pipeline!r}"
            )
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        other = "text2image" if role == "inpaint" else "inpaint"
        loaded = self._pipelines.get(other)
        if loaded is not None and getattr(self.spec, other).checkpoint == ref.checkpoint:
            # One checkpoint for both (FLUX.1 schnell): share its modules instead of a second copy.
            logger.info("%s: %s shares the modules of %s", self.spec.name, ref.pipeline, other)
            pipe = cls.from_pipe(loaded)
        elif self.random_weights:
            mode = resolve_offload(self.spec, self.device, self.offload)
            # built where it will run; offloaded ones are built on the CPU, then offloaded
            built_on = self.device if mode == "none" else torch.device("cpu")
            pipe = random_pipeline(self.spec, role, dtype=self.dtype, device=built_on)
            self._place(pipe, mode)
        else:
            logger.info("%s: loading %s from %s", self.spec.name, ref.pipeline, ref.checkpoint)
            path = resolve_checkpoint(ref.checkpoint)  # raises its own clear errors
            try:
                pipe = cls.from_pretrained(path, dtype=self.dtype)
            except OSError as err:  # e.g. a Hub id that is neither cached nor reachable
                raise OSError(
                    f"{self.spec.source}: cannot load {ref.pipeline} from {ref.checkpoint!r}: {err}"
                ) from err
            self._place(pipe, resolve_offload(self.spec, self.device, self.offload))
        if self.vae_tiling:
            pipe.vae.enable_tiling()
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _place(self, pipe: DiffusionPipeline, mode: str) -> None:
        """Move the pipeline to the device, or let diffusers offload it there module by module."""
        if mode == "model":
            pipe.enable_model_cpu_offload(device=self.device)
        elif mode == "sequential":
            pipe.enable_sequential_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)

    def load(self, role: str) -> DiffusionPipeline:
        """Load the ``inpaint`` or ``text2image`` pipeline now (it is kept until released)."""
        if role not in ("inpaint", "text2image"):
            raise ValueError(f"role must be 'inpaint' or 'text2image', got {role!r}")
        return self.inpaint_pipeline if role == "inpaint" else self.text2image_pipeline

    def release(self, role: str) -> None:
        """Drop one pipeline. A checkpoint shared by both roles (FLUX.1 schnell) keeps its
        modules for the other role, which is loaded first from this one (no second load)."""
        other = "text2image" if role == "inpaint" else "inpaint"
        ref, other_ref = getattr(self.spec, role), getattr(self.spec, other)
        if other_ref is not None and ref.checkpoint == other_ref.checkpoint:
            self._pipeline(other)  # shares the modules (from_pipe) before they are dropped
        self._pipelines.pop(role, None)
        self._free_device_memory()

    @property
    def weights(self) -> str:
        """``"random"`` for `random_weights` pipelines, else ``"pretrained"`` (the checkpoint's)."""
        return RANDOM_WEIGHTS if self.random_weights else PRETRAINED_WEIGHTS

    def provenance(self) -> dict:
        """The resolved manifest plus where the weights came from, for a build's provenance."""
        return {**self.spec.to_dict(), "weights": self.weights}

    def unload(self) -> None:
        """Free the pipelines (they reload on the next call)."""
        self._pipelines.clear()
        self._free_device_memory()

    def _free_device_memory(self) -> None:
        """Give a GPU's memory back before the next pipeline loads. Modules in reference
        cycles (diffusers' offload hooks) wait for the collector, so collect first; on a CPU
        the memory returns as references drop, and a full collection of a large heap costs
        most of a second for nothing."""
        if self.device.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()

    def _text_kwargs(self, pipe: DiffusionPipeline) -> dict:
        """Prompt-length argument for pipelines with a T5 encoder: its tokenizer's own limit."""
        if "max_sequence_length" not in inspect.signature(pipe.__call__).parameters:
            return {}
        limit = min(FLUX_MAX_SEQUENCE_LENGTH, pipe.tokenizer_2.model_max_length)
        return {"max_sequence_length": limit}

    # --- calls --------------------------------------------------------------------------------

    @torch.no_grad()
    def inpaint(
        self,
        images: list[Image.Image],
        masks: list[Image.Image],
        prompts: list[str],
        seeds: list[int],
        steps: int,
        guidance: float,
    ) -> list[Image.Image]:
        """Inpaint ``images`` under ``masks`` in one batched pipeline call.

        Args:
            images: RGB sources of one size (W, H), multiples of ``spec.size_multiple``.
            masks: L masks of that size, 255 where to inpaint, 0 elsewhere.
            prompts: one prompt per image ("" for none).
            seeds: one seed per image (its initial noise).
            steps: denoising steps. With a strength s < 1 the pipeline runs about s * steps.
            guidance: guidance scale (classifier-free for SD/SDXL, embedded for Flux dev/Fill).

        Returns:
            RGB images of size (W, H), fully regenerated by the VAE decoder.

        Raises:
            ValueError: mismatched lists or sizes, or a size not a multiple of the spec's.
            dpgen.masks.MaskError: a mask that is not L 0/255, or is empty or full.
            FullRegenerationError: the pipeline returned the source outside a mask.
        """
        name = self.spec.name
        _check_lengths(name, images=images, masks=masks, prompts=prompts, seeds=seeds)
        width, height = _check_batch([*images, *masks], self.spec.size_multiple, "inpaint", name)
        for i, mask in enumerate(masks):
            check_mask_image(mask, f"{name}: mask {i}")
        images = [im.convert("RGB") for im in images]
        masks = [m.convert("L") for m in masks]
        pipe = self.inpaint_pipeline
        kwargs = {}
        if (
            self.spec.strength is not None
        ):  # None keeps the pipeline's default, as TGIF did for Flux
            kwargs["strength"] = self.spec.strength
        outputs = pipe(
            prompt=list(prompts),
            image=images,
            mask_image=masks,
            width=width,
            height=height,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=_seeded_generators(seeds),
            output_type="pil",
            **kwargs,
            **self._text_kwargs(pipe),
        ).images
        for source, output, mask in zip(images, outputs, masks, strict=True):
            if output.size != (width, height):
                raise RuntimeError(
                    f"{name}: pipeline returned {output.size}, not {(width, height)}"
                )
            if pasted_back_fraction(source, output, mask) >= PASTE_BACK_FRACTION:
                raise FullRegenerationError(
                    f"{name} ({self.spec.inpaint.checkpoint}): {type(pipe).__name__} returned the "
                    "source unchanged outside the mask; dpgen needs fully regenerated images "
                    "(remove any paste-back or blending option)"
                )
        return [im.convert("RGB") for im in outputs]

    @torch.no_grad()
    def generate(
        self,
        prompts: list[str],
        seeds: list[int],
        steps: int,
        guidance: float,
        width: int,
        height: int,
    ) -> list[Image.Image]:
        """Generate one image per prompt with the text-to-image pipeline, in one call.

        Returns:
            RGB images of size (width, height).

        Raises:
            ValueError: the spec has no text2image pipeline, mismatched lists, or a size not a
                multiple of the spec's.
        """
        name = self.spec.name
        _check_lengths(name, prompts=prompts, seeds=seeds)
        _check_size(width, height, self.spec.size_multiple, name)
        pipe = self.text2image_pipeline
        outputs = pipe(
            prompt=list(prompts),
            width=width,
            height=height,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=_seeded_generators(seeds),
            output_type="pil",
            **self._text_kwargs(pipe),
        ).images
        return [im.convert("RGB") for im in outputs]

    @torch.no_grad()
    def roundtrip(self, images: list[Image.Image]) -> list[Image.Image]:
        """Encode and decode ``images`` through the inpainting pipeline's VAE (deterministic).

        The latent is the mode (mean) of the encoder's distribution, taken into the space the
        denoiser works in (``(z - shift_factor) * scaling_factor``, the shift only for Flux) and
        back, exactly as the pipeline decodes. The VAE runs in float32: SDXL's VAE overflows in
        float16 (its pipelines upcast it too).

        Args:
            images: RGB images of one size, multiples of ``spec.size_multiple``.

        Returns:
            RGB images of the same size, rounded to the nearest uint8 level.
        """
        _check_batch(images, self.spec.size_multiple, "roundtrip", self.spec.name)
        vae = self.inpaint_pipeline.vae
        scale = vae.config.scaling_factor
        shift = vae.config.shift_factor or 0.0
        pixels = np.stack([np.asarray(im.convert("RGB")) for im in images])  # (B, H, W, 3) uint8
        x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        dtype = vae.dtype
        if dtype != torch.float32:
            vae.to(torch.float32)
        try:
            latents = vae.encode(x.to(self.device)).latent_dist.mode()
            latents = (latents - shift) * scale
            decoded = vae.decode(latents / scale + shift).sample
        finally:
            if dtype != torch.float32:
                vae.to(dtype)  # the pipeline's own calls expect its dtype
        # Same pixel conversion as the pipelines' VaeImageProcessor.postprocess.
        decoded = (decoded / 2 + 0.5).clamp(0, 1).mul(255).round().to(torch.uint8)
        return [Image.fromarray(a) for a in decoded.permute(0, 2, 3, 1).cpu().numpy()]
