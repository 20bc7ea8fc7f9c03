"""Tiny random-weight diffusers pipelines: dpgen's embedded default generators.

The manifests ``tiny-sd21``, ``tiny-sdxl`` and ``tiny-flux`` name checkpoints ``dpgen-tiny/<name>``.
Each is a real pipeline of the diffusers class the full-size generator uses (same components, same
call path, same VAE downsampling of 8), with 0.4-1.7 M parameters instead of billions and random
weights drawn from a fixed seed. They are built from configs on first use, with nothing downloaded,
saved with ``save_pretrained`` into the cache, and from then on loaded with ``from_pretrained`` like
any Hub checkpoint, so the whole dpgen pipeline runs offline on a CPU in seconds.

Every component's weights come from its own seed, ``crc32("<family>/<component>")``, so the three
families leave different VAE fingerprints (the signal DiffusionPrint learns), while a family's
text-to-image and inpainting pipelines share their VAE and text encoders, as SD 2.1 and SD 2
inpainting, SDXL base and SDXL inpainting 0.1, and FLUX.1 and FLUX.1 Fill do.

Typical use::

    folder = ensure_tiny("dpgen-tiny/sd21-inpaint")
    pipe = diffusers.StableDiffusionInpaintPipeline.from_pretrained(folder)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import diffusers
import torch
import torch.distributed as dist
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxTransformer2DModel,
    UNet2DConditionModel,
)
from filelock import FileLock
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)

logger = logging.getLogger(__name__)

#: Checkpoints starting with this prefix are built by dpgen instead of loaded from the Hub.
TINY_PREFIX = "dpgen-tiny/"

#: Bumped whenever a config below changes, so that an older cached build is never reused.
#: v3: VAEs without ``force_upcast``, T5 context 256.
BUILD_VERSION = 3

#: Words the tiny tokenizers know as whole tokens: COCO's 80 categories and common caption words.
#: Any other text still tokenizes (into bytes for CLIP, letters for T5), never into unknown tokens.
WORDS = (
    "person bicycle car motorcycle airplane bus train truck boat traffic light fire hydrant stop "
    "sign parking meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack "
    "umbrella handbag tie suitcase frisbee skis snowboard sports ball kite baseball bat glove "
    "skateboard surfboard tennis racket bottle wine glass cup fork knife spoon bowl banana apple "
    "sandwich orange broccoli carrot hot pizza donut cake chair couch potted plant bed dining "
    "table toilet tv laptop mouse remote keyboard cell phone microwave oven toaster sink "
    "refrigerator book clock vase scissors teddy hair drier toothbrush a an the of on in with and "
    "photo image picture man woman people sitting standing next to two white black red blue green "
    "large small street room field water"
).split()

#: CLIP's context length; a tokenizer without it overflows the text encoder.
CLIP_MAX_LENGTH = 77
#: T5 context length of the tiny Flux pipelines: FLUX.1 schnell's 256 (dev uses 512). Prompts
#: split into single letters where the tiny vocabulary lacks a word, so a caption can take 3-4x
#: its word count in tokens: the bundled prompts take at most 43, a long COCO caption about 150.
#: A shorter context truncates them, which diffusers warns about on every call.
T5_MAX_LENGTH = 256


def tiny_cache_dir() -> Path:
    """Where tiny pipelines are cached: ``$DPGEN_CACHE/tiny``, else ``~/.cache/dpgen/tiny``."""
    root = os.environ.get("DPGEN_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "dpgen") / "tiny"


# --- tokenizers -------------------------------------------------------------------------------


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP's reversible map of the 256 byte values to printable characters, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def _bpe(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply BPE merges to one word: always the lowest-ranked adjacent pair first."""
    while len(pieces) > 1:
        pairs = [(ranks.get(pair, len(ranks)), i) for i, pair in enumerate(pairwise(pieces))]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        pieces = [*pieces[:i], pieces[i] + pieces[i + 1], *pieces[i + 2 :]]
    return pieces


def clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary laid out like CLIP's.

    Ids 0-255 are the bytes, 256-511 the bytes ending a word (``</w>``), then one token per merge,
    then ``<|startoftext|>`` and ``<|endoftext|>`` last, as in ``openai/clip-vit-large-patch14``.
    Merges are added until every word of `WORDS` is a single token; each new merge ranks last, so
    it never changes how an earlier word splits.

    Returns:
        ``(vocab, merges)``: token -> id, and the merges in rank order.
    """
    byte_chars = _bytes_to_unicode()
    tokens = byte_chars + [c + "</w>" for c in byte_chars]
    ranks: dict[tuple[str, str], int] = {}
    for word in WORDS:
        pieces = _bpe([*word[:-1], word[-1] + "</w>"], ranks)
        while len(pieces) > 1:
            ranks[(pieces[0], pieces[1])] = len(ranks)
            tokens.append(pieces[0] + pieces[1])
            pieces = _bpe(pieces, ranks)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}, list(ranks)


def write_clip_vocab(folder: Path) -> None:
    """Write the tiny CLIP tokenizer's byte-level ``vocab.json`` and ``merges.txt``."""
    vocab, merges = clip_vocab_and_merges()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n")


