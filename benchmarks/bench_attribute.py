"""Embeddings per second of `dpeval.attribute.embed.embed` (the attribute commands' cost).

Random uint8 patches through the embedder an attributor uses: the GAP or projector output of a
DiffusionPrint at the paper's size (C = 64, 17 layers, random weights: speed does not depend on
them) or the tiny preset's, or a generator's latent path. The first batch warms up; then every
repeat embeds ``--batches`` batches of ``--batch-size`` (host-to-device copy and the copy back
included, as in the commands). Prints the median and the best of the repeats.

    python benchmarks/bench_attribute.py --device cuda --batch-size 512          # paper size
    python benchmarks/bench_attribute.py --size tiny --batch-size 512 --batches 2
    python benchmarks/bench_attribute.py --features latent:tiny-sd21 --batch-size 512
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from dpeval.attribute import embed
from dpeval.attribute.latent import LatentEmbedder
from dptrain.config import PRESETS
from dptrain.model import DiffusionPrint


def make_embedder(features: str, size: str, device: str):
    if features.startswith(embed.LATENT_PREFIX):
        return LatentEmbedder.from_generator(features[len(embed.LATENT_PREFIX) :], device=device)
    keys = ("out_channels", "width", "depth", "embed_dim", "proj_hidden")
    preset = {k: PRESETS[size][k] for k in keys if k in PRESETS[size]}
    torch.manual_seed(0)
    return embed.BackboneEmbedder(DiffusionPrint(**preset), features, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", default="gap", help="gap, projector or latent:GENERATOR")
    parser.add_argument("--size", choices=sorted(PRESETS), default="paper")
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--batches", type=int, default=4, help="batches per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    embedder = make_embedder(args.features, args.size, args.device)
    rng = np.random.default_rng(0)
    n = args.batch_size * args.batches
    patches = rng.integers(0, 256, (n, 3, args.patch_size, args.patch_size), dtype=np.uint8)
    embed.embed(embedder, patches[: args.batch_size], args.batch_size)  # warm-up
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = embed.embed(embedder, patches, args.batch_size)
        rates.append(n / (time.perf_counter() - start))
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"{args.features} ({args.size}), {n} patches of {args.patch_size} px -> {out.shape[1:]}")
    print(f"device {name}, batch {args.batch_size}, {torch.get_num_threads()} CPU threads")
    print(f"embeddings/s: median {statistics.median(rates):,.0f}, best {max(rates):,.0f}")


if __name__ == "__main__":
    main()
