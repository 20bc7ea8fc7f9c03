"""Fitting the prototype head: cross-entropy on -d_c, AdamW (Proto-LeakNet Sec. 3.3, 4.1).

The features are precomputed and frozen (`dpeval.attribute.embed`), so an epoch is a shuffle of
an in-memory tensor: the loop runs a fixed number of steps on accelerate (CPU or one GPU), logs
loss, accuracy and the lr to ``metrics.jsonl`` (`dptrain.tracker.JsonlTracker`) and draws
``training_curves.png`` beside the head at the end. A fit takes seconds to minutes, so it is
not checkpointed: an interrupted fit is rerun.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from sklearn.preprocessing import StandardScaler

from dpeval.attribute.prototype import PrototypeHead
from dptrain.curves import plot_curves
from dptrain.tracker import METRICS_FILE, log_with, tracker_config

logger = logging.getLogger(__name__)

CURVES_FILE = "training_curves.png"
PANELS = (("cross-entropy", ("loss",)), ("training accuracy", ("acc",)), ("temperature", ("tau",)))


@dataclass(frozen=True)
class HeadTraining:
    """Optimisation settings (defaults: Proto-LeakNet's AdamW lr 3e-4, weight decay 1e-4)."""

    steps: int = 2000
    batch_size: int = 256
    lr: float = 3e-4
    weight_decay: float = 1e-4
    log_every: int = 50
    seed: int = 0


def standardize_head(head: PrototypeHead, x: np.ndarray) -> None:
    """Set the head's feature mean and scale from training features x (N, T, D)."""
    n, t, d = x.shape
    scaler = StandardScaler().fit(x.reshape(n, t * d))
    head.feature_mean.copy_(torch.from_numpy(scaler.mean_.reshape(t, d)).float())
    head.feature_scale.copy_(torch.from_numpy(scaler.scale_.reshape(t, d)).float())


def train_head(
    head: PrototypeHead, x: np.ndarray, y: np.ndarray, settings: HeadTraining, out_dir: Path
) -> PrototypeHead:
    """Fit ``head`` on features x (N, T, D) of classes y (N,) in [0, K).

    Standardises with x's statistics, trains ``settings.steps`` AdamW steps on shuffled
    mini-batches, and writes ``metrics.jsonl`` and ``training_curves.png`` into ``out_dir``.

    Returns:
        The head, on the CPU, in eval mode.
    """
    set_seed(settings.seed)
    standardize_head(head, x)
    accelerator = Accelerator(log_with=log_with((), out_dir))
    accelerator.init_trackers("attribute", config=tracker_config(settings.__dict__))
    optimizer = torch.optim.AdamW(
        head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    head, optimizer = accelerator.prepare(head, optimizer)
    xs = torch.from_numpy(x).to(accelerator.device)
    ys = torch.from_numpy(y).long().to(accelerator.device)
    gen = torch.Generator().manual_seed(settings.seed)
    order, pos = torch.randperm(len(xs), generator=gen), 0
    head.train()
    for step in range(1, settings.steps + 1):
        if pos >= len(order):  # a new epoch: reshuffle
            order, pos = torch.randperm(len(xs), generator=gen), 0
        idx = order[pos : pos + settings.batch_size].to(accelerator.device)
        pos += settings.batch_size
        logits = head(xs[idx])
        loss = F.cross_entropy(logits, ys[idx])
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % settings.log_every == 0 or step == settings.steps:
            acc = (logits.argmax(1) == ys[idx]).float().mean()
            values = {"loss": loss.item(), "acc": acc.item()}
            if accelerator.unwrap_model(head).aggregation == "lse":
                values["tau"] = accelerator.unwrap_model(head).log_temperature.exp().item()
            accelerator.log(values, step=step)
    logger.info("prototype head: %d steps, last loss %.4f", settings.steps, loss.item())
    accelerator.end_training()
    plot_curves(Path(out_dir) / METRICS_FILE, Path(out_dir) / CURVES_FILE, PANELS, "prototype head")
    return accelerator.unwrap_model(head).cpu().eval()
