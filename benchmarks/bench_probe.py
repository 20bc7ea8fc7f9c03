"""Where the linear probe's time goes: feature extraction vs the classifier's fit.

The probe (``dpeval probe``, paper Sec. 4.1) runs the frozen DnCNN over every patch of the
evaluation set, then fits scikit-learn's standardiser + logistic regression on the pooled
features. This script times both halves with the probe's own functions
(`dpeval.probe.embed`, `dpeval.probe.fit_classifier`), interleaved and repeated:

- extraction: a random-init DiffusionPrint (C = 64, the paper's) over ``--patches`` random
  64-px patches on ``--device``, as patches per second;
- fit: ``--n-fit`` x C synthetic GAP-like features (correlated, low rank) with a noisy linear
  label, the paper's evaluation set being 360,000 patches.

It prints the median and min of each, and the share of the fit in a probe of ``--n-fit``
patches (extraction extrapolated linearly from the measured rate).

    python benchmarks/bench_probe.py [--patches 256] [--n-fit 360000] [--repeats 3] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from dpeval.extractors import load_extractor
from dpeval.probe import ProbeConfig, embed, fit_classifier


def gap_like(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Correlated low-rank features (like a CNN's GAP outputs) and labels in {0, 1}."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 8))
    x = latent @ rng.normal(size=(8, dim)) + 0.3 * rng.normal(size=(n, dim))
    logit = latent @ rng.normal(size=8) * 0.8 + 0.5 * (x[:, 0] - x[:, 1])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return x.astype(np.float32), y


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patches", type=int, default=256, help="patches to extract")
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--n-fit", type=int, default=360_000, help="rows of the fit")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    extractor = load_extractor("random", args.device)
    rng = np.random.default_rng(0)
    size = (args.patches, 3, args.patch_size, args.patch_size)
    patches = rng.integers(0, 256, size=size, dtype=np.uint8)
    config = ProbeConfig(
        model="random", data="-", batch_size=args.batch_size, progress=False, device=args.device
    )
    x, y = gap_like(args.n_fit, extractor.out_channels)

    extract_s, fit_s = [], []
    for _ in range(args.repeats):  # interleaved: both sides see the same machine load
        extract_s.append(timed(lambda: embed(extractor, patches, config)))
        fit_s.append(timed(lambda: fit_classifier(x, y)))

    rate = args.patches / statistics.median(extract_s)
    fit_med = statistics.median(fit_s)
    extract_at_n = args.n_fit / rate
    print(f"device {args.device}, {args.repeats} repeats (median / min)")
    print(
        f"extraction: {args.patches} patches of {args.patch_size} px in "
        f"{statistics.median(extract_s):.2f} / {min(extract_s):.2f} s = {rate:,.0f} patches/s"
    )
    print(
        f"fit       : {args.n_fit:,} x {extractor.out_channels} in {fit_med:.2f} / "
        f"{min(fit_s):.2f} s"
    )
    print(
        f"probe of {args.n_fit:,} patches: extraction ~{extract_at_n:,.0f} s, fit {fit_med:.1f} s "
        f"-> the fit is {100 * fit_med / (fit_med + extract_at_n):.1f} % of it"
    )


if __name__ == "__main__":
    main()
