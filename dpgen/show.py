"""``dpgen show``: a contact sheet of what a build teaches the model.

One image (PNG unless ``--out`` names another format matplotlib writes, such as ``.pdf`` or
``.svg``), drawn with a matplotlib `Figure` (no pyplot, so no GUI backend and no global state):

- one row per positive group (paper Sec. 3.1): for a real image's outside-mask position, the
  source patch and its K regenerations (``authentic``, mutual positives: the same pixels passed
  through each generator's VAE); for a generated image's inside-mask position, the generated
  source patch and its inpainting by the same generator (``inpainted``). Each patch is titled
  with its view (``source`` or the generator that painted it), its generator label and its
  category; the row is titled with the image and grid position.
- a strip of hard negatives: inside-mask patches of real images, the untouched source
  (``authentic``) and each generator's inpainting (``inpainted``), the opposite-category
  entries the top-k mining picks against each anchor.

Groups and negatives are drawn at random (``--seed``), round-robin over their kinds (real
images, then each generator's generated images; each (category, generator) for negatives), so
every kind the build holds is on the sheet when there is room for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import DatasetDict
from matplotlib.figure import Figure

from dpgen.errors import InputError
from dpgen.info import load_build
from dpgen.options import OptionError, Options, option
from dpgen.schema import CATEGORIES, NEGATIVES, PAIRS, SOURCE_REAL, SOURCE_VIEW, patch_array

logger = logging.getLogger(__name__)

#: Side of one patch on the sheet, in inches (at `DPI`, 96 px: a 64-px patch shown 1.5x).
CELL_INCHES = 1.2
DPI = 80


@dataclass(kw_only=True)
class ShowConfig(Options):
    """``dpgen show``: a contact sheet of a build's positive groups and hard negatives."""

    dir: Path = option(help="a finished dpgen build folder", positional=True)
    out: Path = option(help="the image to write: .png (also without a suffix), .pdf, .svg, ...")
    groups: int = option(6, help="positive groups on the sheet, one row each")
    negatives: int = option(8, help="hard negatives in the strip below (0: none)")
    seed: int = option(0, help="seed of the choice of groups and negatives")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_format() not in Figure().canvas.get_supported_filetypes():
            known = ", ".join(sorted(Figure().canvas.get_supported_filetypes()))
            raise OptionError(
                f"out: {self.out}: matplotlib writes no .{self.image_format()} ({known})"
            )
        if self.groups < 1 or self.negatives < 0:
            raise OptionError(f"groups must be >= 1 and negatives >= 0, got {self.groups}, {self.negatives}")  # fmt: skip

    def image_format(self) -> str:
        """The format ``out`` names by its suffix; png without one."""
        return self.out.suffix.lower().lstrip(".") or "png"


@dataclass
class Cell:
    """One patch on the sheet: (P, P, 3) uint8 RGB pixels and its title."""

    pixels: np.ndarray
    title: str


def _round_robin(keys: list[str], n: int, rng: np.random.Generator, first: str = "") -> list[int]:
    """Up to ``n`` indices into ``keys``, one per key in turn, each key's shuffled.

    Keys take turns in sorted order, ``first`` (when present) before the others.
    """
    keys_arr = np.asarray(keys)
    order = sorted(set(keys), key=lambda k: (k != first, k))
    pools = [list(rng.permutation(np.flatnonzero(keys_arr == k))) for k in order]
    picked: list[int] = []
    while len(picked) < n and any(pools):
        for pool in pools:
            if pool and len(picked) < n:
                picked.append(int(pool.pop()))
    return picked


def _meta(ds, columns: tuple[str, ...]) -> dict[str, list]:
    """Columns of a split as Python lists, without touching the patches."""
    table = ds.data.select(list(columns))
    return {name: table.column(name).to_pylist() for name in columns}


def _cells(ds, rows: list[int]) -> list[Cell]:
    """The patches of ``rows`` of a split, titled ``view / generator · category``."""
    names = ds.features["generator"].names
    sub = ds.data.fast_gather(rows)  # a pyarrow Table of those rows only
    pixels = patch_array(sub.column("patch")).transpose(0, 2, 3, 1)  # (N, P, P, 3)
    views, gens = sub.column("view").to_pylist(), sub.column("generator").to_pylist()
    cats = sub.column("category").to_pylist()
    return [
        Cell(pixels[i], f"{views[i]}\n{names[gens[i]]} · {CATEGORIES[cats[i]]}")
        for i in range(len(rows))
    ]


