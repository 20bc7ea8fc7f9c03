"""Training data from a dpgen build: anchors, positives and hard-negative pool patches.

Rows of ``pairs`` sharing a ``group_id`` are mutual positives (paper Sec. 3.1). An anchor is any
row of a group with at least two (kept) members; its positive is a uniformly drawn other member
(``paired``), or the anchor itself, to be augmented differently (``augment``, standard MoCo).
Pool patches (``negatives``) are drawn uniformly, without replacement within a step.

Speed: the build is indexed once with numpy (group ids dictionary-encoded by Arrow), and
patches are gathered with numpy fancy indexing on zero-copy views of the memory-mapped Arrow
``patch`` column, so a batch costs one memcpy per patch and no decoding. Batches are uint8;
conversion, flips and the high-pass filter run on the device (`dptrain.augment`).

Every batch is a pure function of ``(seed, step, rank)``: resuming at step s replays exactly
the batches of an uninterrupted run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from dpgen import schema
from dpgen.errors import InputError

from .augment import jpeg_compress

logger = logging.getLogger(__name__)

_REQUIRED_COLUMNS = ("patch_id", "view", "generator", "category", "group_id", "patch")
# Purposes mixed into the per-step seeds, so streams never coincide.
_ANCHORS, _PARTNERS, _POOL, _FLIPS, _JPEG, _PREFILL = range(6)


class PatchStore:
    """Random access to the ``patch`` column of one split, as (n, 3, P, P) uint8 arrays.

    Opens the split lazily and drops its views when pickled, so a data-loader worker maps the
    Arrow files itself instead of receiving a copy of the patches.
    """

    def __init__(self, split_dir: Path, patch_size: int) -> None:
        self.split_dir = split_dir
        self.patch_size = patch_size
        self._chunks: list[np.ndarray] | None = None
        self._starts: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {
            "split_dir": self.split_dir,
            "patch_size": self.patch_size,
            "_chunks": None,
            "_starts": None,
        }

    def _open(self) -> None:
        column = datasets.load_from_disk(str(self.split_dir)).data.table.column("patch")
        # Per chunk (one per Arrow file): zero-copy views of the memory-mapped files.
        chunks = [schema.patch_array(chunk) for chunk in column.chunks if len(chunk)]
        for c in chunks:
            if c.shape[1:] != (3, self.patch_size, self.patch_size):
                raise InputError(
                    f"{self.split_dir}: patches of shape {c.shape[1:]}, expected (3, P, P)"
                )
        self._chunks = chunks
        self._starts = np.cumsum([0] + [len(c) for c in chunks])

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Patches of ``rows`` (n,) -> (n, 3, P, P) uint8, in that order."""
        if self._chunks is None:
            self._open()
        rows = np.asarray(rows, dtype=np.int64)
        if len(self._chunks) == 1:
            return self._chunks[0][rows]
        out = np.empty((len(rows), 3, self.patch_size, self.patch_size), dtype=np.uint8)
        which = np.searchsorted(self._starts, rows, side="right") - 1
        for c in np.unique(which):
            sel = which == c
            out[sel] = self._chunks[c][rows[sel] - self._starts[c]]
        return out


@dataclass
class BuildIndex:
    """Numpy index of a dpgen build, restricted to the kept generators.

    Attributes:
        patch_size: P.
        class_names: the head's generator classes: the build's ``generator`` ClassLabel
            names minus the excluded ones (``real`` first).
        anchors: (n_a,) ``pairs`` rows that have at least one positive.
        members: kept ``pairs`` rows sorted by group; ``group_start``/``group_size`` index it.
        group_of: (n_pairs,) index of each row's group into ``group_start`` (-1: dropped).
        slot_of: (n_pairs,) position of each kept row inside its group.
        pair_category, pair_class: (n_pairs,) category and head class of every ``pairs`` row.
        negatives: (n_neg,) kept ``negatives`` rows.
        neg_category, neg_class: (n_neg_total,) category and generator class of every row.
        counts: row and group counts, for the model card.
    """

    patch_size: int
    class_names: list[str]
    anchors: np.ndarray
    members: np.ndarray
    group_start: np.ndarray
    group_size: np.ndarray
    group_of: np.ndarray
    slot_of: np.ndarray
    pair_category: np.ndarray
    pair_class: np.ndarray
    negatives: np.ndarray
    neg_category: np.ndarray
    neg_class: np.ndarray
    counts: dict[str, int]


