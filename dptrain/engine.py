"""The pretraining loop on accelerate (in the manner of the diffusers training examples).

One step (paper Sec. 3, authors' training loop):

1. momentum update of the key encoder (encoder + projector, m = 0.999);
2. the key encoder encodes the positives and ``pool_per_step`` pool patches (not augmented);
   the pool keys, gathered from every process, enter the queue before mining;
3. the online encoder encodes the anchors; top-k opposite-category queue entries are their
   negatives; InfoNCE (+ lambda_cls x head cross-entropy);
4. backward, gradient clipping, Adam, StepLR.

Before step 1 the queue is pre-filled with pool embeddings from the key encoder in eval mode.
A non-finite loss stops the run (the authors' code silently skipped such batches).
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path

import datasets
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from dpgen import schema
from dpgen.checkpoints import check_settings, resolve_run, save_accelerator_state, step_of

from . import card
from .augment import high_pass, to_model_input
from .config import MAY_CHANGE_ON_RESUME, TrainConfig
from .curves import PRETRAINING_PANELS, plot_curves
from .data import StepBatches, index_build
from .head import GeneratorHead
from .loss import DiffusionPrintLoss, LossOutput, concat_all_gather
from .model import DiffusionPrint
from .momentum import momentum_update
from .tracker import METRICS_FILE, log_with, tracker_config

logger = get_logger(__name__)

CURVES_FILE = "training_curves.png"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the batch's patch ids."""


