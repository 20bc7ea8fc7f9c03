"""dpgen evalset: kinds, labels and caps from tiny pipelines; overlap refusal; the grid."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from datasets import Dataset, DatasetDict, load_from_disk
from PIL import Image

from dpgen import cli, evalset
from dpgen.evalset import EvalsetConfig, EvalsetError, build_evalset, full_grid
from dpgen.schema import EVAL, IMAGES, patch_array


def test_full_grid_is_non_overlapping_and_inside() -> None:
    grid = full_grid(100, 70, 32)
    assert (grid.rows, grid.cols) == (2, 3)
    boxes = [c.box for c in grid.cells]
    assert boxes[0] == (0, 1, 32, 33) and all(b[2] <= 100 and b[3] <= 70 for b in boxes)


def _folder(path, n: int, seed: int) -> str:
    path.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 72, 3), dtype=np.uint8)).save(path / f"im{i}.png")
    return str(path)


def test_folders_and_tiny_pipeline(tmp_path) -> None:
    real = _folder(tmp_path / "real", 2, 0)
    config = EvalsetConfig(
        out=str(tmp_path / "eval"),
        generators=["tiny-sd21"],
        generated={"mj": _folder(tmp_path / "mj", 3, 1)},
        reconstruct=real,
        pristine=real,
        num_generated=2,
        patch_size=16,
        image_size=64,
        max_per_source=10,
        held_out=["mj"],
    )
    counts = build_evalset(config)
    assert counts == {
        "latent-reconstructed/tiny-sd21": 10,
        "pristine/real": 10,
        "generated/mj": 10,
        "generated/tiny-sd21": 10,
    }
    ds = load_from_disk(str(tmp_path / "eval"))[EVAL]
    kinds, labels = ds["kind"], ds["label"]
    assert all((k == "generated") == bool(lab) for k, lab in zip(kinds, labels, strict=True))
    assert patch_array(ds.data.column("patch")).shape == (40, 3, 16, 16)
    assert len(set(ds["patch_id"])) == 40
    pristine = ds.filter(lambda r: r["kind"] == "pristine")
    assert all(i.startswith("real/im") for i in pristine["image_id"])
    # each producer's label beside its name; the held-out producer marked
    by_source = {s: (lab, held) for s, lab, held in zip(ds["source"], ds["source_label"], ds["held_out"], strict=True)}  # fmt: skip
    assert by_source == {"tiny-sd21": ("sd21", False), "real": ("real", False), "mj": ("mj", True)}
    with pytest.raises(EvalsetError, match="--held-out.*'nope'"):
        build_evalset(dataclasses.replace(config, out=str(tmp_path / "e2"), held_out=["nope"]))


def test_refuses_overlap_with_training_build(tmp_path) -> None:
    real = _folder(tmp_path / "real", 2, 0)
    train = Dataset.from_dict({"image_id": ["real/im1", "real/other"]})
    DatasetDict({IMAGES: train}).save_to_disk(str(tmp_path / "build"))
    config = EvalsetConfig(
        out=str(tmp_path / "eval"),
        generated={"mj": real},
        pristine=real,
        patch_size=16,
        image_size=64,
        train_data=str(tmp_path / "build"),
    )
    with pytest.raises(EvalsetError, match="real/im1"):
        build_evalset(config)


def test_cli_errors(tmp_path, capsys) -> None:
    assert cli.main(["evalset", "--out", str(tmp_path / "e"), "--pristine", "x"]) == 2
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["evalset", "--out", str(tmp_path / "e"), "--generated", "nope"])
    assert exit_info.value.code == 2
    assert "--generated: expected NAME=PATH, got 'nope'" in capsys.readouterr().err


def test_resume_after_a_failure_gives_the_uninterrupted_set(tmp_path, monkeypatch) -> None:
    real = _folder(tmp_path / "real", 3, 0)
    config = EvalsetConfig(
        out=str(tmp_path / "straight"),
        generators=["tiny-sd21"],
        reconstruct=real,
        pristine=real,
        num_generated=2,
        batch_size=2,
        patch_size=16,
        image_size=64,
        max_per_source=7,
        shard_size=2,
    )
    build_evalset(config)
    resumed = dataclasses.replace(config, out=str(tmp_path / "resumed"))
    calls = {"n": 0}
    original = evalset._ShardMaker.table

    def dies_on_the_third_shard(self, jobs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # stands in for a kill: shards 0 and 1 are committed
        return original(self, jobs)

    monkeypatch.setattr(evalset._ShardMaker, "table", dies_on_the_third_shard)
    with pytest.raises(KeyboardInterrupt):
        build_evalset(resumed)
    assert len(list((tmp_path / "resumed" / ".shards" / "ledger").glob("*.json"))) == 2
    monkeypatch.setattr(evalset._ShardMaker, "table", original)
    assert build_evalset(resumed) == build_evalset(config)  # the second call: already complete
    a = load_from_disk(config.out)[EVAL].data.table
    b = load_from_disk(resumed.out)[EVAL].data.table
    assert a.equals(b)
    with pytest.raises(EvalsetError, match="other settings") as refused:
        build_evalset(dataclasses.replace(resumed, seed=1))
    assert str(refused.value) == (
        f"{resumed.out}: holds an evaluation set made with other settings: seed 0 -> 1; use "
        "another --out or the same settings"
    )


def test_dragon_samples_go_to_their_own_producer(tmp_path, dragon) -> None:
    real = _folder(tmp_path / "real", 1, 0)
    location = f"{dragon}/ExtraSmall:train"
    config = EvalsetConfig(
        out=str(tmp_path / "eval"),
        generated={"tiny-sdxl": location, "black-forest-labs/FLUX.1-schnell": location},
        generated_field="model.txt",
        pristine=real,
        num_images=2,
        patch_size=32,
        image_size=64,
    )
    counts = build_evalset(config)
    assert set(counts) == {
        "pristine/real",
        "generated/tiny-sdxl",
        "generated/black-forest-labs/FLUX.1-schnell",
    }
    ds = load_from_disk(config.out)[EVAL]
    ids = {s: {i for i, src in zip(ds["image_id"], ds["source"], strict=True) if src == s} for s in set(ds["source"])}  # fmt: skip
    assert (
        len(ids["tiny-sdxl"]) == 2
        and not ids["tiny-sdxl"] & ids["black-forest-labs/FLUX.1-schnell"]
    )


def test_a_bad_image_is_skipped_and_reported_not_fatal(tmp_path) -> None:
    real = _folder(tmp_path / "real", 2, 0)
    (tmp_path / "real" / "broken.png").write_bytes(b"\x89PNG not really")
    config = EvalsetConfig(
        out=str(tmp_path / "eval"),
        generated={"mj": real},
        pristine=real,
        patch_size=16,
        image_size=64,
    )
    counts = build_evalset(config)
    assert counts["pristine/real"] > 0 and counts["generated/mj"] > 0
    info = json.loads((tmp_path / "eval" / "evalset.json").read_text())
    assert sorted(s["key"] for s in info["skipped"]) == [
        "generated/mj/generated/mj/broken",
        "pristine/real/real/broken",
    ]
    assert all("broken.png: cannot decode image" in s["reason"] for s in info["skipped"])


def test_only_bad_images_fail_with_the_reasons_kept(tmp_path, caplog) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (bad / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "eval"
    args = ["evalset", "--out", str(out), "--generated", f"mj={bad}", "--pristine", str(bad),
            "--patch-size", "16", "--image-size", "64"]  # fmt: skip
    assert cli.main(args) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"{bad}: no usable image: 4 skipped (reasons in {out / 'report.json'})"]
    report = json.loads((out / "report.json").read_text())
    assert len(report["skipped"]) == 4 and not (out / "evalset.json").exists()
    caplog.clear()
    assert cli.main(args) == 2  # a rerun says the same, it does not finish an empty set
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == errors
