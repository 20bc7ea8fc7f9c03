"""Check a local model folder before ``from_pretrained``, and name the model it holds.

Every model of the toolkit is saved by `dptrain.hub.HubMixin` as ``config.json`` (its init
arguments) and ``model.safetensors``. ``from_pretrained`` on a folder that is not such a model
fails late and names the wrong file (a missing ``model.safetensors`` after a warning about
``config.json``, or an ``__init__`` missing arguments when the folder holds another model).
`check_folder` reads only ``config.json`` and says in one line what is wrong: no such folder, a
file, no ``config.json``, another model of the toolkit (told apart by its config keys,
`KINDS`), or no weights. A spec that names no local path and is a valid Hub id (``owner/name``)
is left to ``from_pretrained``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub.utils import HFValidationError, validate_repo_id

from dpgen.errors import InputError

CONFIG = "config.json"
WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class Kind:
    """A model of the toolkit as its folder shows it.

    Attributes:
        name: what it is, with its article ("a DiffusionPrint extractor").
        folder: what its folder is called in messages ("a DiffusionPrint model folder").
        keys: config keys that together identify it (every one present).
        hint: how to make one, for messages.
    """

    name: str
    folder: str
    keys: frozenset[str]
    hint: str


DIFFUSIONPRINT = Kind(
    "a DiffusionPrint extractor",
    "a DiffusionPrint model folder",
    frozenset({"out_channels", "embed_dim", "proj_hidden"}),
    "train one with dptrain",
)
LOCALIZER = Kind(
    "a localizer",
    "a localizer folder",
    frozenset({"rgb_encoder_config", "extractor_config"}),
    "train one with dpeval tgif (OUTPUT/best)",
)
LIGHTVAE = Kind(
    "a LightVAE",
    "a LightVAE folder",
    frozenset({"latent_channels", "base_channels"}),
    "train one with dpeval lightvae",
)
FINGERPRINT = Kind(
    "a fingerprint",
    "a fingerprint folder",
    frozenset({"mu_real", "mu_fake", "denoiser"}),
    "train one with dpeval fingerprint",
)
ATTRIBUTOR = Kind(
    "an attributor",
    "an attributor folder",
    frozenset({"prototypes_per_class", "num_classes"}),
    "fit one with dpeval attribute fit",
)
DNCNN = Kind(
    "a DnCNN denoiser",
    "a DnCNN denoiser folder",
    frozenset({"channels", "width", "depth"}),
    "train one with dpeval fingerprint --denoiser train:DIR",
)
#: Tried in order; the DnCNN denoiser's keys are the least specific, so it comes last.
KINDS = (DIFFUSIONPRINT, LOCALIZER, LIGHTVAE, FINGERPRINT, ATTRIBUTOR, DNCNN)


def is_hub_id(spec: str) -> bool:
    """True when ``spec`` names no local file or folder and is a valid Hub repo id."""
    if Path(spec).expanduser().exists() or spec.startswith(("/", ".", "~")):
        return False
    try:
        validate_repo_id(spec)
    except HFValidationError:
        return False
    return True


def identify(config: dict) -> Kind | None:
    """The kind of model whose ``config.json`` is ``config``, or None for none of `KINDS`."""
    return next((kind for kind in KINDS if kind.keys <= config.keys()), None)


def check_folder(spec: str, kind: Kind) -> Path | None:
    """The local folder named by ``spec``, checked to hold a model of ``kind`` (weights unread).

    Returns:
        The folder, or None when ``spec`` is a Hub id (`is_hub_id`), left to ``from_pretrained``.

    Raises:
        InputError: ``"<spec>: <what is wrong>"``: no such folder, a file, no config.json, an
            unreadable config.json, another model (`KINDS`), or no model.safetensors.
    """
    if is_hub_id(spec):
        return None
    path = Path(spec).expanduser()
    if not path.exists():
        raise InputError(f"{spec}: no such model folder")
    if not path.is_dir():
        raise InputError(f"{spec}: a file, not {kind.folder}")
    if not (path / CONFIG).is_file():
        raise InputError(f"{spec}: not {kind.folder} (no {CONFIG})")
    try:
        config = json.loads((path / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path / CONFIG}: not readable JSON ({err})") from None
    found = identify(config) if isinstance(config, dict) else None
    if found is None:
        raise InputError(f"{spec}: its {CONFIG} is not that of {kind.name}; {kind.hint}")
    if found != kind:
        raise InputError(f"{spec}: {found.name}, not {kind.name}; {kind.hint}")
    if not (path / WEIGHTS).is_file():
        raise InputError(f"{spec}: not {kind.folder} (no {WEIGHTS})")
    return path
