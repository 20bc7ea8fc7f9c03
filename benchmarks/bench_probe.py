"""Fit time of the probe's logistic regression against scikit-learn's (lbfgs), 360k x 64.

Synthetic embeddings: correlated low-rank features like GAP outputs of a CNN (``--kind
lowrank``, the realistic case) or independent features (``--kind iid``, the easiest case for
L-BFGS). Both fits see the same standardised float32 data; the accuracy gap is printed too.

    python benchmarks/bench_probe.py [--n 360000] [--dim 64] [--kind lowrank|iid]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.linear_model import LogisticRegression as SkLogisticRegression

from dpeval.logistic import LogisticRegression, Standardizer


def embeddings(n: int, dim: int, kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "lowrank":
        latent = rng.normal(size=(n, 8))
        x = latent @ rng.normal(size=(8, dim)) + 0.3 * rng.normal(size=(n, dim))
        logit = latent @ rng.normal(size=8) * 0.8 + 0.5 * (x[:, 0] - x[:, 1])
    else:
        x = rng.normal(size=(n, dim)) * rng.uniform(0.5, 3, size=dim)
        logit = (x / x.std(0)) @ (0.3 * rng.normal(size=dim))
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return x.astype(np.float32), y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=360_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--kind", choices=("lowrank", "iid"), default="lowrank")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many fits")
    args = parser.parse_args()
    x, y = embeddings(args.n, args.dim, args.kind)
    x = Standardizer().fit(x).transform(x)

    def best(fit) -> tuple[float, object]:
        times, model = [], None
        for _ in range(args.repeats):
            start = time.perf_counter()
            model = fit()
            times.append(time.perf_counter() - start)
        return min(times), model

    ours_s, ours = best(lambda: LogisticRegression().fit(x, y))
    sk_s, sk = best(lambda: SkLogisticRegression().fit(x, y))
    gap = abs((ours.predict(x) == y).mean() - (sk.predict(x) == y).mean())
    print(f"{args.n} x {args.dim} ({args.kind}), best of {args.repeats}")
    print(f"dpeval  Newton : {ours_s:7.3f} s  ({ours.n_iter_} iterations)")
    print(f"sklearn lbfgs  : {sk_s:7.3f} s  ({sk.n_iter_[0]} iterations)")
    print(f"speed-up       : {sk_s / ours_s:7.1f}x   accuracy gap {100 * gap:.3f} points")


if __name__ == "__main__":
    main()
