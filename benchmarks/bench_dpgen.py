"""dpgen benchmark: where a build's time goes, and how fast patches are cut and written.

Prints, in one run:
1. the share of a build's wall time spent outside pipeline calls, with the tiny pipelines at
   256 px (target <= 10%);
2. patches/s of extraction (grid placement + cutting + pairing) and Arrow writing on one core,
   on 512 px images with K = 3 generators (target >= 20,000).

    python benchmarks/bench_dpgen.py [--images 8]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the extraction target is per core

import numpy as np
import torch
import yaml

from dpgen.build import BuildConfig, Builder
from dpgen.grid import inside_grid, outside_grid
from dpgen.manifest import MANIFEST_DIR
from dpgen.masks import training_mask
from dpgen.pairing import View, pair_generated, pair_real
from dpgen.schema import generator_names, patch_features
from dpgen.shards import rows_table, write_table


def pipeline_share(images: int, workdir: Path) -> None:
    paths = []
    for name in ("tiny-sd21", "tiny-sdxl", "tiny-flux"):
        data = yaml.safe_load((MANIFEST_DIR / f"{name}.yaml").read_text())
        data["resolution"] = 256
        path = workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        paths.append(str(path))
    cfg = BuildConfig(out=workdir / "warm", generators=paths, num_images=1, num_generated=1)
    warm = Builder(cfg)
    warm.run()  # load and warm every pipeline once; the timed build reuses them
    cfg = BuildConfig(out=workdir / "build", generators=paths, num_images=images, shard_size=4)
    builder = Builder(cfg)
    builder.generators = warm.generators
    stats = builder.run()
    outside = stats.wall_seconds - stats.pipeline_seconds
    print(f"build at 256 px: {stats.images} images, {stats.patches} patches, wall {stats.wall_seconds:.2f} s, "
          f"pipeline calls {stats.pipeline_seconds:.2f} s")  # fmt: skip
    print(f"  outside-pipeline share: {outside / stats.wall_seconds:.1%} (target <= 10%)")


def extraction_rate(workdir: Path, repeats: int = 200) -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    size, patch = 512, 64
    labels = generator_names(["sd21", "sdxl", "flux"])
    features = patch_features(patch, labels)
    source = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    views = [
        View(n, i + 1, rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        for i, n in enumerate(labels[1:])
    ]
    start = time.perf_counter()
    parts_pairs, parts_neg = [], []
    for i in range(repeats):
        mask = training_mask(size, size, np.random.default_rng(i))
        inside, outside = inside_grid(mask), outside_grid(mask)
        pairs, negatives = pair_real(f"img{i}", source, views, inside, outside)
        parts_pairs.append(pairs)
        parts_neg.append(negatives)
        parts_pairs.append(pair_generated(f"gen{i}", source, views[0], inside))
    extracted = time.perf_counter()
    for j, parts in enumerate((parts_pairs, parts_neg)):
        write_table(rows_table(parts, features), workdir / f"bench-{j}.arrow")
    done = time.perf_counter()
    n = sum(len(p) for p in parts_pairs + parts_neg)
    print(f"extraction + write, one core: {n} patches in {done - start:.2f} s "
          f"(extract {extracted - start:.2f} s, write {done - extracted:.2f} s)")  # fmt: skip
    print(f"  {n / (done - start):,.0f} patches/s (target >= 20,000)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="real images in the timed build")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        extraction_rate(Path(tmp))
        pipeline_share(args.images, Path(tmp))


if __name__ == "__main__":
    main()
