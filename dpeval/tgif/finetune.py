"""Fine-tune a fusion localizer on TGIF's FR semantic training split (paper Sec. 4.3).

SGD (lr 0.005, momentum 0.9, weight decay 0.0005) on `dpeval.tgif.objective.LocalizerLoss`:
the pixel-wise binary cross-entropy of the logits with padded pixels ignored (MLP decoder), or
DiffIML's latent-diffusion loss (diffusion decoder); an effective batch of 18 reached by
gradient accumulation (TruFor's 9 x 2); the extractor stays frozen inside the model. After every
epoch (and at the last step) the main process scores the validation split with TGIF's F1 and
keeps the best weights in memory (`ValidationBest`), then a complete
``OUTPUT/checkpoint-<step>`` is written through `dpgen.checkpoints` (``accelerator.save_state``:
model, optimizer, RNG states, and the validation-best step, F1 and weights); the previous
checkpoint is removed only after it. Only the validation split selects the checkpoint.

Resuming (``--resume-from-checkpoint latest``) gives exactly the weights and results of an
uninterrupted run: the crops are a pure function of (seed, step) (`dpeval.tgif.crops`), so is the
diffusion noise (`dpeval.tgif.objective.noise_generator`) and the validation's sampling (seeded
per image), the data loader does not draw from torch's global generator, and the checkpoint
restores that generator (SegFormer's drop-path uses it) together with the validation-best state.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn
from tqdm.auto import tqdm

from dpeval.metrics import AT_FIXED, mean_over_images
from dpeval.tgif.crops import StepCrops, step_loader
from dpeval.tgif.evaluate import score_samples
from dpeval.tgif.lite_baseline import LiteBaseline
from dpeval.tgif.objective import LocalizerLoss, noise_generator
from dpeval.tgif.reader import TGIFSample
from dpgen.checkpoints import save_accelerator_state, step_of
from dpgen.errors import InputError
from dpgen.options import Options, option

logger = logging.getLogger(__name__)

#: Complete checkpoints kept (the newest); older ones go only after a new one is in place.
KEEP_CHECKPOINTS = 1
CURVES_FILE = "training_curves.png"
#: The panels of the training-curve PNG: (title, metric names) as logged by the loop.
CURVE_PANELS = (
    ("training loss (BCE, or DiffIML's latent MSE)", ("loss",)),
    ("validation F1 (TGIF, @0.5)", ("val_f1",)),
)


@dataclass(kw_only=True)
class FinetuneConfig(Options):
    """Fine-tuning settings; defaults are the paper's (Sec. 4.3)."""

    crop_size: int = option(512, help="side of the training crops")
    batch_size: int = option(9, help="crops per forward pass and process")
    effective_batch: int = option(
        18, help="crops per optimizer step (batch size x processes x gradient accumulation)"
    )
    epochs: int = option(100, help="passes over the training split")
    max_steps: int | None = option(None, help="stop after this many optimizer steps")
    lr: float = option(0.005, help="SGD learning rate")
    momentum: float = option(0.9, help="SGD momentum")
    weight_decay: float = option(0.0005, help="SGD weight decay")
    num_workers: int = option(2, help="data-loader worker processes")
    seed: int = option(0, help="seeds the initialisation, the crop order and the augmentation")
    resume_from_checkpoint: str = option(
        "", help="a checkpoint-<step> folder, or 'latest' in --output-dir"
    )
    report_to: tuple[str, ...] = option(
        ("jsonl",),
        help="experiment trackers, comma-separated: jsonl (metrics.jsonl, always written), "
        "tensorboard, wandb, or any other accelerate tracker name",
    )


@dataclass(frozen=True)
class Schedule:
    """How many micro-batches make a step, and how many steps make an epoch and the run."""

    accumulation: int
    steps_per_epoch: int
    total: int


