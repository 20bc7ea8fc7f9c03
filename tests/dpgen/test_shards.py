import json

import numpy as np
import pyarrow as pa
import pytest
from datasets import DatasetInfo, load_from_disk
from PIL import Image

from dpgen.grid import inside_grid, outside_grid
from dpgen.masks import training_mask
from dpgen.pairing import PatchRows, View, pair_generated, pair_real
from dpgen.schema import (
    IMAGE_FEATURES,
    IMAGES,
    NEGATIVES,
    PAIRS,
    generator_names,
    patch_array,
    patch_features,
)
from dpgen.shards import (
    commit_shard,
    done_shards,
    finalize,
    rows_table,
    to_table,
    write_table,
)


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


# -- the vectorised writer against the element-wise one it replaced --------------------------
# Reference: a verbatim transcription of `to_table` / `rows_table` of dpgen/shards.py at d1f96ee
# (every non-numpy column through `features.encode_column`, the schema built per table). The
# writer must produce the same Arrow bytes, hence identical `load_from_disk` contents.


def _reference_uint8_nested(array, arrow_type):
    array = np.ascontiguousarray(array)
    values = pa.Array.from_buffers(pa.uint8(), array.size, [None, pa.py_buffer(array)])
    for dim in reversed(array.shape[1:]):
        count = len(values) // dim
        offsets = pa.py_buffer(np.arange(0, (count + 1) * dim, dim, dtype=np.int32))
        values = pa.Array.from_buffers(
            pa.list_(values.type), count, [None, offsets], children=[values]
        )
    return pa.ExtensionArray.from_storage(arrow_type, values)


