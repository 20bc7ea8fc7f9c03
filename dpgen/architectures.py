"""A pipeline's components built from its configs alone: no weights are read.

Every checkpoint dpgen knows has a diffusers-style config folder: ``model_index.json`` naming each
component's library and class, and one sub-folder per component with its ``config.json`` (models),
``scheduler_config.json`` or ``tokenizer_config.json``. For the real generators these folders ship
in the repository (``manifests/configs/<configs>/<checkpoint>/``, values copied from the published
checkpoints, see manifests/configs/README.md); tiny and local checkpoints are their own config
folders. From such a folder this module instantiates the models

- on the ``meta`` device (`empty_models`), to count their parameters exactly without allocating
  them (`dpgen.plan`), or
- with freshly initialised random weights (`build_model`), for real-size pipelines that need no
  download (`dpgen.random_weights`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import diffusers
import torch
import transformers
from accelerate import init_empty_weights

from dpgen.manifest import CONFIG_DIR, GeneratorSpec, ManifestError
from dpgen.tiny import TINY_PREFIX, ensure_tiny

#: Component kinds in a ``model_index.json``.
MODEL, SCHEDULER, TOKENIZER, OTHER = "model", "scheduler", "tokenizer", "other"


@dataclass(frozen=True)
class Component:
    """One entry of a ``model_index.json``.

    Attributes:
        name: the pipeline's attribute, e.g. ``unet``, ``text_encoder_2``.
        library: ``diffusers`` or ``transformers``; ``None`` for an absent component.
        class_name: e.g. ``UNet2DConditionModel``; ``None`` for an absent component.
        kind: `MODEL`, `SCHEDULER`, `TOKENIZER` or `OTHER` (feature extractors, absent ones).
    """

    name: str
    library: str | None
    class_name: str | None
    kind: str

    @property
    def cls(self) -> type:
        """The component's class."""
        return getattr(diffusers if self.library == "diffusers" else transformers, self.class_name)


def config_folder(spec: GeneratorSpec, role: str) -> Path:
    """The config folder of ``spec``'s ``role`` (``"inpaint"`` or ``"text2image"``) checkpoint.

    With ``spec.configs`` set: ``<configs>/<last part of the checkpoint id>`` (``configs``
    relative to `dpgen.manifest.CONFIG_DIR` unless absolute). Otherwise a tiny checkpoint's
    built folder (built on first use) or a local pipeline folder.

    Raises:
        ManifestError: the role has no pipeline, the folder has no ``model_index.json``, or the
            checkpoint is a Hub id and the manifest names no ``configs``.
    """
    ref = getattr(spec, role)
    where = spec.source or spec.name
    if ref is None:
        raise ManifestError(f"{where}: the manifest names no {role} pipeline")
    if spec.configs is not None:
        base = Path(spec.configs).expanduser()
        base = base if base.is_absolute() else CONFIG_DIR / base
        folder = base / ref.checkpoint.rstrip("/").rsplit("/", 1)[-1]
    elif ref.checkpoint.startswith(TINY_PREFIX):
        folder = ensure_tiny(ref.checkpoint)
    else:
        folder = Path(ref.checkpoint).expanduser()
        if not folder.is_dir():
            raise ManifestError(
                f"{where}: {ref.checkpoint} is a Hub id and the manifest has no `configs` key "
                "naming its component configs (see manifests/configs/README.md)"
            )
    if not (folder / "model_index.json").is_file():
        raise ManifestError(f"{where}: no model_index.json in config folder {folder}")
    return folder


def _kind(library: str | None, class_name: str | None) -> str:
    if library not in ("diffusers", "transformers") or class_name is None:
        return OTHER
    if class_name.endswith(("ImageProcessor", "FeatureExtractor")):
        return OTHER  # never built (no safety checker); importing one can warn
    module = diffusers if library == "diffusers" else transformers
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        return OTHER  # e.g. CLIPFeatureExtractor, gone from transformers 5
    if issubclass(cls, diffusers.ModelMixin | transformers.PreTrainedModel):
        return MODEL
    if issubclass(cls, diffusers.SchedulerMixin):
        return SCHEDULER
    if issubclass(cls, transformers.PreTrainedTokenizerBase):
        return TOKENIZER
    return OTHER


def read_index(folder: Path) -> tuple[list[Component], dict]:
    """The components listed in ``folder/model_index.json`` (sorted by name) and its settings.

    Returns:
        ``(components, settings)``: settings are the other non-underscore keys, e.g.
        ``requires_safety_checker``, ``force_zeros_for_empty_prompt``.
    """
    index = json.loads((folder / "model_index.json").read_text())
    components, settings = [], {}
    for key, value in sorted(index.items()):
        if key.startswith("_"):
            continue
        if isinstance(value, list) and len(value) == 2:
            components.append(Component(key, value[0], value[1], _kind(*value)))
        else:
            settings[key] = value
    return components, settings


def build_model(folder: Path, component: Component) -> torch.nn.Module:
    """Instantiate one model from its config, with the library's default random initialisation.

    Parameters are created on the current default device (a ``torch.device`` context selects
    it) in float32. The global RNG draws them; seed it first for reproducible weights.
    """
    sub = folder / component.name
    cls = component.cls
    if component.library == "diffusers":
        model = cls.from_config(cls.load_config(sub))
    else:
        model = cls(transformers.AutoConfig.from_pretrained(sub))
    return model.eval()


def empty_models(folder: Path) -> dict[str, torch.nn.Module]:
    """Every model of ``folder`` on the ``meta`` device: real shapes, no memory.

    ``include_buffers=True`` makes accelerate build under a ``meta`` device context; its
    default mode re-creates each parameter and breaks transformers' weight tying (T5's encoder
    embedding would be counted twice, 4.89 B instead of 4.76 B parameters).
    """
    components, _ = read_index(folder)
    with init_empty_weights(include_buffers=True):
        return {c.name: build_model(folder, c) for c in components if c.kind == MODEL}


def parameter_count(model: torch.nn.Module) -> int:
    """Number of parameters, each shared (tied) tensor counted once."""
    return sum(p.numel() for p in model.parameters())


def largest_leaf(model: torch.nn.Module) -> int:
    """Parameters of the largest module that holds parameters directly.

    Sequential CPU offload (accelerate hooks on every such module) moves one of them to the
    GPU at a time, so this bounds its resident weights.
    """
    return max(
        (sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules()), default=0
    )