def _check_split(path: Path, name: str, ds: datasets.Dataset) -> int:
    missing = [c for c in _REQUIRED_COLUMNS if c not in ds.features]
    if missing:
        raise InputError(f"{path}: split '{name}' lacks columns {missing} (not a dpgen build?)")
    if not isinstance(ds.features["generator"], datasets.ClassLabel):
        raise InputError(f"{path}: split '{name}': 'generator' is not a ClassLabel")
    if list(ds.features["category"].names) != list(schema.CATEGORIES):
        raise InputError(f"{path}: split '{name}': categories are not {schema.CATEGORIES}")
    shape = tuple(ds.features["patch"].shape)
    if len(shape) != 3 or shape[1] != shape[2] or shape[0] != 3:
        raise InputError(f"{path}: split '{name}': patch shape {shape} is not (3, P, P)")
    return shape[1]


def _open_build(path: Path) -> tuple[datasets.Dataset, datasets.Dataset, int, list[str]]:
    """The ``pairs`` and ``negatives`` splits, checked: (pairs, negatives, P, generator names)."""
    try:
        build = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as err:
        raise InputError(f"{path}: not a dataset saved with save_to_disk: {err}") from None
    if not isinstance(build, datasets.DatasetDict) or any(
        s not in build for s in (schema.PAIRS, schema.NEGATIVES)
    ):
        raise InputError(
            f"{path}: expected a DatasetDict with splits {schema.PAIRS!r}, {schema.NEGATIVES!r}"
        )
    pairs, negs = build[schema.PAIRS], build[schema.NEGATIVES]
    p = _check_split(path, schema.PAIRS, pairs)
    if _check_split(path, schema.NEGATIVES, negs) != p:
        raise InputError(f"{path}: pairs and negatives have different patch sizes")
    names = list(pairs.features["generator"].names)
    if list(negs.features["generator"].names) != names:
        raise InputError(f"{path}: pairs and negatives have different generator labels")
    return pairs, negs, p, names


