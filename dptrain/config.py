"""Training configuration: one dataclass, named presets, YAML and command-line overrides.

Precedence, lowest first: the preset (``--preset``), a YAML file (``--config``), then flags.
Every field of `TrainConfig` is a flag (``field_name`` -> ``--field-name``); its help text is the
field's ``metadata["help"]``.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PAIRINGS = ("paired", "augment")
HEADS = ("none", "binary", "generator")
#: Cumulative levels, as in the paper's Table 3 ("geometric", "+JPEG", "+HP").
AUGMENTATIONS = ("none", "geometric", "jpeg", "hp")
MIXED_PRECISION = ("no", "fp16", "bf16")


def _f(default: Any, help: str, **kwargs: Any) -> Any:
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass
class TrainConfig:
    """All settings of a pretraining run. Defaults are the ``paper`` preset (paper Sec. 3-4)."""

    # Data and output.
    data: str = _f("", "dpgen build directory (datasets.load_from_disk layout)", required=True)
    output_dir: str = _f("", "where weights, model card, checkpoints and metrics go", required=True)
    exclude_generators: tuple[str, ...] = _f(
        (), "generator labels (or view names) to drop from training, e.g. 'flux' for DP-dagger"
    )
    # Model (dptrain.model.DiffusionPrint).
    out_channels: int = _f(64, "C, channels of the forensic map (Table 1: 1, 64, 256)")
    width: int = _f(64, "hidden channels of the DnCNN")
    depth: int = _f(17, "conv layers of the DnCNN")
    embed_dim: int = _f(128, "size of the L2-normalised embedding")
    proj_hidden: int = _f(128, "hidden size of the projector MLP (paper text: 128)")
    # Contrastive objective (dptrain.loss).
    pairing: str = _f(
        "paired", "positives: dpgen groups (ours) or an augmented view (MoCo)", choices=PAIRINGS
    )
    queue_size: int = _f(65536, "momentum-encoder embeddings in the hard-negative queue")
    top_k: int = _f(512, "hard negatives per anchor, opposite category (Table 1: 64..1024)")
    temperature: float = _f(0.07, "InfoNCE temperature tau (Eq. 1)")
    in_batch_negatives: bool = _f(
        False, "add the batch's other keys as negatives (authors' code; real-real masked)"
    )
    momentum: float = _f(0.999, "EMA factor of the momentum encoder")
    pool_per_step: int = _f(128, "negative-pool patches encoded and enqueued per step and process")
    head: str = _f("generator", "auxiliary classifier on the embedding (Table 1)", choices=HEADS)
    lambda_cls: float = _f(1.0, "weight of the head's cross-entropy")
    augment: str = _f(
        "geometric", "augmentation level, cumulative (Table 3)", choices=AUGMENTATIONS
    )
    # Optimisation.
    batch_size: int = _f(512, "anchors per step and process")
    epochs: int = _f(50, "training length in epochs over the anchor rows")
    max_steps: int = _f(0, "stop after this many steps (0: run all epochs)")
    lr: float = _f(1e-3, "Adam learning rate")
    weight_decay: float = _f(1e-4, "Adam weight decay")
    lr_step_epochs: int = _f(10, "StepLR period in epochs")
    lr_gamma: float = _f(0.1, "StepLR factor")
    max_grad_norm: float = _f(10.0, "gradient clipping norm")
    mixed_precision: str | None = _f(
        None, "override accelerate's mixed precision", choices=MIXED_PRECISION
    )
    seed: int = _f(0, "seed of initialisation, sampling and augmentation")
    num_workers: int = _f(4, "data-loader worker processes")
    # Checkpoints, logging, publishing.
    checkpointing_steps: int = _f(1000, "save_state every N steps (0: never)")
    checkpoints_total_limit: int = _f(0, "keep at most this many checkpoints (0: all)")
    resume_from_checkpoint: str = _f("", "a checkpoint directory, or 'latest' in --output-dir")
    log_every: int = _f(10, "log metrics every N steps")
    push_to_hub: bool = _f(False, "upload weights, config and card at the end")
    hub_model_id: str = _f("", "Hub repo id for --push-to-hub (default: output-dir name)")

    def __post_init__(self) -> None:
        self.exclude_generators = tuple(self.exclude_generators)
        for name in ("pairing", "head", "augment", "mixed_precision"):
            choices = _FIELDS[name].metadata.get("choices")
            value = getattr(self, name)
            if value is not None and value not in choices:
                raise ValueError(f"{name}: {value!r} is not one of {choices}")
        for name in ("queue_size", "top_k", "batch_size", "epochs", "pool_per_step"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.top_k > self.queue_size:
            raise ValueError(f"top_k ({self.top_k}) exceeds queue_size ({self.queue_size})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["exclude_generators"] = list(self.exclude_generators)
        return out


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}

#: Named presets: field overrides applied on top of the dataclass defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # Paper Sec. 4: batch 512, queue 65,536, top-k 512, C = 64, 50 epochs, StepLR every 10.
    "paper": {},
    # A CPU demo: a 20-step run on a tiny dpgen build takes seconds.
    "tiny": {
        "out_channels": 8,
        "width": 16,
        "depth": 5,
        "embed_dim": 32,
        "proj_hidden": 32,
        "queue_size": 256,
        "top_k": 32,
        "pool_per_step": 16,
        "batch_size": 8,
        "epochs": 2,
        "num_workers": 0,
        "checkpointing_steps": 10,
        "checkpoints_total_limit": 2,
        "log_every": 1,
    },
}


def build_parser() -> argparse.ArgumentParser:
    """The ``dptrain`` argument parser: ``--preset``, ``--config`` and one flag per field."""
    parser = argparse.ArgumentParser(
        prog="dptrain",
        description="MoCo-style DiffusionPrint pretraining on a dpgen build (accelerate).",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper", help="base settings")
    parser.add_argument("--config", type=Path, help="YAML file of TrainConfig fields")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {"default": None, "help": f.metadata["help"], "dest": f.name}
        if f.type in ("bool",):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
            continue
        if f.name == "exclude_generators":
            kwargs["type"] = lambda s: tuple(x for x in s.split(",") if x)
        elif f.type in ("int", "float"):
            kwargs["type"] = {"int": int, "float": float}[f.type]
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        parser.add_argument(flag, **kwargs)
    return parser


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping of `TrainConfig` fields; unknown keys are an error naming the file."""
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: cannot read YAML config: {err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of TrainConfig fields")
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}; valid keys: {sorted(_FIELDS)}")
    return values


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    """Parse ``argv`` into a `TrainConfig`: preset, then YAML, then flags.

    Raises:
        SystemExit: (argparse) on an invalid flag or a missing ``--data`` / ``--output-dir``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    values: dict[str, Any] = dict(PRESETS[args.preset])
    if args.config is not None:
        values.update(load_yaml(args.config))
    values.update({k: v for k, v in vars(args).items() if k in _FIELDS and v is not None})
    missing = [k for k, f in _FIELDS.items() if f.metadata.get("required") and not values.get(k)]
    if missing:
        parser.error("required: " + ", ".join("--" + k.replace("_", "-") for k in missing))
    try:
        return TrainConfig(**values)
    except ValueError as err:
        parser.error(str(err))
