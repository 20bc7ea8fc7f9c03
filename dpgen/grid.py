"""Patch geometry: where the 64x64 patches of an image lie (paper Sec. 3.1).

The paper cuts "64x64 patches on a 4x4 grid, up to 16 per image": inside the inpainted region
for generated images, outside it for real ones, and the grid shrinks when patch centres would
fall under 64 px apart (Dragon: 550,728 outside patches instead of 640,000). This module is the
one place that rule lives; everything here is a pure function of its inputs.

The rule, per axis of a region ``[lo, hi)`` of length ``L`` (inside: the mask's bounding box;
outside: the whole image):

1. ``n = min(n_max, L // patch)``: the largest count whose centre spacing ``L / n`` is at least
   ``patch`` (patches never overlap); ``n = 0`` when the region is shorter than one patch.
2. Centres sit in the middle of ``n`` equal slots, ``lo + (i + 1/2) L / n``; a patch's start is
   its centre minus ``patch / 2``, floored (integer arithmetic, so identical on every machine).
3. Of the ``rows x cols`` cells, only those that satisfy the region's constraint are kept:
   inside, every pixel of the patch is masked; outside, no masked pixel lies within the patch
   grown by ``margin`` px on each side (the decoder blends across the mask edge, so pixels just
   outside it are not authentic).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Cell:
    """One patch position.

    Attributes:
        row: row index in the grid actually used (``0 <= row < Grid.rows``).
        col: column index in the grid actually used.
        box: ``(x0, y0, x1, y1)`` pixel box, end-exclusive; ``x1 - x0 == y1 - y0 == patch``.
    """

    row: int
    col: int
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class Grid:
    """The patch positions of one region of one image.

    Attributes:
        rows: rows actually used after shrinking (may be fewer than asked, or 0).
        cols: columns actually used after shrinking.
        patch: patch side in pixels.
        cells: kept cells in row-major order; may be fewer than ``rows * cols``.
    """

    rows: int
    cols: int
    patch: int
    cells: tuple[Cell, ...]


def axis_starts(lo: int, hi: int, count: int, patch: int) -> np.ndarray:
    """Patch start coordinates along one axis of the region ``[lo, hi)``.

    Args:
        lo: first pixel of the region.
        hi: one past its last pixel.
        count: most patches wanted along this axis.
        patch: patch side.

    Returns:
        ``(n,)`` int64 starts, ``n = min(count, (hi - lo) // patch)`` (possibly 0); consecutive
        starts are at least ``patch`` apart and every patch lies within ``[lo, hi)``.
    """
    length = hi - lo
    n = max(0, min(count, length // patch))
    i = np.arange(n, dtype=np.int64)
    # floor(lo + (i + 1/2) * L / n - patch / 2) without floats; >= lo because L >= n * patch.
    return lo + ((2 * i + 1) * length - n * patch) // (2 * n) if n else i


def _check_mask(mask: np.ndarray) -> None:
    if not isinstance(mask, np.ndarray) or mask.ndim != 2 or mask.dtype != np.bool_:
        raise ValueError(
            f"mask must be a (H, W) bool array, got {type(mask).__name__} "
            f"{getattr(mask, 'dtype', '')}{getattr(mask, 'shape', '')}"
        )


def _block_test(
    mask: np.ndarray, ys: np.ndarray, xs: np.ndarray, patch: int, grow: int, inside: bool
) -> np.ndarray:
    """Test the ``patch x patch`` boxes at every (ys[r], xs[c]) corner, grown by ``grow`` px.

    Separable: per grid row, one reduction of the row band over its height gives a column
    profile (all-masked for inside, any-masked for outside), and a prefix sum of that profile
    answers every box of the row. Slicing views keeps a call on a 512^2 mask near 0.1 ms,
    several times faster than building a full summed-area table for so few queries.

    Returns:
        ``(len(ys), len(xs))`` bool: inside, every pixel masked; outside, none masked within
        the grown box (clipped to the image).
    """
    height, width = mask.shape
    x0 = np.maximum(xs - grow, 0)
    x1 = np.minimum(xs + patch + grow, width)
    keep = np.empty((len(ys), len(xs)), dtype=bool)
    for r, y in enumerate(ys.tolist()):
        band = mask[max(y - grow, 0) : min(y + patch + grow, height)]
        # Count the columns that break the rule: not all masked (inside) or any masked (outside).
        bad = ~band.all(axis=0) if inside else band.any(axis=0)
        csum = np.concatenate(([0], np.cumsum(bad, dtype=np.int32)))
        keep[r] = csum[x1] == csum[x0]
    return keep


def _grid(ys: np.ndarray, xs: np.ndarray, keep: np.ndarray, patch: int) -> Grid:
    y, x = ys.tolist(), xs.tolist()
    rr, cc = np.nonzero(keep)  # row-major order
    cells = tuple(
        Cell(r, c, (x[c], y[r], x[c] + patch, y[r] + patch))
        for r, c in zip(rr.tolist(), cc.tolist(), strict=True)
    )
    return Grid(rows=len(y), cols=len(x), patch=patch, cells=cells)


def inside_grid(mask: np.ndarray, rows: int = 4, cols: int = 4, patch: int = 64) -> Grid:
    """Patches lying entirely inside the mask (the inpainted content of a generated image).

    Centres are spread over the mask's bounding box (module docstring, steps 1-3); a cell is
    kept when all ``patch^2`` of its pixels are masked.

    Args:
        mask: ``(H, W)`` bool, True where the image was inpainted.
        rows: most grid rows (paper: 4).
        cols: most grid columns (paper: 4).
        patch: patch side (paper: 64).

    Returns:
        The grid; ``rows == cols == 0`` and no cells for an empty mask.
    """
    _check_mask(mask)
    any_row = mask.any(axis=1)
    if not any_row.any():
        return Grid(rows=0, cols=0, patch=patch, cells=())
    any_col = mask.any(axis=0)
    y_lo, y_hi = int(any_row.argmax()), len(any_row) - int(any_row[::-1].argmax())
    x_lo, x_hi = int(any_col.argmax()), len(any_col) - int(any_col[::-1].argmax())
    ys = axis_starts(y_lo, y_hi, rows, patch)
    xs = axis_starts(x_lo, x_hi, cols, patch)
    if len(ys) == 0 or len(xs) == 0:
        return _grid(ys, xs, np.zeros((len(ys), len(xs)), bool), patch)
    keep = _block_test(mask, ys, xs, patch, grow=0, inside=True)
    return _grid(ys, xs, keep, patch)


def outside_grid(
    mask: np.ndarray, rows: int = 4, cols: int = 4, patch: int = 64, margin: int = 8
) -> Grid:
    """Patches lying clear of the mask (the authentic content of an image).

    Centres are spread over the whole image (module docstring, steps 1-3); a cell is kept when
    its box grown by ``margin`` px on every side (clipped to the image) holds no masked pixel,
    i.e. the patch is at Chebyshev distance > ``margin`` from the mask.

    Args:
        mask: ``(H, W)`` bool, True where the image was inpainted.
        rows: most grid rows (paper: 4).
        cols: most grid columns (paper: 4).
        patch: patch side (paper: 64).
        margin: clearance in pixels between a patch and the mask.

    Returns:
        The grid; for an empty mask every cell of the shrunk grid is kept.
    """
    _check_mask(mask)
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    height, width = mask.shape
    ys = axis_starts(0, height, rows, patch)
    xs = axis_starts(0, width, cols, patch)
    if len(ys) == 0 or len(xs) == 0:
        return _grid(ys, xs, np.zeros((len(ys), len(xs)), bool), patch)
    keep = _block_test(mask, ys, xs, patch, grow=margin, inside=False)
    return _grid(ys, xs, keep, patch)


def extract_patches(image: np.ndarray, grid: Grid) -> np.ndarray:
    """Cut the grid's patches out of an image, channels first (the schema's layout).

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        grid: from `inside_grid` / `outside_grid` on a mask of the same ``(H, W)``.

    Returns:
        ``(N, 3, P, P)`` uint8, C-contiguous, ``N = len(grid.cells)``, in ``grid.cells`` order.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.dtype}{image.shape}")
    p = grid.patch
    height, width = image.shape[:2]
    out = np.empty((len(grid.cells), 3, p, p), dtype=np.uint8)
    chw = image.transpose(2, 0, 1)  # a view: each patch is copied once, straight into `out`
    for i, cell in enumerate(grid.cells):
        x0, y0, x1, y1 = cell.box
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise ValueError(f"cell box {cell.box} lies outside the {width}x{height} image")
        out[i] = chw[:, y0:y1, x0:x1]
    return out