def _reference_to_table(columns, features):
    schema = features.arrow_schema
    arrays = []
    for name in features:
        value, arrow_type = columns[name], schema.field(name).type
        if isinstance(value, np.ndarray) and isinstance(arrow_type, pa.ExtensionType):
            arrays.append(_reference_uint8_nested(value, arrow_type))
        elif isinstance(value, np.ndarray) and value.ndim == 2:
            flat = pa.array(np.ascontiguousarray(value).reshape(-1), arrow_type.value_type)
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, value.shape[1]))
        else:
            encoded = features.encode_column(list(value), name)
            arrays.append(pa.array(encoded, type=arrow_type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _reference_rows_table(parts, features):
    tables = [_reference_to_table(vars(p), features) for p in parts if len(p)]
    return pa.concat_tables(tables) if tables else features.arrow_schema.empty_table()


def _build_rows(patch: int = 32, size: int = 256, images: int = 3, big: int = 1200):
    """PatchRows as a build makes them: K = 2 generators, real and generated images."""
    rng = np.random.default_rng(0)
    labels = generator_names(["sd21", "flux"])
    source = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    views = [View(n, i + 1, rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
             for i, n in enumerate(labels[1:])]  # fmt: skip
    pairs, negatives = [PatchRows.empty(patch)], []
    for i in range(images):
        mask = training_mask(size, size, np.random.default_rng(i), patch=patch)
        inside, outside = inside_grid(mask, patch=patch), outside_grid(mask, patch=patch)
        p, n = pair_real(f"img{i}", source, views, inside, outside)
        pairs += [p, pair_generated(f"gen{i}", source, views[0], inside)]
        negatives.append(n)
    # One part over max_chunksize (1000 rows), so the stream splits a batch as well.
    pairs.append(PatchRows(
        [f"big/{i}" for i in range(big)], ["big"] * big, ["real"] * big, ["source"] * big,
        np.arange(big) % 3, np.arange(big) % 2, np.full(big, -3, np.int16),
        np.arange(big, dtype=np.int16), np.arange(4 * big, dtype=np.int32).reshape(big, 4),
        [None if i % 5 else f"g{i}" for i in range(big)],
        rng.integers(0, 256, (big, 3, patch, patch), dtype=np.uint8),
    ))  # fmt: skip
    return patch_features(patch, labels), pairs, negatives


def _image_records(n: int) -> dict:
    mask = Image.fromarray(np.arange(64 * 48, dtype=np.uint8).reshape(48, 64) // 128 * 255)
    record = {
        "image_id": "img0", "source_set": "real", "generator": "", "path": "photos/a.jpg",
        "original_size": [640, 480], "scale": 0.4, "crop": [0, 0, 256, 192], "size": [64, 48],
        "mask": mask, "mask_policy": "training", "category": "", "annotation_id": -1,
        "caption_index": -1, "source_model": "", "prompt": "a photo", "seed": -1,
        "source_steps": -1, "source_guidance": -1.0,
        "inpainted_by": ["sd21", "flux"], "steps": [20, 4], "guidance": [7.5, 0.0],
        "grid_inside": [2, 3], "grid_outside": [4, 4], "n_inside": 5, "n_outside": 9,
    }  # fmt: skip
    # keys beyond IMAGE_FEATURES (e.g. source_steps before the schema had it) are left out
    return {k: [record[k]] * n for k in IMAGE_FEATURES}


def test_writer_writes_the_reference_bytes(tmp_path):
    features, pairs, negatives = _build_rows()
    cases = {
        "pairs": (rows_table(pairs, features), _reference_rows_table(pairs, features)),
        "negatives": (rows_table(negatives, features), _reference_rows_table(negatives, features)),
        "empty": (rows_table([], features), _reference_rows_table([], features)),
        "images": (
            to_table(_image_records(3), IMAGE_FEATURES),
            _reference_to_table(_image_records(3), IMAGE_FEATURES),
        ),
    }
    for name, (table, reference) in cases.items():
        write_table(table, tmp_path / f"{name}.arrow")
        write_table(reference, tmp_path / f"{name}.ref.arrow")
        ours, theirs = (
            (tmp_path / f"{name}.arrow").read_bytes(),
            (tmp_path / f"{name}.ref.arrow").read_bytes(),
        )
        assert ours == theirs, name  # fmt: skip
    assert cases["pairs"][0].num_rows == sum(len(p) for p in pairs) > 1200


def test_written_build_loads_identically(tmp_path):
    features, pairs, negatives = _build_rows(images=2, big=10)
    all_features = {PAIRS: features, NEGATIVES: features, IMAGES: IMAGE_FEATURES}
    writers = {
        "new": (rows_table, to_table),
        "ref": (_reference_rows_table, _reference_to_table),
    }
    loaded = {}
    for name, (rows, table) in writers.items():
        for shard in range(2):
            tables = {
                PAIRS: rows(pairs[shard::2], features),
                NEGATIVES: rows(negatives[shard::2], features),
                IMAGES: table(_image_records(shard + 1), IMAGE_FEATURES),
            }
            commit_shard(tmp_path / name, shard, tables, {"skipped": []})
        finalize(tmp_path / name, all_features, 2, DatasetInfo(description="{}"))
        loaded[name] = load_from_disk(str(tmp_path / name))
    for split in (PAIRS, NEGATIVES, IMAGES):
        new, ref = loaded["new"][split], loaded["ref"][split]
        assert new.features == ref.features and new.data.table.equals(ref.data.table)
        assert new[:] == ref[:]  # decoded rows too (images' masks as PIL)
    assert {p.relative_to(tmp_path / "new") for p in (tmp_path / "new").rglob("*")} == {
        p.relative_to(tmp_path / "ref") for p in (tmp_path / "ref").rglob("*")
    }
    for path in (tmp_path / "new").rglob("*.arrow"):
        assert (
            path.read_bytes()
            == (tmp_path / "ref" / path.relative_to(tmp_path / "new")).read_bytes()
        )


def test_writer_checks_labels_and_falls_back_for_other_values():
    features, pairs, _ = _build_rows(images=1)
    part = pairs[1]
    bad = PatchRows(**{**vars(part), "generator": np.full(len(part), 3)})  # 3 labels: 0..2
    with pytest.raises(ValueError, match="Class label 3"):
        rows_table([bad], features)
    # Non-str strings and float grid indices take encode_column's path, as before.
    odd = PatchRows(**{**vars(part), "image_id": [7] * len(part),
                       "grid_row": part.grid_row.astype(np.float64)})  # fmt: skip
    assert rows_table([odd], features).equals(_reference_rows_table([odd], features))
    assert rows_table([odd], features).column("image_id")[0].as_py() == "7"