class Pretrainer:
    """Every component of a run, prepared by ``accelerator``, and the step that trains them.

    Attributes:
        index, batches: the data (`dptrain.data`).
        model: the online encoder (prepared: DDP-wrapped with several processes).
        momentum_encoder: its EMA twin (never wrapped, no gradient).
        head: the generator head (prepared) or None.
        criterion: the loss, holding the queue.
        optimizer, scheduler: Adam and StepLR (prepared).
    """

    def __init__(self, config: TrainConfig, accelerator: Accelerator) -> None:
        self.config = config
        self.accelerator = accelerator
        set_seed(config.seed)  # identical initialisation on every process
        self.index = index_build(config.data, config.exclude_generators)
        self.batches = StepBatches(
            config.data,
            self.index,
            batch_size=config.batch_size,
            pool_per_step=config.pool_per_step,
            rank=accelerator.process_index,
            world_size=accelerator.num_processes,
            seed=config.seed,
            pairing=config.pairing,
            augment=config.augment,
            binary=config.head == "binary",
        )
        model = DiffusionPrint(
            out_channels=config.out_channels,
            width=config.width,
            depth=config.depth,
            embed_dim=config.embed_dim,
            proj_hidden=config.proj_hidden,
            patch_size=self.index.patch_size,
        )
        self.momentum_encoder = copy.deepcopy(model).requires_grad_(False).to(accelerator.device)
        num_classes = {"none": 0, "binary": 2, "generator": len(self.index.class_names)}[
            config.head
        ]
        head = GeneratorHead(config.embed_dim, num_classes) if num_classes else None
        self.criterion = DiffusionPrintLoss(
            queue_size=config.queue_size,
            dim=config.embed_dim,
            top_k=config.top_k,
            temperature=config.temperature,
            in_batch_negatives=config.in_batch_negatives,
            lambda_cls=config.lambda_cls,
        ).to(accelerator.device)
        params = list(model.parameters()) + (list(head.parameters()) if head else [])
        optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
        self.steps_per_epoch = self.batches.steps_per_epoch
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        # A prepared scheduler steps once per process per call (accelerate), hence the factor.
        scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer,
            step_size=config.lr_step_epochs * self.steps_per_epoch * accelerator.num_processes,
            gamma=config.lr_gamma,
        )
        if head is None:
            self.model, self.optimizer, self.scheduler = accelerator.prepare(
                model, optimizer, scheduler
            )
            self.head = None
        else:
            self.model, self.head, self.optimizer, self.scheduler = accelerator.prepare(
                model, head, optimizer, scheduler
            )
        self.params = params
        accelerator.register_for_checkpointing(self.momentum_encoder, self.criterion)

    def loader(self, start: int, stop: int) -> DataLoader:
        """Batches of steps ``start`` .. ``stop - 1`` (0-based), prefetched by workers."""
        return DataLoader(
            self.batches,
            batch_size=None,
            sampler=range(start, stop),
            num_workers=self.config.num_workers,
            pin_memory=self.accelerator.device.type == "cuda",
        )

    def _enqueue(self, keys: torch.Tensor, category: torch.Tensor, generator: torch.Tensor) -> None:
        device = self.accelerator.device
        self.criterion.queue.enqueue(
            concat_all_gather(keys.float()),
            concat_all_gather(category.to(device)),
            concat_all_gather(generator.to(device)),
        )

    @torch.no_grad()
    def prefill(self) -> None:
        """Fill the queue with pool embeddings (key encoder in eval mode), before step 1."""
        rows = self.batches.prefill_rows(self.config.queue_size)
        device = self.accelerator.device
        self.momentum_encoder.eval()
        keys = []
        for chunk in np.array_split(rows, max(1, math.ceil(len(rows) / 1024))):
            x = torch.from_numpy(self.batches.negatives.take(chunk)).to(device)
            with self.accelerator.autocast():
                keys.append(self.momentum_encoder(x).float())
        self.momentum_encoder.train()
        self._enqueue(
            torch.cat(keys),
            torch.from_numpy(self.index.neg_category[rows]),
            torch.from_numpy(self.index.neg_class[rows]),
        )

    def training_step(self, batch: dict) -> LossOutput:
        """One optimisation step on a `StepBatches` item.

        Raises:
            NonFiniteLossError: when the loss is not finite on any process.
        """
        acc, cfg, device = self.accelerator, self.config, self.accelerator.device
        flips = batch["flips"].to(device, non_blocking=True)
        anchor = to_model_input(batch["anchor"].to(device, non_blocking=True), flips[0])
        positive = to_model_input(batch["positive"].to(device, non_blocking=True), flips[1])
        if cfg.augment == "hp":
            anchor, positive = high_pass(anchor), high_pass(positive)
        pool = batch["pool"].to(device, non_blocking=True)
        category = batch["category"].to(device, non_blocking=True)

        momentum_update(acc.unwrap_model(self.model), self.momentum_encoder, cfg.momentum)
        with torch.no_grad(), acc.autocast():
            k = self.momentum_encoder(positive)
            pool_keys = self.momentum_encoder(pool)
        self._enqueue(pool_keys, batch["pool_category"], batch["pool_generator"])

        q = self.model(anchor)
        class_logits = self.head(q) if self.head is not None else None
        label = batch["label"].to(device, non_blocking=True)
        out = self.criterion(q, k, category, class_logits, label)

        finite = torch.isfinite(out.loss.detach()).float()
        if acc.num_processes > 1:
            finite = acc.reduce(finite, reduction="sum") / acc.num_processes
        if finite.item() < 1:
            self._stop_non_finite(batch)
        acc.backward(out.loss)
        acc.clip_grad_norm_(self.params, cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return out

    def _stop_non_finite(self, batch: dict) -> None:
        step = int(batch["step"]) + 1
        pairs = datasets.load_from_disk(str(Path(self.config.data) / schema.PAIRS))
        ids = pairs.data.table.column("patch_id").take(batch["rows"].numpy()).to_pylist()
        path = (
            Path(self.config.output_dir)
            / f"nonfinite-step{step}-rank{self.accelerator.process_index}.json"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"step": step, "anchor_patch_ids": ids}, indent=1))
        raise NonFiniteLossError(
            f"non-finite loss at step {step}; anchors of this process ({len(ids)}, listed in "
            f"{path}): {ids[:4]}{' ...' if len(ids) > 4 else ''}"
        )

    def queue_checksums(self) -> list[list[float]]:
        """Per-process fingerprint of the queue; equal rows mean identical queues."""
        qu = self.criterion.queue
        weights = torch.arange(1, qu.size + 1, device=qu.ptr.device, dtype=torch.float64)
        fp = torch.stack(
            [
                qu.embeddings.double().sum(),
                (qu.embeddings.double().sum(dim=1) * weights).sum(),
                (qu.category.double() * weights).sum(),
                (qu.generator.double() * weights).sum(),
                qu.ptr.double(),
            ]
        )
        return concat_all_gather(fp[None]).tolist()