def schedule(n_train: int, config: FinetuneConfig, num_processes: int) -> Schedule:
    """The run's `Schedule`.

    Raises:
        InputError: ``--effective-batch`` is not a multiple of batch size x processes.
    """
    per_micro = config.batch_size * num_processes
    if config.effective_batch % per_micro:
        raise InputError(
            f"--effective-batch: {config.effective_batch} is not a multiple of --batch-size "
            f"{config.batch_size} x {num_processes} processes"
        )
    steps_per_epoch = max(1, math.ceil(n_train / config.effective_batch))
    total = config.max_steps if config.max_steps is not None else config.epochs * steps_per_epoch
    return Schedule(config.effective_batch // per_micro, steps_per_epoch, total)


class ValidationBest:
    """The validation-best step, F1 and weights; saved in every checkpoint, restored on resume.

    Registered with ``accelerator.register_for_checkpointing`` (``state_dict`` /
    ``load_state_dict``); the weights are a CPU copy of the model's state dict.
    """

    def __init__(self) -> None:
        self.step: int | None = None
        self.f1 = -math.inf
        self.weights: dict[str, torch.Tensor] | None = None

    def update(self, step: int, f1: float, model: nn.Module) -> bool:
        """Keep ``model``'s weights if ``f1`` beats the best so far (or is the first)."""
        if self.step is not None and not f1 > self.f1:
            return False
        self.step, self.f1 = step, f1
        self.weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        return True

    def state_dict(self) -> dict:
        return {"step": self.step, "f1": self.f1, "weights": self.weights}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.f1, self.weights = state["step"], state["f1"], state["weights"]


def validate(
    model: LiteBaseline, samples: Sequence[TGIFSample], device: torch.device, seed: int
) -> float:
    """Mean TGIF F1 at 0.5 over the validation fakes (the checkpoint-selection score); a
    diffusion decoder samples each image's map seeded by (``seed``, image), as the test does."""
    rows = score_samples(model, samples, device, progress=False, seed=seed)
    model.train()
    return mean_over_images(r["tgif" + AT_FIXED] for r in rows)[0]


def finetune(
    model: LiteBaseline,
    train: Sequence[TGIFSample],
    val: Sequence[TGIFSample],
    output_dir: str | Path,
    config: FinetuneConfig,
    accelerator: Accelerator,
    resume: Path | None = None,
) -> dict:
    """Train ``model`` in place; the main process loads the validation-best weights at the end.

    Args:
        resume: a complete checkpoint to continue from (`dpgen.checkpoints.resolve_checkpoint`).

    Returns:
        ``{"best_step", "best_val_f1", "steps", "epochs"}``.
    """
    plan = schedule(len(train), config, accelerator.num_processes)
    _log_plan(plan, len(train), len(val), config, accelerator)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        trainable, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    objective, optimizer = accelerator.prepare(LocalizerLoss(model), optimizer)
    best = ValidationBest()
    accelerator.register_for_checkpointing(best)
    step = 0
    if resume is not None:
        logger.info("resuming from %s", resume)
        accelerator.load_state(str(resume))
        step = step_of(resume)
    crops = StepCrops(
        train, config.crop_size, config.batch_size, accelerator.process_index,
        accelerator.num_processes, config.seed,
    )  # fmt: skip
    first, stop = step * plan.accumulation, plan.total * plan.accumulation
    batches = iter(step_loader(crops, first, stop, config.num_workers, config.seed))
    loop = _Loop(
        objective, optimizer, batches, plan, val, best, Path(output_dir), accelerator, config.seed
    )
    loop.run(step)
    if accelerator.is_main_process:  # only the main process validates, keeps and reports
        model.load_state_dict(best.weights)
    return {
        "best_step": best.step,
        "best_val_f1": best.f1,
        "steps": plan.total,
        "epochs": plan.total / plan.steps_per_epoch,
    }


def _log_plan(
    plan: Schedule, n_train: int, n_val: int, config: FinetuneConfig, accelerator: Accelerator
) -> None:
    logger.info(
        "fine-tuning on %d fakes, %d-px crops: %d processes x batch %d x %d accumulation = %d "
        "per step; %d steps (%d per epoch), validation on %d images",
        n_train, config.crop_size, accelerator.num_processes, config.batch_size,
        plan.accumulation, config.effective_batch, plan.total, plan.steps_per_epoch, n_val,
    )  # fmt: skip


@dataclass
class _Loop:
    """The training loop's state between steps."""

    objective: nn.Module  # the prepared LocalizerLoss
    optimizer: torch.optim.Optimizer
    batches: Iterator
    plan: Schedule
    val: Sequence[TGIFSample]
    best: ValidationBest
    out: Path
    accelerator: Accelerator
    seed: int

    def run(self, step: int) -> None:
        """Train from ``step`` to the end, validating and checkpointing after each epoch."""
        progress = tqdm(
            total=self.plan.total, initial=step, desc="fine-tuning", unit="step",
            disable=not self.accelerator.is_local_main_process,
        )  # fmt: skip
        self.objective.train()
        while step < self.plan.total:
            loss = self.step(step)
            step += 1
            self.accelerator.log({"loss": loss}, step=step)
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.4f}")
            if step % self.plan.steps_per_epoch == 0 or step == self.plan.total:
                self.end_of_epoch(step)
        progress.close()

    def step(self, step: int) -> float:
        """Optimizer step ``step`` (0-based) over ``accumulation`` micro-batches; the mean loss
        of all processes."""
        acc, accum, device = self.accelerator, self.plan.accumulation, self.accelerator.device
        total = torch.zeros((), device=device)
        for micro in range(accum):
            image, mask = (t.to(device, non_blocking=True) for t in next(self.batches))
            noise = noise_generator(self.seed, step * accum + micro, acc.process_index)
            # gradients are all-reduced only on the last micro-batch of the step
            sync = acc.no_sync(self.objective) if micro < accum - 1 else nullcontext()
            with sync:
                loss = self.objective(image, mask, noise) / accum
                acc.backward(loss)
            total += loss.detach()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(acc.reduce(total, reduction="mean"))

    def end_of_epoch(self, step: int) -> None:
        """Validate (main process), keep the best weights, write a complete checkpoint."""
        acc = self.accelerator
        if acc.is_main_process:
            model = acc.unwrap_model(self.objective).localizer
            f1 = validate(model, self.val, acc.device, self.seed)
            previous = self.best.f1
            self.best.update(step, f1, model)
            logger.info("step %d: validation F1 (TGIF) %.4f (best before %.4f)", step, f1, previous)
            acc.log({"val_f1": f1}, step=step)
        save_accelerator_state(
            acc,
            self.out,
            step,
            total_limit=KEEP_CHECKPOINTS,
            extra={"best_step": self.best.step, "best_val_f1": self.best.f1},
        )