def clip_tokenizer() -> CLIPTokenizer:
    """The tiny CLIP tokenizer, loaded from the files `write_clip_vocab` writes.

    ``model_max_length`` goes in ``tokenizer_config.json``: without it the tokenizer does not
    truncate and a long prompt overflows the text encoder's 77 positions.
    """
    with tempfile.TemporaryDirectory() as tmp:
        write_clip_vocab(Path(tmp))
        config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": CLIP_MAX_LENGTH}
        (Path(tmp) / "tokenizer_config.json").write_text(json.dumps(config))
        return CLIPTokenizer.from_pretrained(tmp)


def t5_tokenizer() -> T5TokenizerFast:
    """The tiny T5 (unigram) tokenizer: special tokens, whole words of `WORDS`, then characters.

    Built from ``(piece, log-probability)`` pairs, so it saves a ``tokenizer.json`` and needs no
    ``spiece.model`` (which would need protobuf). Whole words score higher than their letters.
    """
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(f"▁{word}", -4.0) for word in dict.fromkeys(WORDS)]
    pieces += [(char, -8.0) for char in "abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'\"-()"]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=T5_MAX_LENGTH)


# --- components -------------------------------------------------------------------------------


def _seed(family: str, component: str) -> int:
    return zlib.crc32(f"{family}/{component}".encode())


