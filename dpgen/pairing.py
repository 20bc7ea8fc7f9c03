"""Positive groups and hard negatives from one source image and its inpaintings (paper Sec. 3.1).

With K generators:

- a *generated* image from g_i is inpainted by g_i only; at each inside-mask grid position the
  source patch and the inpainted patch are mutual positives (category inpainted, generator g_i):
  ``2 * n_inside`` rows in ``n_inside`` groups;
- a *real* image is inpainted once by each of the K generators with the same mask; at each
  outside-mask position the source patch and its K regenerated counterparts are K+1 mutual
  positives (category authentic, generator real): ``(K+1) * n_outside`` rows in ``n_outside``
  groups; at each inside-mask position the source patch (authentic) and the K inpainted patches
  (inpainted, generator g_k) go to the hard-negative pool only: ``(K+1) * n_inside`` rows.

A VAE round trip (`dpgen roundtrip`) is a real image with an empty mask: every grid position is
an outside position and the K reconstructions are its regenerated views.

Everything here is pure numpy on arrays already in memory; rows are columnar for fast writing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dpgen.grid import Grid, extract_patches
from dpgen.schema import CATEGORIES, SOURCE_GENERATED, SOURCE_REAL, SOURCE_VIEW

AUTHENTIC, INPAINTED = (CATEGORIES.index(c) for c in ("authentic", "inpainted"))


@dataclass(frozen=True)
class View:
    """One image aligned with the source.

    Attributes:
        name: the generator name that produced it (the row's ``view``).
        label: its index in the build's ``generator`` ClassLabel.
        pixels: (H, W, 3) uint8, the same size as the source.
    """

    name: str
    label: int
    pixels: np.ndarray


@dataclass
class PatchRows:
    """Columns of ``pairs`` / ``negatives`` rows (see `dpgen.schema.patch_features`)."""

    patch_id: list[str]
    image_id: list[str]
    source_set: list[str]
    view: list[str]
    generator: np.ndarray  # (N,) int64 ClassLabel index
    category: np.ndarray  # (N,) int64 ClassLabel index
    grid_row: np.ndarray  # (N,) int16
    grid_col: np.ndarray  # (N,) int16
    box: np.ndarray  # (N, 4) int32
    group_id: list[str | None]
    patch: np.ndarray  # (N, 3, P, P) uint8

    def __len__(self) -> int:
        return len(self.patch_id)

    @classmethod
    def empty(cls, patch_size: int) -> PatchRows:
        return cls(
            [], [], [], [], *(np.zeros(0, np.int64),) * 2, *(np.zeros(0, np.int16),) * 2,
            np.zeros((0, 4), np.int32), [], np.zeros((0, 3, patch_size, patch_size), np.uint8),
        )  # fmt: skip


def _rows(
    image_id: str,
    source_set: str,
    region: str,
    grid: Grid,
    views: list[tuple[str, int, int, np.ndarray]],
    grouped: bool,
) -> PatchRows:
    """Rows for every (view, cell): views are (name, generator label, category, pixels)."""
    n, v = len(grid.cells), len(views)
    ids, names, groups = [], [], []
    cell_keys = [f"{region}/r{c.row}c{c.col}" for c in grid.cells]
    for name, _, _, _ in views:
        names += [name] * n
        ids += [f"{source_set}/{image_id}/{name}/{key}" for key in cell_keys]
        groups += [f"{source_set}/{image_id}/{key}" if grouped else None for key in cell_keys]
    return PatchRows(
        patch_id=ids,
        image_id=[image_id] * (n * v),
        source_set=[source_set] * (n * v),
        view=names,
        generator=np.repeat(np.array([lab for _, lab, _, _ in views], np.int64), n),
        category=np.repeat(np.array([cat for _, _, cat, _ in views], np.int64), n),
        grid_row=np.tile(np.array([c.row for c in grid.cells], np.int16), v),
        grid_col=np.tile(np.array([c.col for c in grid.cells], np.int16), v),
        box=np.tile(np.array([c.box for c in grid.cells], np.int32).reshape(n, 4), (v, 1)),
        group_id=groups,
        patch=np.concatenate([extract_patches(px, grid) for *_, px in views]),
    )


def pair_generated(image_id: str, source: np.ndarray, inpainted: View, inside: Grid) -> PatchRows:
    """Positive pairs of a generated image: its source and its inpainting by the same generator.

    Returns:
        ``pairs`` rows: ``2 * len(inside.cells)``, all category inpainted, generator ``inpainted.label``.
    """
    views = [
        (SOURCE_VIEW, inpainted.label, INPAINTED, source),
        (inpainted.name, inpainted.label, INPAINTED, inpainted.pixels),
    ]
    return _rows(image_id, SOURCE_GENERATED, "in", inside, views, grouped=True)


def pair_real(
    image_id: str,
    source: np.ndarray,
    views: list[View],
    inside: Grid,
    outside: Grid,
    real_label: int = 0,
) -> tuple[PatchRows, PatchRows]:
    """Positive groups and hard negatives of a real image inpainted by K generators.

    Returns:
        ``(pairs, negatives)``: ``(K+1) * len(outside.cells)`` authentic rows in groups of K+1, and
        ``(K+1) * len(inside.cells)`` ungrouped rows (source authentic, inpaintings inpainted).
    """
    regenerated = [(SOURCE_VIEW, real_label, AUTHENTIC, source)]
    regenerated += [(v.name, real_label, AUTHENTIC, v.pixels) for v in views]
    painted = [(SOURCE_VIEW, real_label, AUTHENTIC, source)]
    painted += [(v.name, v.label, INPAINTED, v.pixels) for v in views]
    pairs = _rows(image_id, SOURCE_REAL, "out", outside, regenerated, grouped=True)
    negatives = _rows(image_id, SOURCE_REAL, "in", inside, painted, grouped=False)
    return pairs, negatives