def train(config: TrainConfig) -> Path:
    """Run pretraining; the main process writes ``save_pretrained`` output and a model card.

    Returns:
        ``config.output_dir``, holding model.safetensors, config.json, README.md,
        metrics.jsonl, training_curves.png and the checkpoints.

    Raises:
        dpgen.errors.InputError: a bad build folder or checkpoint, before any training step.
    """
    out = Path(config.output_dir)
    resume = resolve_run(config.resume_from_checkpoint, out)  # fail before any work
    if resume is not None:
        check_settings(resume, config.to_dict(), MAY_CHANGE_ON_RESUME)
    # Ranks started by a launcher (torchrun, `accelerate launch --multi_gpu`) on a machine with
    # no GPU: accelerate only picks gloo (MULTI_CPU) when told to use the CPU; without it each
    # rank would run alone as a single process.
    multi_cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    accelerator = Accelerator(
        cpu=multi_cpu,
        mixed_precision=config.mixed_precision,
        log_with=log_with(config.report_to, out),
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )
    try:
        logger.info(
            f"dptrain: {accelerator.num_processes} process(es), {accelerator.distributed_type}, "
            f"device {accelerator.device}, mixed precision {accelerator.mixed_precision}",
            main_process_only=True,
        )
        trainer = Pretrainer(config, accelerator)
        logger.info(f"data {trainer.index.counts}; classes {trainer.index.class_names}")
        logger.info(
            f"{trainer.total_steps} steps ({trainer.steps_per_epoch} per epoch), "
            f"global batch {config.batch_size * accelerator.num_processes}"
        )
        accelerator.init_trackers("dptrain", config=tracker_config(config.to_dict()))
        step = _resume_or_prefill(trainer, resume)
        step, last = _loop(trainer, step)
        _check_queues(trainer, step)
        _publish(trainer, step, last)
    finally:
        accelerator.end_training()
    return out


def _resume_or_prefill(trainer: Pretrainer, resume: Path | None) -> int:
    """Load ``resume`` and return its step, or pre-fill the queue of a new run (step 0)."""
    if resume is None:
        if trainer.config.resume_from_checkpoint:
            logger.info(f"no checkpoint in {trainer.config.output_dir}; starting a new run")
        trainer.prefill()
        return 0
    logger.info(f"resuming from {resume}")
    trainer.accelerator.load_state(str(resume))
    return step_of(resume)


def _loop(trainer: Pretrainer, step: int) -> tuple[int, dict[str, float]]:
    """Train from ``step`` to the end, logging and checkpointing; returns (step, last metrics)."""
    config, accelerator = trainer.config, trainer.accelerator
    progress = tqdm(
        total=trainer.total_steps,
        initial=step,
        desc="dptrain",
        disable=not accelerator.is_local_main_process,
    )
    last: dict[str, float] = {}
    for batch in trainer.loader(step, trainer.total_steps):
        lr = trainer.scheduler.get_last_lr()[0]  # the rate this step uses
        result = trainer.training_step(batch)
        step += 1
        progress.update(1)
        if step % config.log_every == 0 or step == trainer.total_steps:
            metrics = torch.stack(list(result.metrics().values()))
            metrics = accelerator.reduce(metrics, reduction="mean").tolist()
            last = dict(zip(result.metrics(), metrics, strict=True))
            last["lr"] = lr
            accelerator.log(last, step=step)
            progress.set_postfix(loss=f"{last['loss']:.4f}")
        if config.checkpointing_steps and step % config.checkpointing_steps == 0:
            # a complete checkpoint-<step> or none; old ones pruned only after it
            save_accelerator_state(
                accelerator,
                config.output_dir,
                step,
                total_limit=config.checkpoints_total_limit,
                extra={"settings": config.to_dict()},
            )
    progress.close()
    return step, last


def _check_queues(trainer: Pretrainer, step: int) -> None:
    checksums = trainer.queue_checksums()
    trainer.accelerator.log({"queue_checksums": checksums}, step=step)
    if any(c != checksums[0] for c in checksums):
        raise RuntimeError(f"the queue differs between processes: {checksums}")


def _publish(trainer: Pretrainer, step: int, last: dict[str, float]) -> None:
    """Main process: weights, model card, training curves; the Hub upload if asked."""
    config, accelerator, out = trainer.config, trainer.accelerator, Path(trainer.config.output_dir)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(trainer.model)
        model.save_pretrained(out)
        card.write_model_card(
            out,
            config=config.to_dict(),
            counts=trainer.index.counts,
            class_names=trainer.index.class_names,
            final_metrics=last,
            steps=step,
            num_processes=accelerator.num_processes,
        )
        plot_curves(
            out / METRICS_FILE, out / CURVES_FILE, PRETRAINING_PANELS, f"dptrain {out.name}"
        )
        logger.info(f"wrote {', '.join(card.MODEL_FILES)} and {CURVES_FILE} to {out}")
        if config.push_to_hub:
            url = card.push_to_hub(out, config.hub_model_id or out.resolve().name)
            logger.info(f"pushed to {url}")
    accelerator.wait_for_everyone()
