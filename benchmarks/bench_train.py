"""Benchmark one dptrain configuration: step time vs the bare backbone, and loader headroom.

Prints one JSON line for one config:

- ``step_s``: a full training step (loader wait, transfer, flips, momentum update, key and pool
  encoding, enqueue, mining, loss, backward, clipping, Adam);
- ``backbone_s``: the backbone alone on the same work: anchors forward + backward, keys forward
  and pool forward (the work no implementation can avoid);
- ``overhead`` / ``overhead_min``: median and min over steps of step_s / backbone_s, each step
  timed next to one reference pass (alternating which goes first; target <= 1.15);
- ``loader``: patches/s the data loader delivers on its own, per ``--loader-workers`` value
  (median and min over ``--loader-rounds`` rounds, the values interleaved within a round), and
  ``loader_headroom``: the config's loader rate over what a step consumes per second (2B + pool
  patches per step; target >= 5). ``--loader-only`` skips the steps (to choose
  ``--num-workers`` on a machine).

Usage (any `dptrain` flag after the benchmark's own)::

    python benchmarks/bench_train.py --steps 20 -- --preset paper --data BUILD --output-dir /tmp/b
    python benchmarks/bench_train.py --synthetic 4096 --steps 10 -- --preset tiny --batch-size 64
    python benchmarks/bench_train.py --synthetic 8192 --steps 5 --loader-only \
        --loader-workers 0,1,2 -- --preset tiny --batch-size 512 --pool-per-step 128
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def step_vs_backbone(trainer: Pretrainer, accelerator: Accelerator, warmup: int, steps: int):
    """(step seconds, reference seconds) per step, the two timed alternately."""
    device, cfg = accelerator.device, trainer.config
    backbone = accelerator.unwrap_model(trainer.model).backbone
    key_backbone = trainer.momentum_encoder.backbone
    p = trainer.index.patch_size
    x, y = (torch.rand(cfg.batch_size, 3, p, p, device=device) for _ in range(2))
    pool = torch.rand(cfg.pool_per_step, 3, p, p, device=device)

    def reference() -> None:
        with accelerator.autocast():
            backbone(x).float().mean().backward()
            with torch.no_grad():
                key_backbone(y)
                key_backbone(pool)

    it = iter(trainer.loader(0, warmup + steps))
    step_s, reference_s = [], []
    for i in range(warmup + steps):
        sides = [("step", lambda: trainer.training_step(next(it))), ("reference", reference)]
        seconds = {name: timed(fn, device) for name, fn in sides[:: 1 if i % 2 else -1]}
        if i >= warmup:
            step_s.append(seconds["step"])
            reference_s.append(seconds["reference"])
    return step_s, reference_s


def loader_rates(trainer: Pretrainer, workers: list[int], rounds: int, warmup: int, steps: int):
    """Patches/s of the loader alone per worker count: {workers: [rate per round]}."""
    cfg, original = trainer.config, trainer.config.num_workers
    demand = 2 * cfg.batch_size + cfg.pool_per_step
    rates: dict[int, list[float]] = {w: [] for w in workers}
    first = warmup + steps  # steps the timed training did not read
    for r in range(rounds):
        for w in workers[:: -1 if r % 2 else 1]:
            trainer.config.num_workers = w  # `Pretrainer.loader` reads it, as in training
            it = iter(trainer.loader(first, first + warmup + steps))
            for _ in range(warmup):  # worker start-up and prefetch fill are not timed
                next(it)
            start = time.perf_counter()
            for _ in range(steps):
                next(it)
            rates[w].append(demand * steps / (time.perf_counter() - start))
            del it
    trainer.config.num_workers = original
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--synthetic", type=int, default=0, help="build N random anchor rows")
    parser.add_argument("--patch", type=int, default=64, help="patch side of --synthetic")
    parser.add_argument(
        "--loader-workers",
        default="",
        help="comma-separated num_workers values for the loader alone (default: the config's)",
    )
    parser.add_argument("--loader-rounds", type=int, default=3, help="rounds of loader timings")
    parser.add_argument("--loader-only", action="store_true", help="time the loader alone")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="dptrain flags after --")
    args = parser.parse_args()
    train_args = [a for a in args.train_args if a != "--"]
    workdir = tempfile.TemporaryDirectory(prefix="bench_train_")  # removed at exit
    tmp = Path(workdir.name)
    if args.synthetic:
        train_args += ["--data", str(synthetic_build(tmp / "build", args.synthetic, args.patch))]
    if "--output-dir" not in train_args:
        train_args += ["--output-dir", str(tmp / "out")]
    config = config_from_args(train_args + ["--checkpointing-steps", "0"])
    workers = [int(w) for w in args.loader_workers.split(",") if w] or [config.num_workers]

    accelerator = Accelerator(mixed_precision=config.mixed_precision)
    trainer = Pretrainer(config, accelerator)
    b, m = config.batch_size, config.pool_per_step
    demand = 2 * b + m  # patches a step reads
    result = {
        "device": str(accelerator.device),
        "cpu_count": os.cpu_count(),
        "batch_size": b,
        "patch_size": trainer.index.patch_size,
        "pool_per_step": m,
        "queue_size": config.queue_size,
        "top_k": config.top_k,
        "augment": config.augment,
        "mixed_precision": accelerator.mixed_precision,
        "num_workers": config.num_workers,
    }
    if not args.loader_only:
        trainer.prefill()
        step_s, reference_s = step_vs_backbone(trainer, accelerator, args.warmup, args.steps)
        ratios = [s / r for s, r in zip(step_s, reference_s, strict=True)]
        result.update(
            step_s=round(statistics.median(step_s), 5),
            backbone_s=round(statistics.median(reference_s), 5),
            overhead=round(statistics.median(ratios), 3),
            overhead_min=round(min(ratios), 3),
            step_patches_per_s=round(demand / statistics.median(step_s)),
        )
    rates = loader_rates(trainer, workers, args.loader_rounds, args.warmup, args.steps)
    result["loader"] = {
        str(w): {"median": round(statistics.median(v)), "min": round(min(v))}
        for w, v in rates.items()
    }
    if not args.loader_only:
        own = statistics.median(rates.get(config.num_workers, rates[workers[0]]))
        result["loader_headroom"] = round(own * statistics.median(step_s) / demand, 2)
    print(json.dumps(result))
    accelerator.end_training()


if __name__ == "__main__":
    main()
