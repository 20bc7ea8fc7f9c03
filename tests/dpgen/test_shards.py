import json

import numpy as np
import pytest
from datasets import DatasetInfo, load_from_disk

from dpgen.schema import (
    IMAGE_FEATURES,
    IMAGES,
    NEGATIVES,
    PAIRS,
    generator_names,
    patch_array,
    patch_features,
)
from dpgen.shards import commit_shard, done_shards, finalize, to_table


def _tables(n: int, offset: int):
    f = patch_features(4, generator_names(["sd21"]))
    patches = np.arange(n * 48, dtype=np.uint8).reshape(n, 3, 4, 4) + offset
    cols = {
        "patch_id": [f"p{offset}-{i}" for i in range(n)], "image_id": ["i"] * n,
        "source_set": ["real"] * n, "view": ["source"] * n, "generator": np.zeros(n, np.int64),
        "category": np.zeros(n, np.int64), "grid_row": np.zeros(n, np.int16),
        "grid_col": np.arange(n, dtype=np.int16), "box": np.tile(np.arange(4, dtype=np.int32), (n, 1)),
        "group_id": [f"g{i}" for i in range(n)], "patch": patches,
    }  # fmt: skip
    empty_images = {k: [] for k in IMAGE_FEATURES}
    return (
        {
            PAIRS: to_table(cols, f),
            NEGATIVES: to_table(cols, f),
            IMAGES: to_table(empty_images, IMAGE_FEATURES),
        },
        f,
        patches,
    )


def test_shards_load_as_one_dataset_with_lossless_patches(tmp_path):
    parts = [_tables(3, 0), _tables(2, 100)]
    for i, (tables, _, _) in enumerate(parts):
        commit_shard(tmp_path, i, tables, {"skipped": []})
    f = parts[0][1]
    finalize(
        tmp_path, {PAIRS: f, NEGATIVES: f, IMAGES: IMAGE_FEATURES}, 2, DatasetInfo(description="{}")
    )
    dd = load_from_disk(str(tmp_path))
    assert len(dd[PAIRS]) == 5 and dd[PAIRS][4]["patch_id"] == "p100-1"
    np.testing.assert_array_equal(
        patch_array(dd[PAIRS].data.column("patch")), np.concatenate([p for *_, p in parts])
    )
    assert dd[PAIRS].features == f
    assert done_shards(tmp_path)[1]["rows"] == {PAIRS: 2, NEGATIVES: 2, IMAGES: 0}


def test_finalize_refuses_missing_shards(tmp_path):
    tables, f, _ = _tables(1, 0)
    commit_shard(tmp_path, 1, tables, {"skipped": []})
    with pytest.raises(RuntimeError, match=r"shards \[0\] are not committed"):
        finalize(tmp_path, {PAIRS: f, NEGATIVES: f, IMAGES: IMAGE_FEATURES}, 2, DatasetInfo())


def test_uncommitted_shard_has_no_ledger_entry(tmp_path):
    tables, _, _ = _tables(1, 0)
    (tmp_path / "ledger").mkdir()
    commit_shard(tmp_path, 0, tables, {"skipped": [{"key": "k", "reason": "r"}]})
    # a shard killed before its ledger write is simply not done; leftovers are rewritten
    (tmp_path / PAIRS / "shard-00001.arrow").write_bytes(b"partial")
    assert list(done_shards(tmp_path)) == [0]
    assert (
        json.loads((tmp_path / "ledger" / "shard-00000.json").read_text())["skipped"][0]["key"]
        == "k"
    )
    assert not list(tmp_path.rglob("*.tmp-*"))
