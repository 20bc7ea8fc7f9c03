"""Several seeds: sub-run configs, mean ± std per cell, the table with the decoder named."""

import math

import numpy as np
import pytest

from dpeval.tgif.reader import GENERATORS, MASK_GROUPS
from dpeval.tgif.report import markdown_table
from dpeval.tgif.run import TgifConfig
from dpeval.tgif.seeds import combine, sample_std, seed_configs

CELLS = ("bbox", "segm", "random", "semantic")


def _f1(level: float, random_empty: bool = False) -> dict:
    """Results' f1: every cell ``level`` plus a small offset per generator."""
    return {
        conv: {
            gen: {c: None if random_empty and c == "random" else level + 0.01 * i for c in CELLS}
            for i, gen in enumerate(GENERATORS)
        }
        for conv in ("tgif", "trufor_tgif")
    }


def _run(level: float, seed: int, **kw) -> dict:
    training = {"best_step": 1, "steps": 2, "config": {"output_dir": f"out/seed-{seed}"}}
    return {"name": "x", "f1": _f1(level, **kw), "n_images": {}, "training": training}


def test_seed_configs_split_the_output_folder():
    config = TgifConfig(
        extractor="random", data="d", output_dir="runs/x", seed=3, seeds=2, baseline="b.json"
    )
    subs = seed_configs(config)
    assert [(s.seed, s.seeds, s.output_dir, s.baseline) for s in subs] == [
        (3, 1, "runs/x/seed-3", None),
        (4, 1, "runs/x/seed-4", None),
    ]
    assert subs[1].name == "random (seed 4)"


def test_combine_gives_mean_and_sample_std_per_cell():
    runs = [_run(0.2, 0), _run(0.3, 1), _run(0.7, 2, random_empty=True)]
    got = combine(runs, [0, 1, 2], {"name": "three", "decoder": "diffiml"})
    cell = got["f1"]["tgif"]["sdxl"]["segm"]
    values = np.array([0.21, 0.31, 0.71])
    assert cell == pytest.approx(values.mean())
    assert got["f1_std"]["tgif"]["sdxl"]["segm"] == pytest.approx(np.std(values, ddof=1))
    assert math.isnan(got["f1"]["tgif"]["sd2"]["random"])  # one seed without the cell
    assert [p["output_dir"] for p in got["per_seed"]] == ["out/seed-0", "out/seed-1", "out/seed-2"]
    assert sample_std(np.array([0.5])) != sample_std(np.array([0.5]))  # NaN for one value


def test_table_shows_mean_and_std_per_cell_and_the_delta_between_decoders():
    runs = [_run(0.2, 0), _run(0.4, 1)]
    diffiml = combine(runs, [0, 1], {"name": "DiffusionPrint", "decoder": "diffiml"})
    mlp = {**_run(0.1, 0), "name": "DiffusionPrint", "decoder": "mlp"}
    table = markdown_table(diffiml, mlp)
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    header, ours, base, delta = rows[:4]
    assert header.startswith("| run | decoder | seeds | semantic SD 2.1 |")
    ours = [c.strip() for c in ours.strip("|").split("|")]
    # semantic SD 2.1 = 0.2 / 0.4 -> 30.0 ± 14.1; the semantic mean over generators (offsets
    # 0 .. 0.04, mean 0.02) -> 32.0 ± 14.1
    assert ours[:4] == ["DiffusionPrint", "diffiml", "2", "30.0 ± 14.1"]
    assert ours[3 + len(GENERATORS)] == "32.0 ± 14.1"
    assert base.startswith("| DiffusionPrint (baseline) | mlp | 1 | 10.0 | 11.0 |")
    assert delta.startswith("| Δ vs baseline | diffiml − mlp |  | +20.0 | +20.0 |")
    assert len(rows) == 2 * 4 and len(MASK_GROUPS) == 2  # both conventions


def test_results_without_a_decoder_are_the_mlp_s():
    old = {**_run(0.5, 0)}  # written before --decoder existed
    assert "| x | mlp | 1 | 50.0 |" in markdown_table(old)
