"""Benchmark one dptrain configuration: step time vs the bare backbone, and loader headroom.

Prints, for one config in one run:

- ``step_s``: a full training step (loader wait, transfer, flips, momentum update, key and pool
  encoding, enqueue, mining, loss, backward, clipping, Adam), mean over the timed steps;
- ``backbone_s``: the backbone alone at the same batch: anchors forward + backward, keys
  forward (the work no implementation can avoid);
- ``overhead``: step_s / backbone_s (target <= 1.15);
- ``loader_patches_per_s`` and ``loader_headroom``: patches/s the data loader delivers on its
  own, over what a step consumes per second (2B + pool patches per step; target >= 5).

Usage (any `dptrain` flag after the benchmark's own)::

    python benchmarks/bench_train.py --steps 20 -- --preset paper --data BUILD --output-dir /tmp/b
    python benchmarks/bench_train.py --synthetic 4096 --steps 10 -- --preset tiny --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from accelerate import Accelerator
from PIL import Image

from dpgen import schema
from dptrain.config import config_from_args
from dptrain.engine import Pretrainer


def synthetic_build(path: Path, anchors: int, patch: int, seed: int = 0) -> Path:
    """A random dpgen-format build: ``anchors`` pair rows in groups of 2, as many negatives."""
    rng = np.random.default_rng(seed)
    names = schema.generator_names(["sd21", "sdxl", "flux"])
    features = schema.patch_features(patch, names)

    def split(n: int, grouped: bool) -> datasets.Dataset:
        category = np.arange(n) % 2
        generator = np.where(category == 0, 0, 1 + (np.arange(n) // 2) % 3)
        return datasets.Dataset.from_dict(
            {
                "patch_id": [f"p{i}" for i in range(n)],
                "image_id": [f"i{i // 2}" for i in range(n)],
                "source_set": ["real"] * n,
                "view": ["source"] * n,
                "generator": generator.tolist(),
                "category": ((np.arange(n) // 2) % 2).tolist() if grouped else category.tolist(),
                "grid_row": [0] * n,
                "grid_col": [0] * n,
                "box": [[0, 0, patch, patch]] * n,
                "group_id": [f"g{i // 2}" for i in range(n)] if grouped else [None] * n,
                "patch": list(rng.integers(0, 256, (n, 3, patch, patch), dtype=np.uint8)),
            },
            features=features,
        )

    # One record: the trainer never reads ``images``, but an empty split does not reload.
    images = datasets.Dataset.from_dict(
        {
            "image_id": ["i0"], "source_set": ["real"], "generator": [""], "path": [""],
            "original_size": [[patch, patch]], "scale": [1.0], "crop": [[0, 0, patch, patch]],
            "size": [[patch, patch]], "mask": [Image.new("L", (patch, patch))],
            "mask_policy": [""], "category": [""], "annotation_id": [-1], "caption_index": [-1],
            "source_model": [""], "prompt": [""], "seed": [0], "source_steps": [-1],
            "source_guidance": [-1.0], "inpainted_by": [[]], "steps": [[]],
            "guidance": [[]], "grid_inside": [[1, 1]], "grid_outside": [[1, 1]],
            "n_inside": [0], "n_outside": [1],
        },
        features=schema.IMAGE_FEATURES,
    )  # fmt: skip
    datasets.DatasetDict(
        {"pairs": split(anchors, True), "negatives": split(anchors, False), "images": images}
    ).save_to_disk(str(path))
    return path


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--synthetic", type=int, default=0, help="build N random anchor rows")
    parser.add_argument("--patch", type=int, default=64, help="patch side of --synthetic")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="dptrain flags after --")
    args = parser.parse_args()
    train_args = [a for a in args.train_args if a != "--"]
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    if args.synthetic:
        train_args += ["--data", str(synthetic_build(tmp / "build", args.synthetic, args.patch))]
    if "--output-dir" not in train_args:
        train_args += ["--output-dir", str(tmp / "out")]
    config = config_from_args(train_args + ["--checkpointing-steps", "0"])

    accelerator = Accelerator(mixed_precision=config.mixed_precision)
    trainer = Pretrainer(config, accelerator)
    trainer.prefill()
    device = accelerator.device
    b, m = config.batch_size, config.pool_per_step
    demand = 2 * b + m  # patches a step reads

    # Full steps, fed by the real loader.
    n = args.warmup + args.steps
    it = iter(trainer.loader(0, n))
    for _ in range(args.warmup):
        trainer.training_step(next(it))
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        trainer.training_step(next(it))
    sync(device)
    step_s = (time.perf_counter() - start) / args.steps

    # The bare backbone at the same batch: anchors forward + backward, keys forward.
    backbone = accelerator.unwrap_model(trainer.model).backbone
    key_backbone = trainer.momentum_encoder.backbone
    p = trainer.index.patch_size
    x = torch.rand(b, 3, p, p, device=device)
    y = torch.rand(b, 3, p, p, device=device)
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            sync(device)
            start = time.perf_counter()
        with accelerator.autocast():
            backbone(x).float().mean().backward()
            with torch.no_grad():
                key_backbone(y)
    sync(device)
    backbone_s = (time.perf_counter() - start) / args.steps

    # The loader alone (its workers prefetch as in training).
    it = iter(trainer.loader(n, n + args.warmup + args.steps))
    for _ in range(args.warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(args.steps):
        next(it)
    loader_rate = demand * args.steps / (time.perf_counter() - start)

    result = {
        "device": str(device),
        "batch_size": b,
        "patch_size": p,
        "pool_per_step": m,
        "queue_size": config.queue_size,
        "top_k": config.top_k,
        "mixed_precision": accelerator.mixed_precision,
        "num_workers": config.num_workers,
        "step_s": round(step_s, 5),
        "backbone_s": round(backbone_s, 5),
        "overhead": round(step_s / backbone_s, 3),
        "loader_patches_per_s": round(loader_rate),
        "step_patches_per_s": round(demand / step_s),
        "loader_headroom": round(loader_rate * step_s / demand, 2),
    }
    print(json.dumps(result))
    accelerator.end_training()


if __name__ == "__main__":
    main()
