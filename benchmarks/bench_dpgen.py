"""dpgen benchmark: where a build's time goes, and how fast patches are cut and written.

Prints, in one run:

1. ``extract_write_patches_per_s``: patches/s of extraction (mask, grid placement, cutting,
   pairing) plus writing them with dpgen's writer (`dpgen.shards.rows_table` + `write_table`),
   on one core, 512 px images with K = 3 generators (target >= 20,000); also per CPU second
   of the process (``extract_write_patches_per_cpu_s``), which a busy shared machine disturbs
   less than wall time, and extraction alone;
2. ``writer_patches_per_s`` / ``pyarrow_patches_per_s`` / ``writer_vs_pyarrow``: the writer
   against raw pyarrow writing the same columns (one ``pa.RecordBatch`` per image through
   ``pyarrow.ipc``, the patch as nested fixed-size lists, ClassLabels as int64); ratio of rates,
   target >= 0.5;
3. ``outside_pipeline_share``: the share of a build's wall time spent outside pipeline calls
   and pipeline loads, with the tiny pipelines at 256 px (target <= 10%).

1 and 2 run in rounds; within a round the writer and raw pyarrow write the same freshly
extracted rows, in alternating order, so drifts of a shared machine hit both sides alike. Each
figure is the median over rounds, with the minimum (the worst round) beside it.

    python benchmarks/bench_dpgen.py [--rounds 7] [--images-per-round 200] [--images 8]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the extraction target is per core

import numpy as np
import pyarrow as pa
import torch

from dpgen.build import BuildConfig, Builder
from dpgen.fixtures import small_manifests
from dpgen.grid import inside_grid, outside_grid
from dpgen.masks import training_mask
from dpgen.pairing import PatchRows, View, pair_generated, pair_real
from dpgen.schema import generator_names, patch_features
from dpgen.shards import rows_table, write_table

SIZE, PATCH = 512, 64
#: Raw pyarrow's schema for the same columns: plain types, the patch as fixed-size lists.
RAW_SCHEMA = pa.schema(
    [(c, pa.string()) for c in ("patch_id", "image_id", "source_set", "view")]
    + [("generator", pa.int64()), ("category", pa.int64())]
    + [("grid_row", pa.int16()), ("grid_col", pa.int16())]
    + [("box", pa.list_(pa.int32(), 4)), ("group_id", pa.string())]
    + [("patch", pa.list_(pa.list_(pa.list_(pa.uint8(), PATCH), PATCH), 3))]
)


def pipeline_share(images: int, workdir: Path) -> None:
    """Share of a tiny 3-generator build's wall time outside pipeline calls and loads."""
    paths = small_manifests(workdir / "manifests", steps=None)
    cfg = BuildConfig(out=workdir / "build", generators=paths, num_images=images, shard_size=4)
    stats = Builder(cfg).run()
    # Builds that load generators per pass time the loads apart; older ones load on first call.
    load = getattr(stats, "load_seconds", 0.0)
    outside = stats.wall_seconds - stats.pipeline_seconds - load
    print(f"build at 256 px: {stats.images} images, {stats.patches} patches, wall "
          f"{stats.wall_seconds:.2f} s, pipeline calls {stats.pipeline_seconds:.2f} s, "
          f"loads {load:.2f} s")  # fmt: skip
    print(f"outside_pipeline_share {outside / stats.wall_seconds:.3f}  (target <= 0.10)")


def extract(images: list[int], source: np.ndarray, views: list[View]) -> list[list[PatchRows]]:
    """Rows of real and generated images as a build cuts them: ``[pairs parts, negatives parts]``."""
    pairs, negatives = [], []
    for i in images:
        mask = training_mask(SIZE, SIZE, np.random.default_rng(i))
        inside, outside = inside_grid(mask), outside_grid(mask)
        p, n = pair_real(f"img{i}", source, views, inside, outside)
        pairs += [p, pair_generated(f"gen{i}", source, views[0], inside)]
        negatives.append(n)
    return [pairs, negatives]


def write_dpgen(splits: list[list[PatchRows]], features, folder: Path) -> None:
    for j, parts in enumerate(splits):
        write_table(rows_table(parts, features), folder / f"dpgen-{j}.arrow")


