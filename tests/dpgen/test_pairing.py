import numpy as np

from dpgen.grid import Cell, Grid
from dpgen.pairing import (
    AUTHENTIC,
    INPAINTED,
    PatchRows,
    View,
    pair_generated,
    pair_real,
)


def _grid(n: int, patch: int = 8) -> Grid:
    cells = tuple(Cell(0, i, (i * patch, 0, (i + 1) * patch, patch)) for i in range(n))
    return Grid(1, n, patch, cells)


def _image(value: int) -> np.ndarray:
    return np.full((8, 64, 3), value, dtype=np.uint8)


def test_generated_image_gives_one_pair_per_inside_cell():
    rows = pair_generated("img", _image(1), View("tiny-sd21", 1, _image(2)), _grid(3))
    assert len(rows) == 2 * 3
    assert set(rows.category.tolist()) == {INPAINTED} and set(rows.generator.tolist()) == {1}
    groups = {}
    for gid, view, patch in zip(rows.group_id, rows.view, rows.patch, strict=True):
        groups.setdefault(gid, []).append((view, int(patch[0, 0, 0])))
    assert len(groups) == 3
    assert all(sorted(g) == [("source", 1), ("tiny-sd21", 2)] for g in groups.values())


def test_real_image_gives_k_plus_one_positives_outside_and_negatives_inside():
    views = [View("a", 1, _image(10)), View("b", 2, _image(20)), View("c", 3, _image(30))]
    pairs, negatives = pair_real("img", _image(0), views, inside=_grid(2), outside=_grid(5))
    k = len(views)
    assert len(pairs) == (k + 1) * 5 and len(negatives) == (k + 1) * 2
    assert set(pairs.category.tolist()) == {AUTHENTIC} and set(pairs.generator.tolist()) == {0}
    assert len(set(pairs.group_id)) == 5
    assert all(g is None for g in negatives.group_id)
    by_view = dict(
        zip(negatives.view, zip(negatives.category, negatives.generator, strict=True), strict=False)
    )
    assert by_view == {
        "source": (AUTHENTIC, 0),
        "a": (INPAINTED, 1),
        "b": (INPAINTED, 2),
        "c": (INPAINTED, 3),
    }
    assert len(set(pairs.patch_id) | set(negatives.patch_id)) == len(pairs) + len(negatives)


def test_empty_grids_give_empty_rows():
    pairs, negatives = pair_real("x", _image(0), [View("a", 1, _image(1))], _grid(0), _grid(1))
    assert len(negatives) == 0 and negatives.patch.shape == (0, 3, 8, 8)
    assert len(pairs) == 2 and len(PatchRows.empty(8)) == 0
