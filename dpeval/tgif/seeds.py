"""Several seeds of one `dpeval tgif` run: where each goes, and their F1 as mean ± std.

``--seeds N`` runs the whole fine-tuning and evaluation N times with seeds ``--seed`` ..
``--seed + N - 1``, each a complete run of its own in ``OUTPUT/seed-<s>`` (results, best model,
checkpoints; resumable on its own). The combined ``results.json`` in ``OUTPUT`` holds, per
convention x generator x cell, the mean over seeds in ``f1`` (so it serves as a ``--baseline``
like a single run's) and the sample standard deviation (ddof 1) in ``f1_std``, and every run's
F1 and training summary under ``per_seed``. The table (`dpeval.tgif.report.markdown_table`)
computes the row of each seed, then the mean ± std of each column, so the "mean" columns are the
mean ± std over seeds of the mean over generators. MMFusion's authors average four runs;
DiffIML's per-epoch F1 swings by up to ±0.2, hence the option.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TypeVar

import numpy as np

from dpgen.options import Options

T = TypeVar("T", bound=Options)

SEED_DIR = "seed-{seed}"


def seed_configs(config: T) -> list[T]:
    """The config of each seed's run: seed ``s``, output ``OUTPUT/seed-<s>``, one seed, no
    baseline (the combined table has it), named ``<name> (seed <s>)``."""
    out = Path(config.output_dir)
    name = config.name or config.extractor
    return [
        dataclasses.replace(
            config,
            seed=seed,
            seeds=1,
            output_dir=str(out / SEED_DIR.format(seed=seed)),
            baseline=None,
            name=f"{name} (seed {seed})",
        )
        for seed in range(config.seed, config.seed + config.seeds)
    ]


def _nested(values: list[dict], reduce) -> dict:
    """``reduce`` over a list of equally nested dicts of floats (None = NaN), leaf by leaf."""
    first = values[0]
    if isinstance(first, dict):
        return {k: _nested([v[k] for v in values], reduce) for k in first}
    array = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    return float(reduce(array))


def sample_std(values: np.ndarray) -> float:
    """Standard deviation with ddof 1 (NaN for one value)."""
    return float(np.std(values, ddof=1)) if values.size > 1 else math.nan


def combine(runs: list[dict], seeds: list[int], results: dict) -> dict:
    """The combined results of several seeds.

    Args:
        runs: each seed's results (`results.json` of its folder), in seed order.
        seeds: the seeds.
        results: the combined run's own fields (name, decoder, extractor, ...).

    Returns:
        ``results`` plus ``f1`` (mean), ``f1_std``, ``n_images`` (the first run's: every seed
        scores the same images), ``seeds`` and ``per_seed``.
    """
    f1s = [r["f1"] for r in runs]
    return {
        **results,
        "f1": _nested(f1s, np.mean),
        "f1_std": _nested(f1s, sample_std),
        "n_images": runs[0]["n_images"],
        "seeds": seeds,
        "per_seed": [
            {
                "seed": seed,
                "output_dir": r["training"]["config"]["output_dir"],
                "f1": r["f1"],
                "training": {k: v for k, v in r["training"].items() if k != "config"},
            }
            for seed, r in zip(seeds, runs, strict=True)
        ],
    }
