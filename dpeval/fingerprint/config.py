"""Options of ``dpeval fingerprint`` and ``dpeval lineage`` (`dpgen.options` dataclasses).

``dpeval fingerprint`` trains (``--real``, ``--fake``, ``--out``) or, with ``--detect F``,
scores images with a trained fingerprint; one command, as the issue spells it. A training
setting given together with ``--detect`` is refused (it would be silently ignored), and so are
IMAGES without ``--detect``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from dpgen.errors import InputError
from dpgen.options import OptionError, Options, option

from .denoiser import SPEC_HELP, TRAIN, parse_spec

#: Settings read only by detection and by both modes; every other field is training-only.
DETECT_FIELDS = ("detect", "images")
SHARED_FIELDS = ("batch_size", "device")


@dataclass(kw_only=True)
class FingerprintConfig(Options):
    """``dpeval fingerprint``: train a Deep Image Fingerprint, or detect with one."""

    real: str | None = option(
        None,
        help="real training images: a folder, hf://DATASET, or DATA@real (a dpgen build/evalset)",
    )
    fake: str | None = option(
        None, help="generated training images: a folder, hf://DATASET, or DATA@GENERATOR"
    )
    out: str | None = option(None, help="output folder of the trained fingerprint")
    detect: str | None = option(
        None, help="a trained fingerprint folder: label IMAGES instead of training", metavar="F"
    )
    images: list[str] = option(
        [], positional=True, help="with --detect: image files, folders or DATA@NAME to label"
    )
    size: int = option(256, help="side of the centre crop, a multiple of 16, >= 32 (paper: 256)")
    num_images: int | None = option(
        None, help="training images per class (default: as many as the smaller class has)"
    )
    denoiser: str = option("highpass", help=f"the residual: {SPEC_HELP}")
    denoiser_steps: int = option(2000, help="with --denoiser train:DIR: DnCNN training steps")
    subtract_real_mean: bool = option(
        True, help="subtract the mean residual of the real training images from every residual"
    )
    epochs: int = option(100, help="passes over the training images (paper: 100)")
    batch_size: int = option(
        64, help="images per training step (paper: 64) or per forward pass when detecting"
    )
    lr: float = option(5e-4, help="AdamW learning rate (paper: 5e-4)")
    seed: int = option(0, help="seed of the fixed input, the jitter and the batch order")
    checkpointing_epochs: int = option(10, help="save a checkpoint every N epochs (0: never)")
    checkpoints_total_limit: int = option(2, help="keep at most this many checkpoints (0: all)")
    resume_from_checkpoint: str = option(
        "", help="'latest' (in --out) or a checkpoint folder to resume from"
    )
    report_to: list[str] = option(
        [], help="trackers besides metrics.jsonl (accelerate names: tensorboard, wandb, ...)"
    )
    device: str | None = option(
        None, help="cpu or cuda (default: cuda when available); training picks it via accelerate"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            parse_spec(self.denoiser)
        except InputError as err:  # reported as a bad flag (exit 2), not as a traceback
            raise OptionError(str(err)) from None
        if self.detect is not None:
            given = [name for name in self.training_fields() if self._changed(name)]
            if given:
                raise OptionError(
                    f"{self.flag(given[0])}: a training setting; --detect reads its settings "
                    "from the fingerprint folder (remove it)"
                )
        elif self.images:
            raise OptionError(f"IMAGES ({self.images[0]!r}, ...) are only read with --detect F")
        self._check_values()

    def _check_values(self) -> None:
        if self.size < 32 or self.size % 16:  # 4 poolings; BN needs >= 2x2 values at the bottom
            raise OptionError(
                f"size must be a multiple of 16 and >= 32 (the U-Net), got {self.size}"
            )
        if self.batch_size < 2:
            raise OptionError(
                f"batch_size must be >= 2 (the loss uses pairs), got {self.batch_size}"
            )
        if self.num_images is not None and self.num_images < 1:
            raise OptionError(f"num_images must be >= 1, got {self.num_images}")
        if min(self.epochs, self.denoiser_steps) < 1 or self.lr <= 0:
            raise OptionError("epochs, denoiser_steps and lr must be positive")
        if self._changed("denoiser_steps") and parse_spec(self.denoiser)[0] != TRAIN:
            raise OptionError("--denoiser-steps: only read with --denoiser train:DIR")

    @classmethod
    def training_fields(cls) -> list[str]:
        """Names of the settings that only training reads."""
        return [n for n in cls.fields() if n not in DETECT_FIELDS + SHARED_FIELDS]

    def _changed(self, name: str) -> bool:
        f = self.fields()[name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        return getattr(self, name) != default


@dataclass(kw_only=True)
class LineageConfig(Options):
    """``dpeval lineage``: cross-detection, fingerprint correlation and clustering."""

    fingerprints: list[str] = option(
        help="trained fingerprint folders, comma-separated; each is named by its folder name"
    )
    images: dict[str, str] = option(
        {},
        help="held-out generated images of a generator: NAME=SPEC (folder, hf://, DATA@NAME); "
        "repeat for each generator",
    )
    real: str = option(help="held-out real images (folder, hf://DATASET or DATA@real)")
    out: str = option(help="output folder: CSV + JSON of every matrix, PNG figures")
    batch_size: int = option(64, help="images per forward pass")
    device: str | None = option(None, help="cpu or cuda (default: cuda when available)")
