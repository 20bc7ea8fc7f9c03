"""Benchmark `dpeval fingerprint` training: seconds per epoch (the issue's GPU figure).

Random uint8 images (``--num`` per class, ``--size`` px) are written as PNG folders, a
fingerprint is trained for ``--epochs`` epochs with the paper's settings (batch 64, AdamW
5e-4), and the per-epoch times logged in metrics.jsonl are printed: median and min over the
epochs after the first (warm-up), and the first alone; the one-off residual pass is not
in any epoch.

    python benchmarks/bench_fingerprint.py --size 256 --num 512 --epochs 4            # GPU
    python benchmarks/bench_fingerprint.py --size 64 --num 128 --epochs 3 --denoiser highpass
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from dpeval.fingerprint.config import FingerprintConfig
from dpeval.fingerprint.engine import METRICS_FILE, train


def write_random(folder: Path, n: int, size: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    g = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(g.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            folder / f"{i}.png"
        )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--num", type=int, default=512, help="images per class")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--denoiser", default="highpass", help="a --denoiser spec (not train:)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = FingerprintConfig(
            real=str(write_random(root / "real", args.num, args.size, 0)),
            fake=str(write_random(root / "fake", args.num, args.size, 1)),
            out=str(root / "fp"),
            size=args.size,
            epochs=args.epochs,
            denoiser=args.denoiser,
            checkpointing_epochs=0,
        )
        summary = train(config)
        lines = (root / "fp" / METRICS_FILE).read_text().splitlines()
        seconds = [
            r["seconds_per_epoch"] for r in map(json.loads, lines) if "seconds_per_epoch" in r
        ]
    later = seconds[1:] or seconds
    print(
        json.dumps(
            {
                "size": args.size,
                "images_per_class": args.num,
                "denoiser": args.denoiser,
                "device": summary["device"],
                "first_epoch_s": round(seconds[0], 3),
                "epoch_s_median": round(float(np.median(later)), 3),
                "epoch_s_min": round(float(np.min(later)), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
