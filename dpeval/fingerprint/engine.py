"""Training a Deep Image Fingerprint on accelerate (Sinitsa & Fried, WACV 2024, Sec. 3).

One step (the authors' ``TrainerMultiple.train_step``):

1. the U-Net maps the fixed input z (``INPUT_CHANNELS`` channels, uniform x ``INPUT_SCALE``,
   drawn once from the seed) plus fresh N(0, ``JITTER_STD``) jitter to a fingerprint F_t;
2. rho of F_t with each residual of the batch (real and generated images mixed), the pair loss
   with margin m (`dpeval.fingerprint.loss`), AdamW;
3. the kept fingerprint F is an EMA of F_t (factor ``EMA``); rho of F with the batch's residuals
   is recorded, and mu_real / mu_fake are the mean rho of each class over the last
   ``MU_WINDOW`` batches (image-weighted; the authors average per-batch means).

Residuals come from a frozen denoiser (`dpeval.fingerprint.denoiser`), so they are computed once
when they fit in ``CACHE_BYTES`` (the authors recompute them every step; their random residual
scaling, off by default, cannot change rho, which is scale-invariant, and is left out). Each
epoch's batch order comes from ``(seed, epoch)`` and each step's jitter from ``(seed, step)``,
so a resumed run (`dpgen.checkpoints`, ``accelerator.save_state``) gives the fingerprint an
uninterrupted run gives. The loss constrains only |rho_fake - rho_real|, so the saved F is
oriented with mu_fake > mu_real (negating F negates every rho), which makes fingerprints of
related generators correlate positively (`dpeval.fingerprint.lineage`). Batches are the shuffled images split into ceil(N / batch_size) parts
as equal as possible (no lone last image without a pair).
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from tqdm.auto import tqdm

from dpgen.checkpoints import read_marker, resolve_checkpoint, save_accelerator_state
from dpgen.errors import InputError
from dptrain.curves import plot_curves
from dptrain.tracker import log_with, tracker_config

from . import figures
from .config import FingerprintConfig
from .data import ImageSet, describe, read_set
from .denoiser import DENOISER_FOLDER, DNCNN, TRAIN, load_dncnn, load_residual, parse_spec
from .loss import pair_loss, rho
from .model import DeepImageFingerprint
from .train_denoiser import train_denoiser
from .unet import FingerprintUNet

logger = logging.getLogger(__name__)

INPUT_CHANNELS, INPUT_SCALE, JITTER_STD = 16, 0.1, 0.03
UNET_BASE, UNET_DEPTH = 32, 4
EMA, MU_WINDOW = 0.99, 20
CACHE_BYTES = 4 << 30
METRICS_FILE, CURVES_FILE, TRAINING_FILE = "metrics.jsonl", "training_curves.png", "training.json"
PANELS = (
    ("pair loss", ("loss",)),
    ("rho of the EMA fingerprint (batch means)", ("rho_real", "rho_fake")),
    ("mu over the last 20 batches", ("mu_real", "mu_fake")),
    ("denoiser training (MSE)", ("denoiser_mse",)),
)
#: Settings a resumed run must share with the checkpoint's run (epochs may grow).
RESUME_KEYS = (
    "real",
    "fake",
    "size",
    "num_images",
    "denoiser",
    "denoiser_steps",
    "subtract_real_mean",
    "batch_size",
    "lr",
    "seed",
)


class TrainingState:
    """What a checkpoint holds besides the U-Net and AdamW: z, the EMA fingerprint, the window of
    per-batch rho sums, and the completed epochs and steps (``register_for_checkpointing``)."""

    def __init__(self, z: torch.Tensor) -> None:
        self.z = z
        self.fingerprint: torch.Tensor | None = None
        self.window: list[list[float]] = []  # [sum rho real, n real, sum rho fake, n fake]
        self.epoch = 0
        self.step = 0

    def update(self, output: torch.Tensor) -> torch.Tensor:
        """EMA of the U-Net's output (1, C, S, S); the first step takes it as is."""
        out = output.detach()
        if self.fingerprint is None:
            self.fingerprint = out
        else:  # a checkpoint loads it on the CPU
            self.fingerprint = EMA * self.fingerprint.to(out.device) + (1 - EMA) * out
        return self.fingerprint

    def record(self, rhos: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Add a batch's rho to the window; the batch means that exist (a class may be absent)."""
        fake = labels.bool()
        sums = [
            rhos[~fake].sum().item(),
            (~fake).sum().item(),
            rhos[fake].sum().item(),
            fake.sum().item(),
        ]
        self.window = [*self.window, sums][-MU_WINDOW:]
        means = {}
        if sums[1]:
            means["rho_real"] = sums[0] / sums[1]
        if sums[3]:
            means["rho_fake"] = sums[2] / sums[3]
        return means

    def mus(self) -> tuple[float, float]:
        """(mu_real, mu_fake) over the window."""
        total = np.sum(self.window, axis=0)
        return float(total[0] / max(total[1], 1)), float(total[2] / max(total[3], 1))

    def state_dict(self) -> dict:
        return {
            "z": self.z,
            "fingerprint": self.fingerprint,
            "window": torch.tensor(self.window, dtype=torch.float64),
            "epoch": self.epoch,
            "step": self.step,
        }

    def load_state_dict(self, state: dict) -> None:
        self.z, self.fingerprint = state["z"], state["fingerprint"]
        self.window = state["window"].tolist()
        self.epoch, self.step = int(state["epoch"]), int(state["step"])


class Residuals:
    """Residuals of the training images on the device, minus the mean real residual when asked.

    Computed once and kept on the device when they fit in ``CACHE_BYTES``, else per batch.
    """

    def __init__(self, residual, pixels: torch.Tensor, labels: torch.Tensor, config, device):
        self.residual, self.pixels, self.device = residual, pixels, device
        self.batch_size = config.batch_size
        with torch.no_grad():
            probe = residual(pixels[:1].to(device).float() / 255.0)
        self.channels = probe.shape[1]
        fits = len(pixels) * probe[0].numel() * 4 <= CACHE_BYTES
        self.cache = self._compute(torch.arange(len(pixels))) if fits else None
        self.mean = torch.zeros(probe.shape[1:], device=device)
        if config.subtract_real_mean:
            real = torch.nonzero(~labels.bool()).flatten().split(self.batch_size)
            self.mean = sum(self._raw(rows).sum(0) for rows in real) / int((~labels.bool()).sum())

    @torch.no_grad()
    def _compute(self, rows: torch.Tensor) -> torch.Tensor:
        chunks = [
            self.residual(self.pixels[part].to(self.device).float() / 255.0).float()
            for part in rows.split(self.batch_size)
        ]
        return torch.cat(chunks)

    def _raw(self, rows: torch.Tensor) -> torch.Tensor:
        return self.cache[rows.to(self.device)] if self.cache is not None else self._compute(rows)

    def __getitem__(self, rows: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) on the device, mean real residual subtracted."""
        return self._raw(rows) - self.mean


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """Epoch ``epoch``'s batches: a permutation drawn from (seed, epoch), split into
    ceil(n / batch_size) parts whose sizes differ by at most one."""
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [torch.from_numpy(part) for part in np.array_split(order, math.ceil(n / batch_size))]


class FingerprintTrainer:
    """The U-Net, AdamW and the state of one run, prepared by ``accelerator``."""

    def __init__(
        self,
        config: FingerprintConfig,
        accelerator: Accelerator,
        residuals: Residuals,
        labels: torch.Tensor,
    ) -> None:
        self.config, self.accelerator = config, accelerator
        self.residuals, self.labels = residuals, labels
        set_seed(config.seed)
        unet = FingerprintUNet(INPUT_CHANNELS, residuals.channels, UNET_BASE, UNET_DEPTH)
        optimizer = torch.optim.AdamW(unet.parameters(), lr=config.lr)
        self.unet, self.optimizer = accelerator.prepare(unet, optimizer)
        size = config.size
        z = torch.rand(
            (1, INPUT_CHANNELS, size, size), generator=torch.Generator().manual_seed(config.seed)
        )
        self.state = TrainingState(z * INPUT_SCALE)
        accelerator.register_for_checkpointing(self.state)

    def jitter(self, step: int) -> torch.Tensor:
        """Step ``step``'s N(0, JITTER_STD) jitter of the fixed input, drawn from (seed, step)."""
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
        return torch.randn(self.state.z.shape, generator=g) * JITTER_STD

    def step(self, rows: torch.Tensor) -> dict[str, float]:
        """One optimisation step on the images ``rows``; its metrics."""
        self.state.step += 1
        residuals = self.residuals[rows]
        labels = self.labels[rows].to(residuals.device)
        z = (self.state.z + self.jitter(self.state.step)).to(self.accelerator.device)
        output = self.unet(z)  # (1, C, S, S)
        loss = pair_loss(rho(output, residuals), labels)
        self.accelerator.backward(loss)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        fingerprint = self.state.update(output)
        with torch.no_grad():
            metrics = self.state.record(rho(fingerprint, residuals), labels)
        mu_real, mu_fake = self.state.mus()
        return {"loss": loss.item(), **metrics, "mu_real": mu_real, "mu_fake": mu_fake}

    def fit(self) -> float:
        """Train from the state's epoch to ``config.epochs``; mean seconds per epoch run."""
        cfg, acc = self.config, self.accelerator
        seconds = []
        for epoch in tqdm(
            range(self.state.epoch + 1, cfg.epochs + 1),
            desc="fingerprint",
            initial=self.state.epoch,
            total=cfg.epochs,
        ):
            start = time.perf_counter()
            for rows in epoch_batches(len(self.labels), cfg.batch_size, cfg.seed, epoch):
                acc.log(self.step(rows), step=self.state.step)
            seconds.append(time.perf_counter() - start)
            acc.log({"seconds_per_epoch": seconds[-1]}, step=self.state.step)
            self.state.epoch = epoch
            if epoch == cfg.epochs or (
                cfg.checkpointing_epochs and epoch % cfg.checkpointing_epochs == 0
            ):
                self.save_checkpoint()
        return float(np.mean(seconds)) if seconds else float("nan")

    def save_checkpoint(self) -> Path:
        cfg = self.config
        settings = {k: cfg.to_dict()[k] for k in RESUME_KEYS}
        return save_accelerator_state(
            self.accelerator,
            cfg.out,
            self.state.step,
            total_limit=cfg.checkpoints_total_limit,
            extra={"epoch": self.state.epoch, "settings": settings},
        )


def _require_training_inputs(config: FingerprintConfig) -> None:
    missing = [config.flag(n) for n in ("real", "fake", "out") if not getattr(config, n)]
    if missing:
        raise InputError(f"{', '.join(missing)}: required to train (or pass --detect F IMAGES)")


def _check_resumable(checkpoint: Path, config: FingerprintConfig) -> None:
    saved = read_marker(checkpoint).get("settings", {})
    now = {k: config.to_dict()[k] for k in RESUME_KEYS}
    changed = [k for k in RESUME_KEYS if k in saved and saved[k] != now[k]]
    if changed:
        k = changed[0]
        raise InputError(
            f"{checkpoint}: was trained with {config.flag(k)} {saved[k]!r}, not {now[k]!r}; "
            "resume with the same settings (only --epochs may change)"
        )


def read_training_sets(config: FingerprintConfig) -> tuple[ImageSet, ImageSet]:
    """The real and generated training images, as many of each (``--num-images``, or the
    smaller class's count, drawn with the seed)."""
    real = read_set(config.real, config.size, config.num_images, config.seed)
    fake = read_set(config.fake, config.size, config.num_images, config.seed)
    n = min(len(real), len(fake))
    if len(real) != len(fake):
        logger.info("balancing: %d real, %d generated images -> %d each", len(real), len(fake), n)
    return real.subset(n, config.seed), fake.subset(n, config.seed)


def prepare_residual(config: FingerprintConfig, accelerator: Accelerator, resumed: bool):
    """(the frozen residual on the device, the spec the fingerprint records).

    ``train:DIR`` trains a DnCNN on DIR's real images and saves it in ``out/denoiser``; a
    resumed run loads that saved one instead of training again.
    """
    kind, arg = parse_spec(config.denoiser)
    if kind != TRAIN:
        return load_residual(config.denoiser, device=accelerator.device), config.denoiser
    folder = Path(config.out) / DENOISER_FOLDER
    if resumed:
        model = load_dncnn(folder)
    else:
        images = read_set(arg, config.size, seed=config.seed)
        model = train_denoiser(
            accelerator, torch.from_numpy(images.pixels), config.denoiser_steps, config.seed
        )
        model.save_pretrained(folder)
    return model.eval().requires_grad_(False).to(accelerator.device), f"{DNCNN}:{DENOISER_FOLDER}"


def _accelerator(config: FingerprintConfig) -> Accelerator:
    out = Path(config.out)
    accelerator = Accelerator(
        cpu=config.device == "cpu",
        log_with=log_with(config.report_to, out),
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )
    if (
        config.device not in (None, "cpu")
        and torch.device(config.device).type != accelerator.device.type
    ):
        raise InputError(f"--device {config.device}: accelerate chose {accelerator.device}")
    if accelerator.num_processes > 1:
        raise InputError(
            "dpeval fingerprint trains on one process (the U-Net sees one input per step); "
            "run it without a multi-process launcher"
        )
    return accelerator


def train(config: FingerprintConfig) -> dict:
    """Train a fingerprint and write it to ``config.out`` (module docstring).

    Returns:
        The summary also written to ``training.json``.

    Raises:
        InputError: missing or bad inputs, or a checkpoint of other settings, before any step.
    """
    _require_training_inputs(config)
    resume = resolve_checkpoint(config.resume_from_checkpoint, config.out)
    if resume is not None:
        _check_resumable(resume, config)
    real, fake = read_training_sets(config)
    Path(config.out).mkdir(parents=True, exist_ok=True)
    accelerator = _accelerator(config)
    try:
        logger.info(
            "dpeval fingerprint: %d real + %d generated images of %d px on %s",
            len(real),
            len(fake),
            config.size,
            accelerator.device,
        )
        accelerator.init_trackers("dpeval-fingerprint", config=tracker_config(config.to_dict()))
        residual, spec = prepare_residual(config, accelerator, resume is not None)
        pixels = torch.from_numpy(np.concatenate([real.pixels, fake.pixels]))
        labels = torch.cat([torch.zeros(len(real)), torch.ones(len(fake))]).bool()
        residuals = Residuals(residual, pixels, labels, config, accelerator.device)
        trainer = FingerprintTrainer(config, accelerator, residuals, labels)
        if resume is not None:
            logger.info("resuming from %s", resume)
            accelerator.load_state(str(resume))
        seconds = trainer.fit()
        return publish(trainer, spec, real, fake, seconds)
    finally:
        accelerator.end_training()


def publish(
    trainer: FingerprintTrainer, spec: str, real: ImageSet, fake: ImageSet, seconds: float
) -> dict:
    """Write the model folder, the fingerprint files, training.json and the curves."""
    config, state, out = trainer.config, trainer.state, Path(trainer.config.out)
    mu_real, mu_fake = state.mus()
    fingerprint = state.fingerprint[0].float().cpu()
    if mu_fake < mu_real:  # the loss fixes |rho_fake - rho_real| only: orient F canonically
        fingerprint, mu_real, mu_fake = -fingerprint, -mu_real, -mu_fake
    model = DeepImageFingerprint(fingerprint.shape[0], config.size, spec, mu_real, mu_fake)
    model.fingerprint.copy_(fingerprint)
    model.residual_mean.copy_(trainer.residuals.mean)
    model.save_pretrained(out)
    figures.write_fingerprint_files(fingerprint.numpy(), out, out.name)
    summary = {
        "fingerprint": str(out),
        "denoiser": spec,
        "size": config.size,
        "mu_real": mu_real,
        "mu_fake": mu_fake,
        "epochs": state.epoch,
        "steps": state.step,
        "seconds_per_epoch": seconds,
        "real": describe(real),
        "fake": describe(fake),
        "device": str(trainer.accelerator.device),
    }
    (out / TRAINING_FILE).write_text(json.dumps(summary, indent=1))
    plot_curves(out / METRICS_FILE, out / CURVES_FILE, PANELS, f"dpeval fingerprint {out.name}")
    return summary
