"""dpgen.schedule and the build loop: generator-major passes, batches, rebalanced resume."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dpgen.build import Builder, build, pending_shards
from dpgen.fixtures import small_manifests
from dpgen.info import build_counts, content_digest, load_build
from dpgen.masks import MaskError, to_image
from dpgen.schema import IMAGES, NEGATIVES, PAIRS, patch_array
from dpgen.sources import SourceError, prepare


@pytest.fixture(scope="session")
def three_manifests(tmp_path_factory) -> list[str]:
    """The three tiny generators at 256 px, 2 steps."""
    return small_manifests(tmp_path_factory.mktemp("three"))


def job_major_rows(cfg) -> dict[str, tuple[list[str], np.ndarray]]:
    """The build as the loop before passes made it: one job at a time, every generator kept
    loaded, one image per call (a transcription of that loop over the same decisions)."""
    builder = Builder(cfg)
    generators = {s.name: builder.make_generator(s) for s in builder.specs}
    parts = {PAIRS: [], NEGATIVES: []}
    for job in builder.jobs():
        try:
            p = builder.planner.prepare(job)
        except (SourceError, MaskError):
            continue
        if p.text2image is not None:
            d = p.text2image
            (made,) = generators[job.generator].generate(
                [p.prompt], [d.seed], d.steps, d.guidance, *p.size
            )
            multiple, side = builder.planner.source_rule(job)
            p.image = prepare(made, multiple, side, 2 * cfg.patch_size, job.key).image
        for name in p.painters:
            d = p.draws[name]
            (out,) = generators[name].inpaint([p.image], [to_image(p.mask)], [p.prompt], [d.seed], d.steps, d.guidance)  # fmt: skip
            p.views[name] = np.asarray(out)
        pairs, negatives = builder._rows(p)
        parts[PAIRS].append(pairs)
        parts[NEGATIVES].append(negatives)
    return {
        split: ([i for r in rows for i in r.patch_id], np.concatenate([r.patch for r in rows]))
        for split, rows in parts.items()
    }


def _rows(out: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    dd = load_build(out)
    return {
        s: (dd[s]["patch_id"], patch_array(dd[s].data.column("patch"))) for s in (PAIRS, NEGATIVES)
    }


@pytest.mark.slow
def test_one_generator_at_a_time_gives_the_job_major_rows(
    tmp_path, three_manifests, small_config, caplog
):
    cfg = small_config(tmp_path / "b", three_manifests, num_images=1, shard_size=2, pass_size=8)
    with caplog.at_level(logging.INFO, logger="dpgen.schedule"):
        build(cfg)
    events = [r.getMessage().split(":")[0] + (" +" if "loaded" in r.getMessage() else " -")
              for r in caplog.records if "loaded" in r.getMessage() or "released" in r.getMessage()]  # fmt: skip
    resident = set()
    for event in events:
        name, sign = event.rsplit(" ", 1)
        if sign == "+":
            assert resident <= {name}, f"{name} loaded while {resident} resident: {events}"
            resident.add(name)
        else:
            resident.discard(name)
    assert [e for e in events if e.endswith("-")] == [
        f"tiny-{n} -" for n in ("sd21", "sdxl", "flux")
    ]
    reference = job_major_rows(dataclasses.replace(cfg, out=tmp_path / "unused"))
    for split, (ids, patches) in _rows(cfg.out).items():
        assert ids == reference[split][0], split
        np.testing.assert_array_equal(patches, reference[split][1])


@pytest.mark.slow
def test_batches_keep_ids_and_counts_and_resume_to_their_own_bytes(
    tmp_path, three_manifests, small_config
):
    one = small_config(
        tmp_path / "one", three_manifests, num_images=2, num_generated=2, shard_size=4
    )
    three = dataclasses.replace(one, out=tmp_path / "three", batch_size=3)
    build(one)
    build(three)
    rows_one, rows_three = _rows(one.out), _rows(three.out)
    for split in rows_one:
        assert rows_one[split][0] == rows_three[split][0]
    c1, c3 = build_counts(one.out), build_counts(three.out)
    assert {s: c1[s]["rows"] for s in (PAIRS, NEGATIVES)} == {
        s: c3[s]["rows"] for s in (PAIRS, NEGATIVES)
    }
    # a batch shares its steps and guidance; the records say what each image got
    records = load_build(three.out)[IMAGES]
    made = [r for r in records if r["source_set"] == "generated"]
    assert len({(r["generator"], r["source_steps"], r["source_guidance"]) for r in made}) <= 3
    assert all(r["source_steps"] >= 2 for r in made)
    # lose the second shard (as a kill before its commit would) and resume
    digest = content_digest(three.out)
    resumed = tmp_path / "resumed"
    shutil.copytree(three.out, resumed)
    for path in [resumed / "ledger" / "shard-00001.json", resumed / "dataset_dict.json",
                 *(resumed / s / "shard-00001.arrow" for s in (PAIRS, NEGATIVES, IMAGES))]:  # fmt: skip
        path.unlink()
    build(dataclasses.replace(three, out=resumed))
    assert content_digest(resumed) == digest


def test_pending_shards_are_spread_over_every_process():
    done = {0, 2, 4, 6}  # rank 1 of 2 died: its shards are pending
    assert pending_shards(8, done, 0, 2) == [1, 5]
    assert pending_shards(8, done, 1, 2) == [3, 7]
    assert pending_shards(3, set(), 0, 1) == [0, 1, 2]


@pytest.mark.slow
def test_rerun_after_one_rank_failed_splits_the_rest(tmp_path, small_manifests):
    args = ["-m", "dpgen", "build", "--generators", ",".join(small_manifests), "--num-images", "2",
            "--num-generated", "1", "--patch-size", "32", "--shard-size", "1", "--out", str(tmp_path / "b")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    subprocess.run([*launcher, *args], env=env, timeout=600, check=True, capture_output=True)
    out = tmp_path / "b"
    lost = [
        i
        for i in range(4)
        if json.loads((out / "ledger" / f"shard-{i:05d}.json").read_text())["process"] == 1
    ]
    for i in lost:  # rank 1's shards, as if it had died before committing them
        (out / "ledger" / f"shard-{i:05d}.json").unlink()
    (out / "dataset_dict.json").unlink()
    subprocess.run([*launcher, *args], env=env, timeout=600, check=True, capture_output=True)
    redone = [
        json.loads((out / "ledger" / f"shard-{i:05d}.json").read_text())["process"] for i in lost
    ]
    assert sorted(redone) == [0, 1]
    assert build_counts(out)["formulas_hold"]