def positive_groups(dd: DatasetDict, n: int, seed: int) -> list[tuple[str, list[Cell]]]:
    """Up to ``n`` groups of ``pairs`` as (row title, cells), the source view first.

    Drawn round-robin over real images and each generator's generated images.
    """
    ds = dd[PAIRS]
    names = ds.features["generator"].names
    meta = _meta(ds, ("group_id", "source_set", "view", "generator", "image_id", "grid_row", "grid_col"))  # fmt: skip
    members: dict[str, list[int]] = {}
    for i, gid in enumerate(meta["group_id"]):
        members.setdefault(gid, []).append(i)
    heads = [rows[0] for rows in members.values()]
    kinds = [
        SOURCE_REAL if meta["source_set"][i] == SOURCE_REAL else f"generated by {names[meta['generator'][i]]}"
        for i in heads
    ]  # fmt: skip
    out = []
    for j in _round_robin(kinds, n, np.random.default_rng(seed), first=SOURCE_REAL):
        rows = sorted(
            members[meta["group_id"][heads[j]]],
            key=lambda i: (meta["view"][i] != SOURCE_VIEW, meta["generator"][i]),
        )
        head = rows[0]
        title = f"{kinds[j]}\n{meta['image_id'][head]}\nr{meta['grid_row'][head]}c{meta['grid_col'][head]}"  # fmt: skip
        out.append((title, _cells(ds, rows)))
    return out


def hard_negatives(dd: DatasetDict, n: int, seed: int) -> list[Cell]:
    """Up to ``n`` rows of ``negatives``, drawn round-robin over (category, generator)."""
    ds = dd[NEGATIVES]
    if n == 0 or len(ds) == 0:
        return []
    meta = _meta(ds, ("category", "generator"))
    keys = list(zip(meta["category"], meta["generator"], strict=True))
    rows = _round_robin([f"{c}/{g}" for c, g in keys], n, np.random.default_rng(seed + 1))
    return _cells(ds, sorted(rows, key=lambda i: (keys[i], i)))  # sources first, then by generator


def draw_sheet(groups: list[tuple[str, list[Cell]]], negatives: list[Cell], title: str) -> Figure:
    """The contact sheet: one row per group, then one row of negatives (if any)."""
    rows = [*groups, *([("hard negatives\n(inside the mask\nof real images)", negatives)] if negatives else [])]  # fmt: skip
    width = max(len(cells) for _, cells in rows)
    fig = Figure(
        figsize=(CELL_INCHES * (width + 1.2), CELL_INCHES * 1.4 * len(rows) + 0.5),
        layout="constrained",
    )
    fig.suptitle(title, fontsize=9)
    axes = fig.subplots(len(rows), width, squeeze=False)
    for axes_row, (label, cells) in zip(axes, rows, strict=True):
        for ax, cell in zip(axes_row, cells, strict=False):
            ax.imshow(cell.pixels, interpolation="nearest")
            ax.set_title(cell.title, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in axes_row[len(cells) :]:
            ax.set_axis_off()
        axes_row[0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    return fig


def show(config: ShowConfig) -> Path:
    """Draw the contact sheet of the build at ``config.dir`` into ``config.out``.

    Raises:
        FileNotFoundError: when ``config.dir`` is not a finished build.
        InputError: when the build has no positive group.
    """
    dd = load_build(config.dir)
    if len(dd[PAIRS]) == 0:
        raise InputError(f"{config.dir}: the build has no positive pairs to show")
    groups = positive_groups(dd, config.groups, config.seed)
    negatives = hard_negatives(dd, config.negatives, config.seed)
    if config.negatives and not negatives:
        logger.info("%s: no hard negatives (a dpgen roundtrip build has none)", config.dir)
    title = f"{config.dir}: rows of mutual positives (view, generator label, category)"
    fig = draw_sheet(groups, negatives, title)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(config.out, format=config.image_format(), dpi=DPI, bbox_inches="tight")
    logger.info("wrote %d groups and %d negatives to %s", len(groups), len(negatives), config.out)
    return config.out