class _RowFilter:
    """Drops the rows of excluded generators (by label or view) and maps labels to head classes.

    Raises:
        InputError: an excluded name that is neither a generator label nor a view of the build.
    """

    def __init__(self, path: Path, tables: list[pa.Table], names: list[str], exclude: tuple):
        views = set()
        for table in tables:
            views |= set(pc.unique(table.column("view")).to_pylist())
        unknown = [g for g in exclude if g not in names and g not in views]
        if unknown:
            raise InputError(
                f"{path}: cannot exclude {unknown}: generators are {names}, views {sorted(views)}"
            )
        self.exclude = exclude
        self.dropped_labels = [names.index(g) for g in exclude if g in names]
        self.class_names = [n for n in names if n not in exclude]
        self.class_of = np.array([self.class_names.index(n) if n in self.class_names else -1 for n in names])  # fmt: skip

    def __call__(self, table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(kept mask, category, head class) of every row of ``table``."""
        gen = table.column("generator").to_numpy().astype(np.int64)
        cat = table.column("category").to_numpy().astype(np.int64)
        drop = np.isin(gen, self.dropped_labels)
        if self.exclude:
            view = table.column("view")
            drop |= pc.is_in(view, pa.array(list(self.exclude))).to_numpy(zero_copy_only=False)
        return ~drop, cat, self.class_of[gen]


def _groups(path: Path, table: pa.Table, keep: np.ndarray) -> dict[str, np.ndarray]:
    """Kept ``pairs`` rows sorted by group and their group index (see `BuildIndex`)."""
    group_ids = table.column("group_id")
    if group_ids.null_count:
        raise InputError(f"{path}: {group_ids.null_count} pairs rows have no group_id")
    codes = pc.dictionary_encode(group_ids).combine_chunks().indices.to_numpy().astype(np.int64)
    codes = np.where(keep, codes, -1)
    rows = np.flatnonzero(keep)
    members = rows[np.argsort(codes[rows], kind="stable")]
    uniq, group_start, group_size = np.unique(codes[members], return_index=True, return_counts=True)
    group_of = np.full(len(codes), -1, dtype=np.int64)
    group_of[members] = np.searchsorted(uniq, codes[members])
    slot_of = np.full(len(codes), -1, dtype=np.int64)
    slot_of[members] = np.arange(len(members)) - group_start[group_of[members]]
    anchors = np.sort(members[group_size[group_of[members]] >= 2])
    if len(anchors) == 0:
        raise InputError(f"{path}: no pairs row has a positive (every kept group has one member)")
    return {
        "anchors": anchors, "members": members, "group_start": group_start,
        "group_size": group_size, "group_of": group_of, "slot_of": slot_of,
    }  # fmt: skip


def index_build(path: str | Path, exclude_generators: tuple[str, ...] = ()) -> BuildIndex:
    """Read a dpgen build's ``pairs`` and ``negatives`` metadata into a `BuildIndex`.

    Args:
        path: the build directory (``datasets.load_from_disk`` layout).
        exclude_generators: generator labels or view names whose rows are dropped (e.g.
            ``("flux",)`` for the paper's DP-dagger, trained without Flux).

    Raises:
        InputError: naming ``path``, when it is not a dpgen build, names an unknown generator,
            or has no anchor with a positive.
    """
    path = Path(path)
    pairs, negs, p, names = _open_build(path)
    kept = _RowFilter(path, [pairs.data.table, negs.data.table], names, exclude_generators)
    keep, pair_category, pair_class = kept(pairs.data.table)
    groups = _groups(path, pairs.data.table, keep)
    neg_keep, neg_category, neg_class = kept(negs.data.table)
    negatives = np.flatnonzero(neg_keep)
    if len(negatives) == 0:
        raise InputError(f"{path}: the negative pool is empty")
    anchors = groups["anchors"]
    counts = {
        "pairs_rows": len(pairs),
        "anchor_rows": int(len(anchors)),
        "groups": int((groups["group_size"] >= 2).sum()),
        "authentic_anchors": int((pair_category[anchors] == 0).sum()),
        "inpainted_anchors": int((pair_category[anchors] == 1).sum()),
        "negatives_rows": int(len(neg_category)),
        "negatives_used": int(len(negatives)),
        "authentic_negatives": int((neg_category[negatives] == 0).sum()),
        "inpainted_negatives": int((neg_category[negatives] == 1).sum()),
    }
    return BuildIndex(
        patch_size=p,
        class_names=kept.class_names,
        pair_category=pair_category,
        pair_class=pair_class,
        negatives=negatives,
        neg_category=neg_category,
        neg_class=neg_class,
        counts=counts,
        **groups,
    )


class StepBatches(torch.utils.data.Dataset):
    """Map-style dataset whose item ``step`` is that step's whole batch for one process.

    Use with ``DataLoader(batch_size=None, sampler=range(first_step, last_step))``.

    Item keys (uint8 patches are (n, 3, P, P)): ``anchor``, ``positive`` (B patches),
    ``category`` (B,), ``label`` (B,) head target, ``flips`` (2, B, 2) bool (view, sample,
    horizontal/vertical), ``pool`` (M patches), ``pool_category``, ``pool_generator`` (M,),
    ``rows`` (B,) anchor rows of ``pairs``, ``step``.

    Args:
        path: the build directory.
        index: its `BuildIndex`.
        batch_size: B, anchors per process.
        pool_per_step: M, pool patches per process.
        rank, world_size: this process and the process count; anchors of a step are split
            between processes, each epoch being one permutation of the anchor rows.
        seed: the run's seed.
        pairing: ``paired`` or ``augment``.
        augment: augmentation level (`dptrain.config.AUGMENTATIONS`); flips from ``geometric``
            on, JPEG from ``jpeg`` on (the high-pass filter runs on the device).
        binary: head targets are the category instead of the generator class.
    """

    def __init__(
        self,
        path: str | Path,
        index: BuildIndex,
        batch_size: int,
        pool_per_step: int,
        rank: int,
        world_size: int,
        seed: int,
        pairing: str,
        augment: str,
        binary: bool,
    ) -> None:
        self.index = index
        self.batch_size = batch_size
        self.pool_per_step = pool_per_step
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.pairing = pairing
        self.flip = augment != "none"
        self.jpeg = augment in ("jpeg", "hp")
        self.binary = binary
        self.pairs = PatchStore(Path(path) / schema.PAIRS, index.patch_size)
        self.negatives = PatchStore(Path(path) / schema.NEGATIVES, index.patch_size)
        self.steps_per_epoch = len(index.anchors) // (batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise InputError(
                f"{path}: {len(index.anchors)} anchor rows, fewer than one global batch "
                f"({batch_size} x {world_size} processes): lower --batch-size"
            )

    def _rng(self, step: int, purpose: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, step, self.rank, purpose])

    @lru_cache(maxsize=2)  # noqa: B019 - one permutation per epoch, shared by its steps
    def _epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch, _ANCHORS]).permutation(self.index.anchors)

    def anchor_rows(self, step: int) -> np.ndarray:
        """This process's (B,) anchor rows at ``step`` (0-based)."""
        epoch, j = divmod(step, self.steps_per_epoch)
        start = (j * self.world_size + self.rank) * self.batch_size
        return self._epoch_order(epoch)[start : start + self.batch_size]

    def partner_rows(self, step: int, anchors: np.ndarray) -> np.ndarray:
        """A uniformly drawn other member of each anchor's group (``paired``), or the anchor."""
        if self.pairing == "augment":
            return anchors
        ix = self.index
        group = ix.group_of[anchors]
        size = ix.group_size[group]
        offset = self._rng(step, _PARTNERS).integers(1, size)  # 1..size-1: never itself
        return ix.members[ix.group_start[group] + (ix.slot_of[anchors] + offset) % size]

    def __getitem__(self, step: int) -> dict[str, Any]:
        ix = self.index
        anchors = self.anchor_rows(step)
        partners = self.partner_rows(step, anchors)
        m = self.pool_per_step
        pool_rows = ix.negatives[
            self._rng(step, _POOL).choice(len(ix.negatives), m, replace=m > len(ix.negatives))
        ]
        anchor_patches = self.pairs.take(anchors)
        positive_patches = self.pairs.take(partners)
        if self.jpeg:
            rng = self._rng(step, _JPEG)
            anchor_patches = jpeg_compress(anchor_patches, rng)
            positive_patches = jpeg_compress(positive_patches, rng)
        flips = self._rng(step, _FLIPS).random((2, len(anchors), 2)) < 0.5
        label = ix.pair_category[anchors] if self.binary else ix.pair_class[anchors]
        return {
            "anchor": torch.from_numpy(anchor_patches),
            "positive": torch.from_numpy(positive_patches),
            "category": torch.from_numpy(ix.pair_category[anchors]),
            "label": torch.from_numpy(label),
            "flips": torch.from_numpy(flips & self.flip),
            "pool": torch.from_numpy(self.negatives.take(pool_rows)),
            "pool_category": torch.from_numpy(ix.neg_category[pool_rows]),
            "pool_generator": torch.from_numpy(ix.neg_class[pool_rows]),
            "rows": torch.from_numpy(anchors),
            "step": step,
        }

    def prefill_rows(self, queue_size: int) -> np.ndarray:
        """This process's share of the pool rows that pre-fill the queue before step 1.

        One permutation shared by all processes, cut into equal shards (so the all-gather
        in `dptrain.loss.concat_all_gather` works); at most ``queue_size`` distinct rows.
        """
        order = np.random.default_rng([self.seed, _PREFILL]).permutation(self.index.negatives)
        n = min(queue_size, len(order)) // self.world_size * self.world_size
        return order[:n][self.rank :: self.world_size]
