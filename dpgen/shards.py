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

import functools
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from datasets import ClassLabel, DatasetInfo, Features

from dpgen.options import changed_settings
from dpgen.schema import SPLITS

LEDGER = "ledger"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@functools.lru_cache(maxsize=64)
def _offsets(count: int, dim: int) -> pa.Buffer:
    """List offsets ``0, dim, .., count * dim`` (int32); parts of a build repeat a few counts."""
    return pa.py_buffer(np.arange(0, (count + 1) * dim, dim, dtype=np.int32))


def _uint8_nested(array: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """A C-contiguous uint8 (N, *shape) array as Array3D storage, without copying the pixels."""
    array = np.ascontiguousarray(array)
    values = pa.Array.from_buffers(pa.uint8(), array.size, [None, pa.py_buffer(array)])
    for dim in reversed(array.shape[1:]):
        count = len(values) // dim
        values = pa.Array.from_buffers(
            pa.list_(values.type), count, [None, _offsets(count, dim)], children=[values]
        )
    return pa.ExtensionArray.from_storage(arrow_type, values)


# Fast paths: each returns the column's Arrow array, or None when ``value`` is not its kind
# (then `TableEncoder` falls back to ``features.encode_column``).


def _patches(value: Any, arrow_type: pa.DataType, shape: tuple[int, ...]) -> pa.Array | None:
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.shape[1:] == shape:
        return _uint8_nested(value, arrow_type)
    return None


def _fixed_lists(value: Any, arrow_type: pa.DataType) -> pa.Array | None:
    if isinstance(value, np.ndarray) and value.ndim == 2:
        flat = pa.array(np.ascontiguousarray(value).reshape(-1), arrow_type.value_type)
        return pa.FixedSizeListArray.from_arrays(flat, value.shape[1])
    return None


def _class_labels(value: Any, arrow_type: pa.DataType, num_classes: int) -> pa.Array | None:
    """ClassLabel indices, checked as `ClassLabel.encode_example` checks them (-1: no label)."""
    if not (isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "iu"):
        return None
    bad = value[(value < -1) | (value >= num_classes)]
    if len(bad):
        raise ValueError(
            f"Class label {int(bad[0]):d} greater than configured num_classes {num_classes}"
        )
    return pa.array(value, arrow_type)


def _numbers(value: Any, arrow_type: pa.DataType, kinds: str) -> pa.Array | None:
    """A 1-D numpy array of dtype kind in ``kinds``, range-checked by pyarrow."""
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in kinds:
        return pa.array(value, arrow_type)
    return None


def _strings(value: Any, arrow_type: pa.DataType) -> pa.Array | None:
    if not isinstance(value, list):
        return None
    try:
        return pa.array(value, arrow_type)
    except pa.ArrowTypeError:  # not all str / None: encode_column str()s them
        return None


def _fast_path(feature: Any, arrow_type: pa.DataType) -> Callable[[Any], pa.Array | None] | None:
    """The fast path of one column, bound to its Arrow type; None for encode_column only."""
    if isinstance(arrow_type, pa.ExtensionType) and getattr(feature, "dtype", None) == "uint8":
        return functools.partial(_patches, arrow_type=arrow_type, shape=tuple(feature.shape))
    if pa.types.is_fixed_size_list(arrow_type):
        return functools.partial(_fixed_lists, arrow_type=arrow_type)
    if isinstance(feature, ClassLabel):
        return functools.partial(_class_labels, arrow_type=arrow_type, num_classes=feature.num_classes)  # fmt: skip
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        # floats into an integer column keep encode_column's int() (truncation)
        kinds = "iu" if pa.types.is_integer(arrow_type) else "iuf"
        return functools.partial(_numbers, arrow_type=arrow_type, kinds=kinds)
    if pa.types.is_string(arrow_type):
        return functools.partial(_strings, arrow_type=arrow_type)
    return None


class TableEncoder:
    """Turns columns into Arrow tables of one `datasets.Features`, its schema built once.

    Fast paths, each writing the same Arrow data as ``features.encode_column``:

    - uint8 ``Array3D`` (any ``ArrayXD``) given as an ``(N, *shape)`` uint8 array: zero-copy;
    - fixed-length ``Sequence`` given as an ``(N, L)`` array: one flat Arrow array;
    - ``ClassLabel`` and numeric ``Value`` given as a 1-D array: straight from numpy (labels
      range-checked like ``ClassLabel.encode_example``);
    - ``Value("string")`` given as a list of ``str`` / ``None``: one ``pa.array`` call.

    Anything else (e.g. the ``images`` split's ``Image`` and list columns) goes through
    ``features.encode_column``, one element at a time.
    """

    def __init__(self, features: Features) -> None:
        self.features = features
        self.schema = features.arrow_schema  # ~0.5 ms: once per Features, not per table
        self._columns = []
        for name, feature in features.items():
            arrow_type = self.schema.field(name).type  # re-created on every access: keep it
            self._columns.append((name, arrow_type, _fast_path(feature, arrow_type)))

    def arrays(self, columns: dict[str, Any]) -> list[pa.Array]:
        """One Arrow array per feature, in schema order."""
        arrays = []
        for name, arrow_type, fast in self._columns:
            value = columns[name]
            array = fast(value) if fast else None
            if array is None:
                array = pa.array(self.features.encode_column(list(value), name), arrow_type)
            arrays.append(array)
        return arrays

    def table(self, columns: dict[str, Any]) -> pa.Table:
        """An Arrow table (one record batch) of ``columns``, a dict of lists or numpy arrays."""
        return pa.Table.from_arrays(self.arrays(columns), schema=self.schema)


# Encoders of the last few Features objects used, by identity (Features are unhashable dicts):
# a build passes the same objects for every shard, so the schema is built once per build.
_ENCODERS: dict[int, TableEncoder] = {}
_MAX_ENCODERS = 8


def table_encoder(features: Features) -> TableEncoder:
    """The `TableEncoder` of ``features``, built on first use (``features`` must not change)."""
    encoder = _ENCODERS.get(id(features))
    if encoder is None:
        encoder = _ENCODERS[id(features)] = TableEncoder(features)
        while len(_ENCODERS) > _MAX_ENCODERS:  # the entry holds ``features``: ids stay unique
            del _ENCODERS[next(iter(_ENCODERS))]
    return encoder


def to_table(columns: dict[str, Any], features: Features) -> pa.Table:
    """Build an Arrow table of ``features`` from columns of lists or numpy arrays.

    See `TableEncoder` for which columns take a fast path. For the columns dpgen writes, the
    Arrow bytes are those of encoding every column with ``features.encode_column`` (checked
    against that writer in tests/dpgen/test_shards.py).

    Raises:
        ValueError: on a ``ClassLabel`` index outside ``[-1, num_classes)``.
    """
    return table_encoder(features).table(columns)


def rows_table(parts: list[Any], features: Features) -> pa.Table:
    """One table of many column sets (e.g. `dpgen.pairing.PatchRows`, one per image).

    Each part becomes its own record batch: pixels are never concatenated in memory.
    """
    encoder = table_encoder(features)
    names = list(features)
    # Batches named, not typed, by the schema: checking each against the schema would rebuild
    # its extension types (datasets' Array3D: a JSON round trip per check).
    batches = [pa.RecordBatch.from_arrays(encoder.arrays(vars(p)), names) for p in parts if len(p)]
    if not batches:
        return encoder.schema.empty_table()
    table = pa.Table.from_batches(batches)
    if not table.schema.equals(encoder.schema):  # a fast path must produce the schema's types
        raise TypeError(f"columns of type {table.schema} do not match {encoder.schema}")
    return table.replace_schema_metadata(encoder.schema.metadata)


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


def skipped_sources(out: Path) -> list[dict[str, Any]]:
    """Every source the committed shards skipped (``key``, ``path``, ``reason``), in shard order."""
    return [s for entry in done_shards(out).values() for s in entry["skipped"]]


def settings_changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    """What differs between two output folders' settings ``{"config": {...}, "jobs": N}``, one
    level deep, e.g. ``"patch_size 64 -> 32"`` or ``"jobs 4 -> 6"`` when the sources changed
    (`dpgen.options.changed_settings`)."""

    def flat(settings: dict[str, Any]) -> dict[str, Any]:
        return {**settings.get("config", {}), "jobs": settings.get("jobs")}

    return changed_settings(flat(old), flat(new))


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
