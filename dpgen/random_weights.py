"""Real-size pipelines with random weights, built offline from the shipped configs.

`random_pipeline` gives a generator's text-to-image or inpainting pipeline of the manifest's
diffusers class, every model instantiated from the checkpoint's published config (the
architecture, parameter count and compute of the real one) with random weights, and tokenizers
built offline by `dpgen.tiny` (a small vocabulary indexes the first rows of the real-size
embedding table; the maximum lengths are the real ones, 77 for CLIP and 512 for T5). Nothing is
downloaded. Its images are noise: it exists for benchmarks and GPU smoke runs, never for data, and
`dpgen.pipelines.Generator` marks everything it makes that way (``weights: random``).

Weights are deterministic: each model draws them from its own seed,
``crc32("<checkpoint>/<component>")``, so every process of a multi-GPU run builds the same ones.
"""

from __future__ import annotations

import inspect
import json
import logging
import zlib
from pathlib import Path

import diffusers
import torch
from diffusers import DiffusionPipeline
from transformers import CLIPTokenizer, PreTrainedTokenizerBase

from dpgen.architectures import MODEL, SCHEDULER, TOKENIZER, build_model, config_folder, read_index
from dpgen.manifest import GeneratorSpec, ManifestError
from dpgen.tiny import clip_tokenizer, t5_tokenizer

logger = logging.getLogger(__name__)

#: What `dpgen.pipelines.Generator` records as its weights when built here.
RANDOM_WEIGHTS = "random"


def weight_seed(checkpoint: str, component: str) -> int:
    """The seed a checkpoint's component draws its random weights from."""
    return zlib.crc32(f"{checkpoint}/{component}".encode())


def offline_tokenizer(class_name: str, folder: Path) -> PreTrainedTokenizerBase:
    """A tokenizer of the class a checkpoint names, built without its vocabulary files.

    Args:
        class_name: ``CLIPTokenizer`` or ``T5TokenizerFast`` (the classes dpgen's generators use).
        folder: the component's config folder; ``model_max_length`` and ``pad_token`` are read
            from its ``tokenizer_config.json`` when present.

    Raises:
        ManifestError: for another tokenizer class.
    """
    if class_name in ("CLIPTokenizer", "CLIPTokenizerFast"):
        tokenizer: PreTrainedTokenizerBase = clip_tokenizer()
    elif class_name in ("T5TokenizerFast", "T5Tokenizer"):
        tokenizer = t5_tokenizer()
    else:
        raise ManifestError(f"{folder}: no offline tokenizer for class {class_name!r}")
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    if "model_max_length" in config:
        tokenizer.model_max_length = int(config["model_max_length"])
    if isinstance(config.get("pad_token"), str) and isinstance(tokenizer, CLIPTokenizer):
        tokenizer.pad_token = config["pad_token"]  # SDXL's second tokenizer pads with "!"
    return tokenizer


def _seeded_model(folder: Path, component, seed: int, dtype: torch.dtype, device: torch.device):
    # fork_rng: the global RNG is untouched, so a caller's seeded draws do not depend on this.
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), device:
        torch.manual_seed(seed)
        model = build_model(folder, component)
    if dtype == torch.float32:
        return model
    if getattr(model, "_keep_in_fp32_modules", None):
        return model.to(dtype)  # the library's own cast keeps those modules in float32
    return torch.nn.Module.to(model, dtype)  # diffusers' `to` warns about an empty list


def random_components(
    spec: GeneratorSpec, role: str, dtype: torch.dtype, device: torch.device
) -> dict:
    """The pipeline components of ``spec``'s ``role`` checkpoint, models with random weights.

    Absent components and feature extractors are ``None``; the ``model_index.json`` settings
    (e.g. ``requires_safety_checker``) are included.
    """
    ref = getattr(spec, role)
    folder = config_folder(spec, role)
    components, settings = read_index(folder)
    built: dict = dict(settings)
    for c in components:
        if c.kind == MODEL:
            seed = weight_seed(ref.checkpoint, c.name)
            built[c.name] = _seeded_model(folder, c, seed, dtype, device)
        elif c.kind == SCHEDULER:
            built[c.name] = c.cls.from_config(c.cls.load_config(folder / c.name))
        elif c.kind == TOKENIZER:
            built[c.name] = offline_tokenizer(c.class_name, folder / c.name)
        else:
            built[c.name] = None
    return built


def random_pipeline(
    spec: GeneratorSpec,
    role: str,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> DiffusionPipeline:
    """``spec``'s ``role`` pipeline at real size, with random weights, built offline.

    Args:
        spec: a manifest with ``configs`` (or a tiny / local checkpoint, whose folder has them).
        role: ``"inpaint"`` or ``"text2image"``.
        dtype: the models' dtype. They are initialised in float32, then cast.
        device: where the weights are created (building on the GPU is much faster than on the
            CPU; build on the CPU for CPU offload). The pipeline is not moved afterwards.

    Returns:
        An instance of ``getattr(diffusers, spec.<role>.pipeline)``.

    Raises:
        ManifestError: no config folder, or a component the configs cannot build.
    """
    ref = getattr(spec, role)
    if ref is None:
        raise ManifestError(f"{spec.source or spec.name}: the manifest names no {role} pipeline")
    cls = getattr(diffusers, ref.pipeline)
    components = random_components(spec, role, dtype, torch.device(device))
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in components.items() if k in accepted}
    for name, param in accepted.items():  # e.g. safety_checker, absent from SDXL's configs
        if name != "self" and param.default is inspect.Parameter.empty and name not in kwargs:
            kwargs[name] = None
    logger.info("%s: built %s with random weights (%s)", spec.name, ref.pipeline, ref.checkpoint)
    return cls(**kwargs)