def _seeded(family: str, component: str, make: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """Build a module with weights drawn from its own seed, leaving the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_seed(family, component))
        return make().eval()


def _clip_text(family: str, component: str, tokenizer: CLIPTokenizer, projection: bool = False):
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,  # SDXL reads the penultimate layer
        num_attention_heads=4,
        max_position_embeddings=CLIP_MAX_LENGTH,
        projection_dim=32,
        hidden_act="gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return _seeded(family, component, lambda: cls(config))


def _t5_text(family: str, tokenizer: T5TokenizerFast) -> T5EncoderModel:
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=37,
        num_layers=1,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",  # T5 v1.1, as in FLUX.1
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return _seeded(family, "text_encoder_2", lambda: T5EncoderModel(config))


def _vae(family: str, latent_channels: int, scaling_factor: float, shift_factor: float | None):
    """A 4-block KL autoencoder: 8x downsampling like the real SD/SDXL/Flux VAEs.

    ``force_upcast`` is off: it asks pipelines to cast the VAE to float32 around every encode
    and decode, for VAEs that overflow in float16 (SDXL's). The tiny manifests run in float32
    everywhere, where that cast does nothing but make diffusers warn on every call ("modules in
    AutoencoderKL that should be kept in float32: []").
    """
    flux = shift_factor is not None
    return _seeded(
        family,
        "vae",
        lambda: AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 16, 32, 32),
            layers_per_block=1,
            latent_channels=latent_channels,
            norm_num_groups=8,
            sample_size=256,
            scaling_factor=scaling_factor,
            shift_factor=shift_factor,
            use_quant_conv=not flux,  # the Flux VAE has neither quant conv
            use_post_quant_conv=not flux,
            force_upcast=False,
        ),
    )


def _unet(family: str, component: str, in_channels: int, xl: bool) -> UNet2DConditionModel:
    """A 2-level UNet; 9 input channels for inpainting (latent + mask + masked-image latent)."""
    extra = {}
    if xl:  # SDXL conditions on pooled text and 6 size/crop ids ("text_time")
        extra = {
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 6 * 8 + 32,
            "transformer_layers_per_block": (1, 2),
        }
    return _seeded(
        family,
        component,
        lambda: UNet2DConditionModel(
            sample_size=32,
            in_channels=in_channels,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(32, 64),
            layers_per_block=1,
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            cross_attention_dim=64 if xl else 32,  # SDXL concatenates its two text encoders
            **extra,
        ),
    )


def _flux_transformer(family: str, component: str, in_channels: int, guidance: bool):
    """1 double + 1 single block, head dim 16 = rope axes 4 + 6 + 6."""
    return _seeded(
        family,
        component,
        lambda: FluxTransformer2DModel(
            in_channels=in_channels,
            out_channels=64,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            guidance_embeds=guidance,
            axes_dims_rope=(4, 6, 6),
        ),
    )


# --- pipelines --------------------------------------------------------------------------------


def _sd21(inpaint: bool) -> DiffusionPipeline:
    tokenizer = clip_tokenizer()
    components = dict(
        vae=_vae("sd21", 4, 0.18215, None),
        text_encoder=_clip_text("sd21", "text_encoder", tokenizer),
        tokenizer=tokenizer,
        unet=_unet("sd21", "unet-inpaint" if inpaint else "unet", 9 if inpaint else 4, xl=False),
        # SD 2.1 predicts v, SD 2 inpainting predicts noise.
        scheduler=DDIMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
            prediction_type="epsilon" if inpaint else "v_prediction",
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if inpaint:
        return diffusers.StableDiffusionInpaintPipeline(**components)
    return diffusers.StableDiffusionPipeline(**components)


def _sdxl(inpaint: bool) -> DiffusionPipeline:
    tokenizer = clip_tokenizer()
    components = dict(
        vae=_vae("sdxl", 4, 0.13025, None),
        text_encoder=_clip_text("sdxl", "text_encoder", tokenizer),
        text_encoder_2=_clip_text("sdxl", "text_encoder_2", tokenizer, projection=True),
        tokenizer=tokenizer,
        tokenizer_2=clip_tokenizer(),
        unet=_unet("sdxl", "unet-inpaint" if inpaint else "unet", 9 if inpaint else 4, xl=True),
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            steps_offset=1,
            timestep_spacing="leading",
        ),
    )
    if inpaint:
        return diffusers.StableDiffusionXLInpaintPipeline(
            **components, requires_aesthetics_score=False
        )
    return diffusers.StableDiffusionXLPipeline(**components)


def _flux(kind: str) -> DiffusionPipeline:
    """FLUX.1-like pipelines. ``kind``: "text2image", "inpaint" (same transformer), or "fill"."""
    tokenizer, tokenizer_2 = clip_tokenizer(), t5_tokenizer()
    fill = kind == "fill"
    components = dict(
        vae=_vae("flux", 16, 0.3611, 0.1159),
        text_encoder=_clip_text("flux", "text_encoder", tokenizer),
        tokenizer=tokenizer,
        text_encoder_2=_t5_text("flux", tokenizer_2),
        tokenizer_2=tokenizer_2,
        # Fill sees 64 latent + 64 masked-image latent + 256 mask channels (8x8 mask pixels per
        # 2x2 latent patch). Guidance embedding as in FLUX.1 dev, so the manifest's guidance acts.
        transformer=_flux_transformer(
            "flux", "transformer-fill" if fill else "transformer", 384 if fill else 64, True
        ),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False),
    )
    cls = {
        "text2image": diffusers.FluxPipeline,
        "inpaint": diffusers.FluxInpaintPipeline,
        "fill": diffusers.FluxFillPipeline,
    }[kind]
    return cls(**components)


#: Tiny pipeline name -> builder.
BUILDERS: dict[str, Callable[[], DiffusionPipeline]] = {
    "sd21-text2image": lambda: _sd21(inpaint=False),
    "sd21-inpaint": lambda: _sd21(inpaint=True),
    "sdxl-text2image": lambda: _sdxl(inpaint=False),
    "sdxl-inpaint": lambda: _sdxl(inpaint=True),
    "flux-text2image": lambda: _flux("text2image"),
    "flux-inpaint": lambda: _flux("inpaint"),
    "flux-fill": lambda: _flux("fill"),
}


def _name(checkpoint: str) -> str:
    name = checkpoint.removeprefix(TINY_PREFIX)
    if not checkpoint.startswith(TINY_PREFIX) or name not in BUILDERS:
        known = ", ".join(TINY_PREFIX + n for n in BUILDERS)
        raise ValueError(f"unknown tiny checkpoint {checkpoint!r}; known: {known}")
    return name


def build_tiny(checkpoint: str) -> DiffusionPipeline:
    """Build a tiny pipeline in memory (deterministic: same name, same weights).

    Args:
        checkpoint: ``dpgen-tiny/<name>`` or just ``<name>``, e.g. ``sd21-inpaint``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if not checkpoint.startswith(TINY_PREFIX):
        checkpoint = TINY_PREFIX + checkpoint
    return BUILDERS[_name(checkpoint)]()


def ensure_tiny(checkpoint: str) -> Path:
    """The folder of tiny pipeline ``dpgen-tiny/<name>``, built and saved there on first use.

    Safe when several processes (e.g. accelerate ranks) ask at once: a file lock lets one build,
    into a temporary folder that is renamed into place only when complete, so a folder that
    exists is always whole.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    name = _name(checkpoint)
    root = tiny_cache_dir() / f"v{BUILD_VERSION}"
    folder = root / name
    if folder.is_dir():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{name}.lock")):
        if folder.is_dir():  # another process built it while we waited
            return folder
        if dist.is_available() and dist.is_initialized() and dist.get_rank() != 0:
            # transformers' save_pretrained writes nothing on a rank other than 0: the folder
            # would be renamed into place with empty text encoders.
            raise RuntimeError(
                f"{TINY_PREFIX}{name} is not in {root}: build tiny pipelines on rank 0 first "
                "(dpgen build does, with main_process_first)"
            )
        logger.info("building tiny pipeline %s%s into %s", TINY_PREFIX, name, folder)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
        try:
            pipe = BUILDERS[name]()
            pipe.save_pretrained(tmp)
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
            for sub, component in pipe.components.items():
                if isinstance(component, CLIPTokenizer):
                    # Ship the byte-level files next to tokenizer.json, like a real CLIP folder.
                    write_clip_vocab(tmp / sub)
            tmp.rename(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return folder
