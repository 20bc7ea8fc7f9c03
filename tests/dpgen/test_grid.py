"""Patch geometry: every kept cell satisfies its constraint, the shrink rule, determinism."""

from __future__ import annotations

import time

import numpy as np
import pytest

from dpgen.grid import Grid, axis_starts, extract_patches, inside_grid, outside_grid


def _rect(h: int, w: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((h, w), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _random_blob(rng: np.random.Generator, h: int = 512, w: int = 512) -> np.ndarray:
    """Union of a few random rectangles and a disc: irregular, like a semantic mask."""
    mask = np.zeros((h, w), dtype=bool)
    for _ in range(rng.integers(1, 4)):
        x0, y0 = rng.integers(0, w - 64), rng.integers(0, h - 64)
        mask[y0 : y0 + rng.integers(32, 300), x0 : x0 + rng.integers(32, 300)] = True
    yy, xx = np.mgrid[:h, :w]
    cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(20, 160)
    mask |= (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
    return mask


def _check_layout(grid: Grid, shape: tuple[int, int]) -> None:
    h, w = shape
    assert len(grid.cells) <= grid.rows * grid.cols
    keys = [(c.row, c.col) for c in grid.cells]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)  # row-major, unique
    for cell in grid.cells:
        x0, y0, x1, y1 = cell.box
        assert x1 - x0 == y1 - y0 == grid.patch
        assert 0 <= x0 and 0 <= y0 and x1 <= w and y1 <= h
        assert 0 <= cell.row < grid.rows and 0 <= cell.col < grid.cols
    for a in grid.cells:  # no two patches overlap
        for b in grid.cells:
            if a is not b:
                ax0, ay0, ax1, ay1 = a.box
                bx0, by0, bx1, by1 = b.box
                assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0


def test_axis_starts_spacing_and_shrink() -> None:
    starts = axis_starts(0, 512, 4, 64)
    assert starts.tolist() == [32, 160, 288, 416]  # centres 64, 192, 320, 448
    assert axis_starts(128, 384, 4, 64).tolist() == [128, 192, 256, 320]
    # 200 px hold 3 patches 66.7 px apart, not 4 at 50 px.
    assert len(axis_starts(0, 200, 4, 64)) == 3
    assert len(axis_starts(0, 63, 4, 64)) == 0
    for length in range(64, 700, 7):
        s = axis_starts(5, 5 + length, 4, 64)
        assert len(s) == min(4, length // 64)
        assert np.all(np.diff(s) >= 64) and s[0] >= 5 and s[-1] + 64 <= 5 + length


def test_inside_full_square_512() -> None:
    mask = _rect(512, 512, 128, 128, 384, 384)
    grid = inside_grid(mask)
    assert (grid.rows, grid.cols, len(grid.cells)) == (4, 4, 16)
    assert grid.cells[0].box == (128, 128, 192, 192)
    assert grid.cells[-1].box == (320, 320, 384, 384)


def test_outside_ring_512() -> None:
    mask = _rect(512, 512, 128, 128, 384, 384)
    grid = outside_grid(mask)
    assert (grid.rows, grid.cols) == (4, 4)
    # The square with its 8-px margin covers the middle 2x2 cells of the whole-image grid.
    assert {(c.row, c.col) for c in grid.cells} == {
        (r, c) for r in range(4) for c in range(4) if not (r in (1, 2) and c in (1, 2))
    }


def test_constraints_hold_on_irregular_masks() -> None:
    rng = np.random.default_rng(0)
    for _ in range(40):
        mask = _random_blob(rng)
        margin = int(rng.integers(0, 20))
        inside = inside_grid(mask)
        outside = outside_grid(mask, margin=margin)
        _check_layout(inside, mask.shape)
        _check_layout(outside, mask.shape)
        for cell in inside.cells:
            x0, y0, x1, y1 = cell.box
            assert mask[y0:y1, x0:x1].all()
        for cell in outside.cells:
            x0, y0, x1, y1 = cell.box
            grown = mask[max(0, y0 - margin) : y1 + margin, max(0, x0 - margin) : x1 + margin]
            assert not grown.any()
        # Completeness: every candidate cell that satisfies the constraint was kept.
        ys = axis_starts(0, 512, 4, 64)
        kept = {c.box for c in outside.cells}
        for y in ys.tolist():
            for x in ys.tolist():
                free = not mask[
                    max(0, y - margin) : y + 64 + margin, max(0, x - margin) : x + 64 + margin
                ].any()
                assert free == ((x, y, x + 64, y + 64) in kept)


def test_margin_is_respected_exactly() -> None:
    # Mask column 8 px to the right of the first outside patch column (patch ends at x=96).
    for gap, kept in [(8, True), (7, False)]:
        mask = _rect(512, 512, 96 + gap, 0, 96 + gap + 10, 512)
        cols = {c.col for c in outside_grid(mask, margin=8).cells}
        assert (0 in cols) == kept
    # The margin also applies across the image border only as far as the image goes.
    mask = _rect(512, 512, 500, 500, 512, 512)
    assert len(outside_grid(mask, margin=8).cells) == 16  # last patch ends at 480, 20 px away


def test_shrink_rule_records_rows_cols() -> None:
    # Bounding box 150x300: 2 columns (75 px apart), 4 rows.
    mask = _rect(512, 512, 10, 20, 160, 320)
    grid = inside_grid(mask)
    assert (grid.rows, grid.cols, len(grid.cells)) == (4, 2, 8)
    # A 200x130 image: outside grid 2 rows x 3 cols.
    grid = outside_grid(np.zeros((130, 200), dtype=bool))
    assert (grid.rows, grid.cols, len(grid.cells)) == (2, 3, 6)
    # Asked for fewer than fit: never more than asked.
    assert outside_grid(np.zeros((1024, 1024), dtype=bool), rows=2, cols=3).cells[-1].row == 1


def test_tiny_regions_give_empty_grids() -> None:
    assert inside_grid(np.zeros((512, 512), dtype=bool)) == Grid(0, 0, 64, ())
    small = _rect(512, 512, 100, 100, 160, 400)  # 60 px wide
    grid = inside_grid(small)
    assert grid.cols == 0 and grid.cells == ()
    assert outside_grid(np.zeros((60, 512), dtype=bool)).cells == ()
    assert outside_grid(np.ones((512, 512), dtype=bool)).cells == ()
    # A diagonal band: bounding box is large but no 64x64 patch fits inside.
    band = np.eye(512, dtype=bool) | np.eye(512, k=1, dtype=bool)
    assert inside_grid(band).cells == ()


def test_deterministic() -> None:
    mask = _random_blob(np.random.default_rng(3))
    assert inside_grid(mask) == inside_grid(mask.copy())
    assert outside_grid(mask) == outside_grid(mask.copy())


def test_rejects_non_bool_mask() -> None:
    with pytest.raises(ValueError, match="bool"):
        inside_grid(np.zeros((64, 64), dtype=np.uint8))
    with pytest.raises(ValueError, match="margin"):
        outside_grid(np.zeros((64, 64), dtype=bool), margin=-1)


def test_extract_patches_bytes_and_layout() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(512, 480, 3), dtype=np.uint8)
    mask = _rect(512, 480, 100, 90, 400, 420)
    for grid in (inside_grid(mask), outside_grid(mask)):
        patches = extract_patches(image, grid)
        assert patches.shape == (len(grid.cells), 3, 64, 64)  # channels first, as the schema
        assert patches.dtype == np.uint8 and patches.flags["C_CONTIGUOUS"]
        for patch, cell in zip(patches, grid.cells, strict=True):
            x0, y0, x1, y1 = cell.box
            np.testing.assert_array_equal(patch, image[y0:y1, x0:x1].transpose(2, 0, 1))
    empty = extract_patches(image, Grid(0, 0, 64, ()))
    assert empty.shape == (0, 3, 64, 64) and empty.dtype == np.uint8


def test_extract_patches_rejects_bad_input() -> None:
    grid = outside_grid(np.zeros((256, 256), dtype=bool))
    with pytest.raises(ValueError, match="uint8"):
        extract_patches(np.zeros((256, 256, 3), dtype=np.float32), grid)
    with pytest.raises(ValueError, match="outside"):
        extract_patches(np.zeros((128, 128, 3), dtype=np.uint8), grid)


def _rate(fn, seconds: float = 0.3) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def test_throughput() -> None:
    """Hot-path speed: loose floors (a loaded 2-core CI box), real figures in the log."""
    mask = _rect(512, 512, 128, 128, 384, 384)
    image = np.zeros((512, 512, 3), dtype=np.uint8)
    grid = inside_grid(mask)
    patches_per_s = 16 * _rate(lambda: extract_patches(image, grid))
    inside_per_s = _rate(lambda: inside_grid(mask))
    outside_per_s = _rate(lambda: outside_grid(mask))
    print(
        f"extract {patches_per_s:.0f} patches/s, inside {inside_per_s:.0f}/s, outside {outside_per_s:.0f}/s"
    )
    assert patches_per_s > 20_000
    assert inside_per_s > 500 and outside_per_s > 500
