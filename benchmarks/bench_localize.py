"""Time and peak memory of `dpeval localize` on one large photo, and throughput at 1024².

Builds a Lite Baseline with random weights (``--arch paper``: MiT-B2 + DiffusionPrint C = 64, the
paper's 37.6M-parameter model; ``--arch demo``: MiT-B2 + the demo's tiny extractor, what
scripts/demo.sh trains; ``--arch tiny``: a tiny SegFormer, for a quick check) or loads
``--model``, writes a ``--width`` x ``--height`` photo-like JPEG, and localizes it through the
command's own code path (tiles of ``--max-side``, seamless blend, 16-bit map, mask, overlay).
Prints the wall time and the process's peak resident memory (``ru_maxrss``) before and after,
and, with ``--throughput N``, images/s over N images of 1024 x 1024 (median and min of
``--repeats`` timed passes after one warm-up), e.g. on a GPU::

    python benchmarks/bench_localize.py --arch demo                       # 4000 x 3000 on CPU
    python benchmarks/bench_localize.py --arch paper --device cuda --throughput 32
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dpeval.localize import LocalizeConfig, localize, predict_tiles
from dpeval.tgif.card import load_localizer
from dpeval.tgif.lite_baseline import MIT_B2_CONFIG, LiteBaseline

ARCHS = {
    "paper": (MIT_B2_CONFIG, {"out_channels": 64}),
    "demo": (MIT_B2_CONFIG, {"out_channels": 8, "width": 16, "depth": 5}),
    "tiny": (
        {"hidden_sizes": [16, 32, 40, 64], "depths": [1] * 4, "num_attention_heads": [1] * 4,
         "decoder_hidden_size": 32},
        {"out_channels": 4, "width": 8, "depth": 3},
    ),
}  # fmt: skip


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def photo(height: int, width: int) -> np.ndarray:
    """A smooth gradient with noise (JPEG-compressible, not constant)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([xx / width * 200, yy / height * 200, (xx + yy) / (width + height) * 150], -1)
    return np.clip(base + rng.normal(0, 6, (height, width, 3)), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="demo")
    parser.add_argument("--model", help="a localizer folder instead of --arch")
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--max-side", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=0, help="0: the command's default")
    parser.add_argument("--throughput", type=int, default=0, help="images of 1024² to time")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = args.model or str(tmp / "model")
        if not args.model:
            torch.manual_seed(0)
            rgb, ext = ARCHS[args.arch]
            LiteBaseline(rgb_encoder_config=rgb, extractor_config=ext).save_pretrained(model_dir)
        Image.fromarray(photo(args.height, args.width)).save(tmp / "big.jpg", quality=90)
        before = peak_rss_mib()
        config = LocalizeConfig(model=model_dir, inputs=[str(tmp / "big.jpg")], out=str(tmp / "out"),
                                max_side=args.max_side, device=args.device,
                                batch_size=args.batch_size)  # fmt: skip
        start = time.perf_counter()
        summary = localize(config)
        seconds = time.perf_counter() - start
        assert summary.localized == 1, summary
        record = (tmp / "out" / "results.jsonl").read_text()
        print(f"{args.arch if not args.model else args.model}: {args.width} x {args.height} on "
              f"{args.device}, tiles of {args.max_side}: {seconds:.1f} s; peak RSS "
              f"{before:.0f} MiB before, {peak_rss_mib():.0f} MiB after")  # fmt: skip
        print(record.strip())
        if args.throughput:
            throughput(load_localizer(model_dir, args.device), args)


def throughput(model: LiteBaseline, args: argparse.Namespace) -> None:
    images = [photo(1024, 1024) for _ in range(min(args.throughput, 4))]
    batch = args.batch_size or (4 if args.device.startswith("cuda") else 1)

    def one_pass() -> float:
        start = time.perf_counter()
        for i in range(0, args.throughput, batch):
            predict_tiles(
                model, [images[j % len(images)] for j in range(i, i + batch)], args.device
            )
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return args.throughput / (time.perf_counter() - start)

    one_pass()  # warm-up
    rates = [one_pass() for _ in range(args.repeats)]
    print(f"1024² images/s (batch {batch}): median {statistics.median(rates):.2f}, "
          f"min {min(rates):.2f} over {args.repeats} passes")  # fmt: skip


if __name__ == "__main__":
    main()