def raw_batch(rows: PatchRows, schema: pa.Schema) -> pa.RecordBatch:
    """The same columns, straight from numpy and lists (the patch zero-copy)."""
    n, p = len(rows), rows.patch.shape[-1]
    patch = pa.array(rows.patch.reshape(-1))
    for size in (p, p, 3):
        patch = pa.FixedSizeListArray.from_arrays(patch, size)
    box = pa.FixedSizeListArray.from_arrays(pa.array(rows.box.reshape(-1)), 4)
    strings = [pa.array(getattr(rows, c), pa.string()) for c in ("patch_id", "image_id", "source_set", "view")]  # fmt: skip
    numbers = [pa.array(getattr(rows, c)) for c in ("generator", "category", "grid_row", "grid_col")]  # fmt: skip
    columns = [*strings, *numbers, box, pa.array(rows.group_id, pa.string()), patch]
    assert all(len(c) == n for c in columns)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def write_pyarrow(splits: list[list[PatchRows]], folder: Path) -> None:
    for j, parts in enumerate(splits):
        batches = [raw_batch(rows, RAW_SCHEMA) for rows in parts if len(rows)]
        with pa.OSFile(str(folder / f"raw-{j}.arrow"), "wb") as sink:
            with pa.ipc.new_stream(sink, RAW_SCHEMA) as writer:
                for batch in batches:
                    writer.write_batch(batch)


def timed(fn, *args) -> tuple[Any, float, float]:
    """``fn(*args)``, its wall seconds and the CPU seconds of this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def extraction_and_writers(workdir: Path, rounds: int, images: int) -> None:
    """Rounds of: extract fresh rows; write them with dpgen and with raw pyarrow, alternating."""
    torch.set_num_threads(1)
    pa.set_cpu_count(1)
    rng = np.random.default_rng(0)
    labels = generator_names(["sd21", "sdxl", "flux"])
    features = patch_features(PATCH, labels)
    source = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    views = [View(n, i + 1, rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
             for i, n in enumerate(labels[1:])]  # fmt: skip
    write_dpgen(extract([0], source, views), features, workdir)  # warm imports and caches
    sides = {"dpgen": lambda splits: write_dpgen(splits, features, workdir),
             "pyarrow": lambda splits: write_pyarrow(splits, workdir)}  # fmt: skip
    rates: dict[str, list[float]] = collections.defaultdict(list)
    for r in range(rounds):
        splits, *extract_s = timed(extract, range(r * images, (r + 1) * images), source, views)
        n = sum(len(p) for parts in splits for p in parts)
        seconds = {}
        for name in sorted(sides, reverse=r % 2 == 1):  # alternate which side goes first
            seconds[name] = timed(sides[name], splits)[1:]
            for f in workdir.glob("*.arrow"):  # each side writes new files, as a build does
                f.unlink()
        rates["extract_write"].append(n / (extract_s[0] + seconds["dpgen"][0]))
        rates["extract_write_cpu"].append(n / (extract_s[1] + seconds["dpgen"][1]))
        rates["extract"].append(n / extract_s[0])
        rates["writer"].append(n / seconds["dpgen"][0])
        rates["pyarrow"].append(n / seconds["pyarrow"][0])
        rates["ratio"].append(seconds["pyarrow"][0] / seconds["dpgen"][0])
    print(f"{rounds} rounds of {n} patches (64 px, {images} real + {images} generated 512 px "
          f"images, K = 3), one core; median, min over rounds")  # fmt: skip
    report("extract_write_patches_per_s", rates["extract_write"], "target >= 20,000", "{:.0f}")
    report("extract_write_patches_per_cpu_s", rates["extract_write_cpu"], "CPU time", "{:.0f}")
    report("extract_patches_per_s", rates["extract"], "", "{:.0f}")
    report("writer_patches_per_s", rates["writer"], "", "{:.0f}")
    report("pyarrow_patches_per_s", rates["pyarrow"], "", "{:.0f}")
    report("writer_vs_pyarrow", rates["ratio"], "target >= 0.5", "{:.3f}")


def report(name: str, values: list[float], target: str, fmt: str) -> None:
    median, low = fmt.format(statistics.median(values)), fmt.format(min(values))
    print(f"{name} {median}  (min {low}{'; ' + target if target else ''})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds of extraction + writes")
    parser.add_argument("--images-per-round", type=int, default=200, help="real images a round")
    parser.add_argument("--images", type=int, default=8, help="real images in the timed build")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        extraction_and_writers(Path(tmp), args.rounds, args.images_per_round)
        pipeline_share(args.images, Path(tmp))


if __name__ == "__main__":
    main()
