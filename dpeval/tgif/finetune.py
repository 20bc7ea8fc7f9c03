"""Fine-tune a fusion localizer on TGIF's FR semantic training split (paper Sec. 4.3).

SGD (lr 0.005, momentum 0.9, weight decay 0.0005) on the pixel-wise binary cross-entropy of
the logits, padded pixels ignored; an effective batch of 18 reached by gradient accumulation
(TruFor's 9 x 2); the extractor stays frozen inside the model. After every epoch (and at the
last step) the main process scores the validation split with TGIF's F1 and keeps the best
weights in ``OUTPUT/best/model.safetensors``; ``accelerator.save_state`` checkpoints go to
``OUTPUT/checkpoint-<step>`` and ``resume_from_checkpoint="latest"`` continues from the newest,
as in dptrain.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dpeval.tgif.augment import IGNORE, augment
from dpeval.tgif.evaluate import load_mask, load_rgb, score_samples
from dpeval.tgif.metrics import mean_f1
from dpeval.tgif.reader import TGIFSample
from dpgen.errors import InputError
from dpgen.options import Options, option

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
BEST_DIR = "best"
BEST_WEIGHTS = "model.safetensors"
BEST_INFO = "best.json"


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
    resume_from_checkpoint: str = option(
        "", help="a checkpoint-<step> folder, or 'latest' in --output-dir"
    )


class TGIFCrops(Dataset):
    """Augmented training crops: ``(image (3, S, S) uint8, mask (S, S) int64 in {-1, 0, 1})``."""

    def __init__(self, samples: Sequence[TGIFSample], crop_size: int) -> None:
        self.samples = list(samples)
        self.crop_size = crop_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.samples[i]
        image, mask = load_rgb(s.image), load_mask(s.mask)
        if image.shape[:2] != mask.shape:
            raise InputError(
                f"{s.image}: size {image.shape[:2]} differs from its mask {s.mask} {mask.shape}"
            )
        # torch's RNG is seeded per worker by the DataLoader, so crops differ across workers
        rng = np.random.default_rng(int(torch.randint(2**62, ())))
        image, mask = augment(image, mask, self.crop_size, rng)
        return torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(mask)


def masked_bce(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over pixels whose mask is not `IGNORE`. logits (B, 1, H, W), mask (B, H, W)."""
    valid = mask != IGNORE
    return F.binary_cross_entropy_with_logits(logits[:, 0][valid], mask[valid].float())


def _checkpoints(out: Path) -> list[Path]:
    found = [
        p for p in out.glob(CHECKPOINT_PREFIX + "*") if p.name[len(CHECKPOINT_PREFIX) :].isdigit()
    ]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def _resume_path(out: Path, spec: str) -> Path | None:
    if spec == "latest":
        found = _checkpoints(out)
        return found[-1] if found else None
    path = Path(spec)
    if not path.is_dir() or not path.name[len(CHECKPOINT_PREFIX) :].isdigit():
        raise InputError(f"{path}: not a checkpoint directory ({CHECKPOINT_PREFIX}<step>)")
    return path


def _cycle(loader: DataLoader) -> Iterator:
    while True:
        yield from loader


def validate(model: nn.Module, samples: Sequence[TGIFSample], device: torch.device) -> float:
    """Mean TGIF F1 over the validation fakes (the checkpoint-selection score)."""
    rows = score_samples(model, samples, device, progress=False)
    model.train()
    return mean_f1(r["tgif"] for r in rows)


def finetune(
    model: nn.Module,
    train: Sequence[TGIFSample],
    val: Sequence[TGIFSample],
    output_dir: str | Path,
    config: FinetuneConfig,
    accelerator: Accelerator,
) -> dict:
    """Train ``model`` in place and load the validation-best weights into it at the end.

    Returns:
        ``{"best_step", "best_val_f1", "steps", "epochs"}`` (also in ``OUTPUT/best/best.json``).
    """
    out = Path(output_dir)
    per_step = config.batch_size * accelerator.num_processes
    if config.effective_batch % per_step:
        raise InputError(
            f"effective batch {config.effective_batch} is not a multiple of batch size "
            f"{config.batch_size} x {accelerator.num_processes} processes"
        )
    accum = config.effective_batch // per_step
    steps_per_epoch = max(1, math.ceil(len(train) / config.effective_batch))
    total = config.max_steps if config.max_steps is not None else config.epochs * steps_per_epoch
    logger.info(
        "fine-tuning on %d crops of %d px: %d processes x batch %d x %d accumulation = %d per step; "
        "%d steps (%d per epoch), validation on %d images",
        len(train), config.crop_size, accelerator.num_processes, config.batch_size, accum,
        config.effective_batch, total, steps_per_epoch, len(val),
    )  # fmt: skip
    loader = DataLoader(
        TGIFCrops(train, config.crop_size),
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(train) >= per_step,
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        trainable, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    step, best = 0, {"best_step": None, "best_val_f1": -math.inf}
    resume = (
        _resume_path(out, config.resume_from_checkpoint) if config.resume_from_checkpoint else None
    )
    if resume is None and config.resume_from_checkpoint:
        logger.info("no checkpoint in %s; starting a new run", out)
    if resume is not None:
        logger.info("resuming from %s", resume)
        accelerator.load_state(str(resume))
        step = int(resume.name[len(CHECKPOINT_PREFIX) :])
        if (out / BEST_DIR / BEST_INFO).is_file():
            best = json.loads((out / BEST_DIR / BEST_INFO).read_text())
    batches = _cycle(loader)
    model.train()
    while step < total:
        for micro in range(accum):
            image, mask = next(batches)
            # gradients are all-reduced only on the last micro-batch of the step
            context = accelerator.no_sync(model) if micro < accum - 1 else nullcontext()
            with context:
                loss = masked_bce(model(image), mask) / accum
                accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if step % 10 == 0 or step == 1:
            logger.info("step %d/%d loss %.4f", step, total, loss.item() * accum)
        if step % steps_per_epoch == 0 or step == total:
            best = _end_of_epoch(model, val, out, step, best, accelerator)
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(model)
    model.load_state_dict(load_file(str(out / BEST_DIR / BEST_WEIGHTS)))
    return {**best, "steps": step, "epochs": step / steps_per_epoch}


def _end_of_epoch(
    model: nn.Module,
    val: Sequence[TGIFSample],
    out: Path,
    step: int,
    best: dict,
    accelerator: Accelerator,
) -> dict:
    """Validate, keep the best weights, save a checkpoint (replacing the previous one)."""
    if accelerator.is_main_process:
        f1 = validate(accelerator.unwrap_model(model), val, accelerator.device)
        logger.info("step %d: validation F1 (TGIF) %.4f (best %.4f)", step, f1, best["best_val_f1"])
        if f1 > best["best_val_f1"] or best["best_step"] is None:
            best = {"best_step": step, "best_val_f1": f1}
            (out / BEST_DIR).mkdir(parents=True, exist_ok=True)
            state = {
                k: v.contiguous() for k, v in accelerator.unwrap_model(model).state_dict().items()
            }
            save_file(state, str(out / BEST_DIR / BEST_WEIGHTS))
            (out / BEST_DIR / BEST_INFO).write_text(json.dumps(best))
        for old in _checkpoints(out):
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(out / f"{CHECKPOINT_PREFIX}{step}"))
    return best
