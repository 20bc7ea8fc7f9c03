"""Atomic shard writing, the resume ledger, and the final ``save_to_disk`` layout.

A build is cut into shards of a fixed number of work items. A shard's Arrow files (one per
split) are written under temporary names and renamed into place; its ledger entry
(``ledger/shard-NNNNN.json``: row counts and skipped sources) is written last, the same way.
A shard is done exactly when its ledger entry exists, so a killed build rerun with the same
command redoes only unfinished shards and, being deterministic, writes the same bytes.

`finalize` then writes ``state.json`` / ``dataset_info.json`` per split and
``dataset_dict.json``, listing every shard file: ``datasets.load_from_disk(DIR)`` memory-maps
them as one `DatasetDict`, however many shards or processes wrote them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from datasets import DatasetInfo, Features

from dpgen.schema import SPLITS

LEDGER = "ledger"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _uint8_nested(array: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """A C-contiguous uint8 (N, *shape) array as Array3D storage, without copying the pixels."""
    array = np.ascontiguousarray(array)
    values = pa.Array.from_buffers(pa.uint8(), array.size, [None, pa.py_buffer(array)])
    for dim in reversed(array.shape[1:]):
        count = len(values) // dim
        offsets = pa.py_buffer(np.arange(0, (count + 1) * dim, dim, dtype=np.int32))
        values = pa.Array.from_buffers(
            pa.list_(values.type), count, [None, offsets], children=[values]
        )
    return pa.ExtensionArray.from_storage(arrow_type, values)


def to_table(columns: dict[str, Any], features: Features) -> pa.Table:
    """Build an Arrow table of ``features`` from columns of lists or numpy arrays.

    uint8 Array3D columns given as numpy go in zero-copy; fixed-length sequences may be given
    as (N, L) arrays; everything else goes through ``features.encode_batch``.
    """
    schema = features.arrow_schema
    arrays = []
    for name in features:
        value, arrow_type = columns[name], schema.field(name).type
        if isinstance(value, np.ndarray) and isinstance(arrow_type, pa.ExtensionType):
            arrays.append(_uint8_nested(value, arrow_type))
        elif isinstance(value, np.ndarray) and value.ndim == 2:
            flat = pa.array(np.ascontiguousarray(value).reshape(-1), arrow_type.value_type)
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, value.shape[1]))
        else:
            encoded = features.encode_column(list(value), name)
            arrays.append(pa.array(encoded, type=arrow_type))
    return pa.Table.from_arrays(arrays, schema=schema)


def rows_table(parts: list[Any], features: Features) -> pa.Table:
    """One table of many column sets (e.g. `dpgen.pairing.PatchRows`, one per image).

    Each part becomes its own record batch: pixels are never concatenated in memory.
    """
    tables = [to_table(vars(p), features) for p in parts if len(p)]
    return pa.concat_tables(tables) if tables else features.arrow_schema.empty_table()


def write_table(table: pa.Table, path: Path) -> None:
    """Write ``table`` as an Arrow IPC stream (the format ``datasets`` memory-maps), atomically."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=1000)
    os.replace(tmp, path)


def commit_shard(
    out: Path, index: int, tables: dict[str, pa.Table], record: dict[str, Any]
) -> None:
    """Write one shard's split files, then its ledger entry (the commit point)."""
    name = shard_name(index)
    for split, table in tables.items():
        (out / split).mkdir(parents=True, exist_ok=True)
        write_table(table, out / split / f"{name}.arrow")
    (out / LEDGER).mkdir(parents=True, exist_ok=True)
    record = {**record, "rows": {split: t.num_rows for split, t in tables.items()}}
    _atomic_write_bytes(out / LEDGER / f"{name}.json", json.dumps(record, indent=1).encode())


def done_shards(out: Path) -> dict[int, dict[str, Any]]:
    """Ledger entries of committed shards, by shard index."""
    entries = {}
    for path in sorted((out / LEDGER).glob("shard-*.json")):
        entries[int(path.stem.split("-")[1])] = json.loads(path.read_text())
    return entries


def finalize(out: Path, features: dict[str, Features], num_shards: int, info: DatasetInfo) -> None:
    """Write the ``save_to_disk`` metadata that makes ``out`` one `DatasetDict`.

    Raises:
        RuntimeError: if a shard of ``range(num_shards)`` is not committed.
    """
    done = done_shards(out)
    missing = [i for i in range(num_shards) if i not in done]
    if missing:
        raise RuntimeError(f"{out}: shards {missing[:10]} are not committed; rerun the build")
    for split in SPLITS:
        files = [f"{shard_name(i)}.arrow" for i in range(num_shards)]
        digest = hashlib.sha256()
        for f in files:
            digest.update(f"{f}:{(out / split / f).stat().st_size}".encode())
        state = {
            "_data_files": [{"filename": f} for f in files],
            "_fingerprint": digest.hexdigest()[:16],
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        _atomic_write_bytes(out / split / "state.json", json.dumps(state, indent=2).encode())
        split_info = info.copy()
        split_info.features = features[split]
        split_info.write_to_directory(str(out / split))
    _atomic_write_bytes(out / "dataset_dict.json", json.dumps({"splits": list(SPLITS)}).encode())
