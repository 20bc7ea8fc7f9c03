"""Stage 1 of DiffIML: train the LightVAE on ground-truth masks and their edge maps.

Each step takes a batch of masks, adds their edge maps (`edge_map`, width 7) to the batch, maps
both to {-1, +1} and minimises the L1 reconstruction error; optionally plus ``distill_weight`` x
the MSE between the LightVAE's scaled latent and an image VAE's (``teacher_vae``, an
``AutoencoderKL``; DiffIML distils from Stable Diffusion's ``sd-vae-ft-mse`` on the mask tiled
to RGB). Adam, constant learning rate. Defaults follow DiffIML's ``train_light_vae.py``: batch 32,
lr 1e-4, 50 epochs, distillation weight 0.1, masks resized to 512.

The batches of step s are a pure function of (seed, s): a stream of per-epoch permutations of the
masks, cut into global batches, each process taking every ``num_processes``-th item. So a run
resumed from ``checkpoint-<s>`` (`dpgen.checkpoints`; ``accelerator.save_state``) sees the same
batches and ends with the same weights as an uninterrupted one.

At the end the main process writes ``save_pretrained`` output (config.json, model.safetensors),
``metrics.jsonl`` and ``training_curves.png``, and scores the reconstruction of the
``eval_split`` masks at threshold 0.5: the upper bound of any decoder diffusing these latents
(DiffIML reports F1 0.997). Two conventions: TGIF's per-image F1 (`dpeval.metrics.f1_tgif`,
averaged) and DiffIML's pooled F1 (TP, FP, FN summed over all pixels, as its
``eval_vae_upper_bound.py``); both go to ``reconstruction.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from dpeval.metrics import THRESHOLD, confusion, f1_tgif
from dpeval.tgif.decoders.edges import EDGE_WIDTH, edge_map
from dpeval.tgif.decoders.lightvae import DOWNSAMPLE, LightVAE, to_signed
from dpeval.tgif.decoders.mask_data import MaskSet, list_masks
from dpgen.checkpoints import (
    atomic_write,
    resolve_checkpoint,
    save_accelerator_state,
    step_of,
)
from dpgen.options import OptionError, Options, option
from dptrain.curves import plot_curves
from dptrain.engine import CURVES_FILE
from dptrain.tracker import METRICS_FILE, log_with, tracker_config

logger = logging.getLogger(__name__)

RECONSTRUCTION_FILE = "reconstruction.json"
PANELS = (("loss", ("loss", "l1", "distill")),)
MIXED_PRECISION = ("no", "fp16", "bf16")


@dataclass(kw_only=True)
class LightVAETrainConfig(Options):
    """Settings of a LightVAE run; defaults are DiffIML's (paper and ``train_light_vae.py``)."""

    data: str = option(help="a TGIF tree, or a folder of 8-bit 0/255 mask images")
    output_dir: str = option(help="where the LightVAE, metrics, curves and checkpoints go")
    split: str = option("training", help="the split whose masks train the LightVAE")
    eval_split: str = option("validation", help="the split whose masks score the reconstruction F1")
    image_size: int = option(512, help="masks are resized (nearest) to this side, a multiple of 8")
    edge_width: int = option(EDGE_WIDTH, help="side of the edge band's cross, odd (pixels)")
    latent_channels: int = option(4, help="channels of the latent")
    base_channels: int = option(32, help="first-stage width; then 2x and 4x")
    batch_size: int = option(32, help="masks per step and process (plus as many edge maps)")
    epochs: int = option(50, help="passes over the masks")
    max_steps: int = option(0, help="stop after this many steps (0: run all epochs)")
    lr: float = option(1e-4, help="Adam learning rate")
    teacher_vae: str = option(
        "", help="AutoencoderKL folder or Hub id to distil the latent from (empty: none)"
    )
    distill_weight: float = option(0.1, help="weight of the latent distillation MSE")
    mixed_precision: str | None = option(
        None, help="override accelerate's mixed precision", choices=MIXED_PRECISION
    )
    seed: int = option(0, help="seed of initialisation and mask order")
    num_workers: int = option(2, help="data-loader worker processes")
    checkpointing_steps: int = option(500, help="save_state every N steps (0: never)")
    checkpoints_total_limit: int = option(2, help="keep at most this many checkpoints (0: all)")
    resume_from_checkpoint: str = option(
        "", help="a checkpoint-<step> folder, or 'latest' in --output-dir"
    )
    log_every: int = option(10, help="log the losses every N steps")
    report_to: tuple[str, ...] = option(
        ("jsonl",), help="trackers besides metrics.jsonl, comma-separated (tensorboard, wandb)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_size < DOWNSAMPLE or self.image_size % DOWNSAMPLE:
            raise OptionError(f"image_size must be a multiple of 8, got {self.image_size}")
        if self.edge_width < 1 or self.edge_width % 2 == 0:
            raise OptionError(f"edge_width must be odd and positive, got {self.edge_width}")
        for name in ("batch_size", "epochs", "latent_channels", "base_channels", "log_every"):
            if getattr(self, name) < 1:
                raise OptionError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.distill_weight < 0:
            raise OptionError(
                f"lr must be > 0 and distill_weight >= 0 ({self.lr}, {self.distill_weight})"
            )


@dataclass
class LightVAEReport:
    """What a run produced: its folder, length, and reconstruction F1 at 0.5 on ``eval_split``."""

    output_dir: str
    steps: int
    train_masks: int
    eval_masks: int
    recon_f1_tgif: float
    recon_f1_pooled: float


def global_batch(step: int, n: int, size: int, seed: int) -> np.ndarray:
    """Indices (into n masks) of step ``step``'s global batch of ``size``.

    Items k = step * size ... of an endless stream that concatenates one permutation of
    range(n) per epoch e, drawn from ``default_rng([seed, e])``; a batch may span two epochs.
    """
    positions = np.arange(step * size, (step + 1) * size)
    epochs = positions // n
    out = np.empty(size, dtype=np.int64)
    for e in np.unique(epochs):
        perm = np.random.default_rng([seed, int(e)]).permutation(n)
        here = epochs == e
        out[here] = perm[positions[here] % n]
    return out


class StepBatches(Sampler):
    """Per-process batch indices of steps ``start`` .. ``stop - 1`` (see `global_batch`)."""

    def __init__(
        self, n: int, batch_size: int, seed: int, start: int, stop: int, rank: int, world: int
    ):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.stop, self.rank, self.world = start, stop, rank, world

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            batch = global_batch(step, self.n, self.batch_size * self.world, self.seed)
            yield batch[self.rank :: self.world].tolist()


class Objective(nn.Module):
    """The training loss around a LightVAE, so DDP wraps one forward.

    ``forward(masks, teacher_latent)`` -> {"loss", "l1", "distill"}: masks (B, 1, S, S) in
    {-1, +1}; teacher_latent (B, C, S/8, S/8) or None (no distillation).
    """

    def __init__(self, vae: LightVAE, distill_weight: float) -> None:
        super().__init__()
        self.vae = vae
        self.distill_weight = distill_weight

    def forward(
        self, masks: torch.Tensor, teacher_latent: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        latent = self.vae.encode(masks)
        l1 = F.l1_loss(self.vae.decode(latent), masks)
        if teacher_latent is None:
            return {"loss": l1, "l1": l1}
        distill = F.mse_loss(latent, teacher_latent)
        return {"loss": l1 + self.distill_weight * distill, "l1": l1, "distill": distill}


def load_teacher(spec: str, device: torch.device) -> nn.Module | None:
    """The frozen ``AutoencoderKL`` named by ``teacher_vae``, or None for ""."""
    if not spec:
        return None
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(spec).requires_grad_(False).eval().to(device)


@torch.no_grad()
def teacher_latent(teacher: nn.Module, masks: torch.Tensor) -> torch.Tensor:
    """The image VAE's scaled latent mean of (B, 1, S, S) {-1, +1} masks tiled to RGB."""
    posterior = teacher.encode(masks.expand(-1, 3, -1, -1)).latent_dist
    return posterior.mean * teacher.config.scaling_factor


@torch.no_grad()
def reconstruction_f1(vae: LightVAE, masks: Dataset, batch_size: int, device) -> dict[str, float]:
    """F1 at 0.5 of ``sigmoid(vae(mask))`` against each mask: TGIF's per-image mean and pooled."""
    vae.eval()
    per_image, counts = [], np.zeros(3)  # pooled TP, FP, FN
    for batch in DataLoader(masks, batch_size=batch_size):
        prob = torch.sigmoid(vae(to_signed(batch.to(device)))).cpu().numpy()[:, 0]
        truth = batch.numpy()[:, 0]
        for p, m in zip(prob, truth, strict=True):
            c = confusion(p > THRESHOLD, m > 0.5)
            per_image.append(float(f1_tgif(c)))
            counts += [c.tp, c.fp, c.fn]
    tp, fp, fn = counts
    pooled = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return {"recon_f1_tgif": float(np.mean(per_image)), "recon_f1_pooled": float(pooled)}


def _accelerator(config: LightVAETrainConfig) -> Accelerator:
    # ranks started by a launcher on a machine with no GPU need cpu=True to use gloo (dptrain)
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    out = Path(config.output_dir)
    return Accelerator(
        cpu=multi_cpu,
        mixed_precision=config.mixed_precision,
        log_with=log_with(config.report_to, config.output_dir),
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )


def train_lightvae(config: LightVAETrainConfig) -> LightVAEReport:
    """Train a LightVAE, save it with ``save_pretrained`` in ``output_dir`` and score it.

    Raises:
        dpgen.errors.InputError: no masks, or a bad checkpoint, before any training step.
    """
    out = Path(config.output_dir)
    resume = resolve_checkpoint(config.resume_from_checkpoint, out)
    train_set = MaskSet(list_masks(config.data, config.split), config.image_size)
    eval_set = MaskSet(list_masks(config.data, config.eval_split), config.image_size)
    accelerator = _accelerator(config)
    try:
        logger.info(
            "LightVAE: %d process(es) on %s; %d training masks, %d for the F1",
            accelerator.num_processes, accelerator.device, len(train_set), len(eval_set),
        )  # fmt: skip
        accelerator.init_trackers("lightvae", config=tracker_config(config.to_dict()))
        set_seed(config.seed)
        vae = LightVAE(config.latent_channels, config.base_channels)
        steps = _train(config, accelerator, vae, train_set, resume)
        report = _publish(config, accelerator, vae, eval_set, steps, len(train_set))
    finally:
        accelerator.end_training()
    return report


def _train(
    config: LightVAETrainConfig,
    accelerator: Accelerator,
    vae: LightVAE,
    masks: MaskSet,
    resume: Path | None,
) -> int:
    """The loop; returns the number of steps done."""
    world = accelerator.num_processes
    per_epoch = math.ceil(len(masks) / (config.batch_size * world))
    total = config.max_steps or config.epochs * per_epoch
    objective = Objective(vae, config.distill_weight)
    optimizer = torch.optim.Adam(vae.parameters(), lr=config.lr)
    objective, optimizer = accelerator.prepare(objective, optimizer)
    teacher = load_teacher(config.teacher_vae, accelerator.device)
    step = 0
    if resume is not None:
        logger.info("resuming from %s", resume)
        accelerator.load_state(str(resume))
        step = step_of(resume)
    loader = DataLoader(
        masks,
        batch_sampler=StepBatches(
            len(masks), config.batch_size, config.seed, step, total,
            accelerator.process_index, world,
        ),
        num_workers=config.num_workers,
    )  # fmt: skip
    objective.train()
    for batch in loader:
        mask = batch.to(accelerator.device)
        inputs = to_signed(torch.cat([mask, edge_map(mask, config.edge_width)]))
        target = teacher_latent(teacher, inputs) if teacher is not None else None
        with accelerator.autocast():
            losses = objective(inputs, target)
        accelerator.backward(losses["loss"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if step % config.log_every == 0 or step == total:
            values = accelerator.reduce(torch.stack(list(losses.values())).detach(), "mean")
            accelerator.log(dict(zip(losses, values.tolist(), strict=True)), step=step)
        if config.checkpointing_steps and step % config.checkpointing_steps == 0:
            _checkpoint(config, accelerator, step)
    logger.info("LightVAE: %d steps (%d per epoch)", step, per_epoch)
    return step


def _checkpoint(config: LightVAETrainConfig, accelerator: Accelerator, step: int) -> None:
    save_accelerator_state(
        accelerator, config.output_dir, step, total_limit=config.checkpoints_total_limit
    )


def _publish(
    config: LightVAETrainConfig,
    accelerator: Accelerator,
    vae: LightVAE,
    eval_set: MaskSet,
    steps: int,
    train_masks: int,
) -> LightVAEReport:
    """Main process: save the model, score the reconstruction, draw the curves."""
    out = Path(config.output_dir)
    accelerator.wait_for_everyone()
    f1 = {"recon_f1_tgif": math.nan, "recon_f1_pooled": math.nan}
    if accelerator.is_main_process:
        vae.save_pretrained(out)
        f1 = reconstruction_f1(vae, eval_set, config.batch_size, accelerator.device)
        accelerator.log(f1, step=steps)
        plot_curves(out / METRICS_FILE, out / CURVES_FILE, PANELS, f"LightVAE {out.name}")
    report = LightVAEReport(str(out), steps, train_masks, len(eval_set), **f1)
    if accelerator.is_main_process:
        atomic_write(out / RECONSTRUCTION_FILE, json.dumps(asdict(report), indent=1))
        logger.info(
            "LightVAE reconstruction F1 at 0.5 on %d %s masks: %.4f (TGIF, per image), "
            "%.4f (pooled)", len(eval_set), config.eval_split, f1["recon_f1_tgif"],
            f1["recon_f1_pooled"],
        )  # fmt: skip
    accelerator.wait_for_everyone()
    return report
