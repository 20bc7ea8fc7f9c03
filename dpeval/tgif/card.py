"""The fine-tuned localizer as a shareable model: saved with a card holding its F1 tables
(`save_localizer`), loaded back strictly with one-line errors (`load_localizer`, what
`dpeval localize` uses), and uploaded to the Hub (`push_to_hub`)."""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from dpeval import modelfolder
from dpeval.tgif.lite_baseline import LiteBaseline
from dpeval.tgif.report import markdown_table
from dpgen.errors import InputError
from dptrain import card as dptrain_card

#: What a localizer folder holds and what `push_to_hub` uploads.
MODEL_FILES = ("model.safetensors", "config.json", "README.md")
TAGS = ["image-forensics", "inpainting-localization", "diffusionprint", "lite-baseline"]


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a valid Hub model id.

    Raises:
        InputError: naming ``--hub-model-id``.
    """
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise InputError(f"--hub-model-id: {repo_id!r} is not a valid repo id ({err})") from None
    return repo_id


def card_text(results: dict) -> str:
    """The model card: metadata, usage, the F1 tables on TGIF's test split, the training."""
    decoder = results.get("decoder", "mlp")
    tags = TAGS + (["diffiml"] if decoder == "diffiml" else [])
    data = ModelCardData(library_name="diffusionprint", license="apache-2.0", tags=tags)
    training = results["training"]
    config = training.get("config", {})
    return f"""---
{data.to_yaml()}
---

# Lite Baseline localizer with a frozen `{results["extractor"]}` extractor

A fusion localizer (SegFormer RGB encoder `{results["rgb_encoder"]}`, init
`{results["rgb_encoder_init"]}`, + the frozen forensic extractor, paper Sec. 4.3) fine-tuned by
`dpeval tgif` on TGIF's FR semantic training split. It maps an RGB image to the probability that
each pixel was painted by diffusion inpainting. {_decoder_text(results)}

```python
import torch
from dpeval.tgif.lite_baseline import LiteBaseline

model = LiteBaseline.from_pretrained("path/or/repo").eval()
with torch.no_grad():  # (B, 3, H, W) RGB pixels 0..255 -> (B, 1, H, W) in [0, 1]
    probs = model.probabilities(images, generator=torch.Generator().manual_seed(0))
```
```bash
dpeval localize --model path/or/repo photo.jpg --out maps/
```

## F1 on TGIF's test split (fake images, mean per image, threshold 0.5)

Data: `{results["data"]}`. Each table names its convention (see `docs/f1.md`).

{markdown_table(results)}
## Training

Validation-best step {training["best_step"]} of {training["steps"]} (TGIF F1 on the validation
split {training["best_val_f1"]:.4f}); crops {config.get("crop_size")}, effective batch
{config.get("effective_batch")}, SGD lr {config.get("lr")}, seed {config.get("seed")}.

<details><summary>Full configuration</summary>

```json
{json.dumps(config, indent=2)}
```

</details>
"""


def _decoder_text(results: dict) -> str:
    """One sentence on the decoder and, for DiffIML, its sampling settings."""
    settings = results.get("decoder_config") or {}
    if results.get("decoder", "mlp") != "diffiml":
        return "Decoder: SegFormer's All-MLP head (the paper's); `model(images)` gives logits."
    return (
        "Decoder: DiffIML's conditional diffusion decoder over LightVAE mask latents, sampling "
        f"{settings.get('num_inference_steps')} DDIM steps x {settings.get('ensemble')} noise "
        f"draws, flip TTA {'on' if settings.get('flip_tta') else 'off'}; the generator seeds "
        "the noise."
    )


def save_localizer(model: LiteBaseline, folder: str | Path, results: dict) -> Path:
    """``save_pretrained`` into ``folder`` (config.json, model.safetensors) and the card.

    Returns:
        The folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").unlink(missing_ok=True)  # the mixin would keep an old card
    model.save_pretrained(folder)
    ModelCard(card_text(results)).save(folder / "README.md")
    return folder


def load_localizer(spec: str, device: str = "cpu") -> LiteBaseline:
    """A localizer from a folder or Hub id, every weight present (``strict``), in eval mode.

    Raises:
        InputError: naming ``spec``, when it is not a loadable localizer.
    """
    path = modelfolder.check_folder(spec, modelfolder.LOCALIZER)  # None for a Hub id
    try:
        model = LiteBaseline.from_pretrained(str(path) if path else spec, strict=True)
    except Exception as err:  # offline Hub, wrong keys, corrupt weights: one clear line
        reason = " ".join(str(err).split())
        raise InputError(f"{spec}: cannot load a LiteBaseline localizer: {reason}") from None
    return model.eval().to(device)


def push_to_hub(folder: str | Path, repo_id: str, api: HfApi | None = None) -> str:
    """Upload `MODEL_FILES` of ``folder`` to the Hub model repo ``repo_id`` (created if needed).

    Returns:
        The repo URL.
    """
    return dptrain_card.push_to_hub(
        folder, repo_id, api or HfApi(), MODEL_FILES, "Upload Lite Baseline localizer (dpeval tgif)"
    )
