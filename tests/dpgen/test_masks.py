"""Masks: TGIF's random rule, COCO semantic masks (polygon, RLE, bbox), the training policy."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dpgen.fixtures import rle_counts, rle_string
from dpgen.grid import inside_grid, outside_grid
from dpgen.masks import (
    MASK_POLICIES,
    MaskError,
    MaskPolicy,
    check_mask,
    load_mask,
    parse_mask_policy,
    random_mask,
    semantic_mask,
    to_image,
    training_mask,
    transform_mask,
)
from dpgen.sources import prepare


def _box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


def test_policies() -> None:
    assert MASK_POLICIES == ("train", "random", "semantic")


def test_mask_policy_per_source_set() -> None:
    assert parse_mask_policy("train") == MaskPolicy("train", "train")
    assert parse_mask_policy("random") == MaskPolicy("random", "random")
    # generated images have no annotations: semantic is for real ones, generated get train
    assert parse_mask_policy("semantic") == MaskPolicy("semantic", "train")
    assert parse_mask_policy("real=semantic") == MaskPolicy("semantic", "train")
    policy = parse_mask_policy(" real=semantic , generated=random ")
    assert (policy.of("real"), policy.of("generated")) == ("semantic", "random")
    assert str(policy) == "real=semantic,generated=random"
    with pytest.raises(ValueError, match="generated=semantic: generated images have no COCO"):
        parse_mask_policy("real=semantic,generated=semantic")
    with pytest.raises(ValueError, match="unknown mask policy 'tgif'"):
        parse_mask_policy("real=tgif")
    with pytest.raises(ValueError, match="expected SOURCE=POLICY"):
        parse_mask_policy("fake=train")


@pytest.mark.parametrize("size", [(640, 427), (512, 512), (1024, 768), (107, 107)])
def test_random_mask_follows_tgif_ranges(size: tuple[int, int]) -> None:
    w, h = size
    widths, heights, xs, ys = set(), set(), set(), set()
    for seed in range(300):
        mask = random_mask(w, h, np.random.default_rng(seed))
        assert mask.shape == (h, w) and mask.dtype == np.bool_
        x0, y0, x1, y1 = _box_of(mask)
        assert mask.sum() == (x1 - x0) * (y1 - y0)  # one solid rectangle
        assert 64 <= x1 - x0 <= int(0.6 * w) and 64 <= y1 - y0 <= int(0.6 * h)
        widths.add(x1 - x0)
        heights.add(y1 - y0)
        xs.add(x0)
        ys.add(y0)
    # Both ends of each range are reachable (uniform integers, endpoint included).
    if w == 107:
        assert widths == {64} and xs == set(range(0, 107 - 64 + 1))
    else:
        assert min(widths) < 64 + 0.1 * w and max(widths) > 0.5 * w
        assert 0 in xs or min(xs) < 10
    assert random_mask(w, h, np.random.default_rng(7)).tobytes() == (
        random_mask(w, h, np.random.default_rng(7)).tobytes()
    )


def test_random_mask_too_small() -> None:
    with pytest.raises(MaskError, match="100x300"):
        random_mask(100, 300, np.random.default_rng(0))


def test_semantic_polygon() -> None:
    ann = {"id": 5, "segmentation": [[10, 10, 50, 10, 50, 30, 10, 30]], "bbox": [10, 10, 40, 20]}
    mask = semantic_mask(64, 48, ann)
    assert mask.shape == (48, 64)
    assert _box_of(mask) == (10, 10, 51, 31)  # PIL fills the boundary pixels too
    assert mask.all(where=np.pad(np.ones((21, 41), bool), ((10, 17), (10, 13))))
    # Two polygons (an object split by occlusion) are united.
    ann["segmentation"].append([0, 40, 5, 40, 5, 45])
    assert semantic_mask(64, 48, ann)[42, 2]


def test_semantic_bbox_matches_tgif() -> None:
    ann = {"id": 1, "bbox": [10.7, 5.2, 20.9, 10.1], "segmentation": []}
    mask = semantic_mask(64, 48, ann, kind="bbox")
    # TGIF: map(int, bbox) -> (10, 5, 20, 10), PIL rectangle [10, 5, 30, 15] inclusive.
    assert _box_of(mask) == (10, 5, 31, 16) and mask.sum() == 21 * 11


def test_semantic_rle_uncompressed_and_compressed() -> None:
    rng = np.random.default_rng(0)
    truth = np.zeros((37, 53), dtype=bool)
    truth[5:30, 7:40] = rng.random((25, 33)) > 0.3  # many runs, long and short
    truth[0, 0] = True  # starts with a run of ones: first count 0
    counts = rle_counts(truth)
    assert counts[0] == 0
    raw = {"id": 2, "segmentation": {"size": [37, 53], "counts": counts}}
    np.testing.assert_array_equal(semantic_mask(53, 37, raw), truth)
    compressed = {"id": 3, "segmentation": {"size": [37, 53], "counts": rle_string(counts)}}
    np.testing.assert_array_equal(semantic_mask(53, 37, compressed), truth)
    # Strings derived by hand from maskApi.c: [[1, 0, 1], [1, 1, 0]] is column-major
    # 1,1,0,1,1,0 -> counts [0, 2, 1, 2, 1] -> deltas from the 4th count on -> "02100".
    two_by_three = {"segmentation": {"size": [2, 3], "counts": "02100"}}
    np.testing.assert_array_equal(semantic_mask(3, 2, two_by_three), [[1, 0, 1], [1, 1, 0]])
    # counts [5, 40, 3, 1]: 40 needs two chars ("X1"), 1 - 40 = -39 is negative ("iN").
    assert rle_string([5, 40, 3, 1]) == "5X13iN"
    seven = semantic_mask(7, 7, {"segmentation": {"size": [7, 7], "counts": "5X13iN"}})
    np.testing.assert_array_equal(seven.T.ravel(), [0] * 5 + [1] * 40 + [0] * 3 + [1])


def test_semantic_errors() -> None:
    with pytest.raises(MaskError, match="annotation 9: RLE size"):
        semantic_mask(10, 10, {"id": 9, "segmentation": {"size": [5, 5], "counts": [25]}})
    with pytest.raises(MaskError, match="do not cover"):
        semantic_mask(10, 10, {"id": 9, "segmentation": {"size": [10, 10], "counts": [50]}})
    with pytest.raises(MaskError, match="unknown mask kind"):
        semantic_mask(10, 10, {"id": 9, "segmentation": []}, kind="blob")
    with pytest.raises(MaskError, match="neither polygons nor RLE"):
        semantic_mask(10, 10, {"id": 9, "segmentation": []})
    with pytest.raises(MaskError, match="empty"):
        semantic_mask(10, 10, {"id": 9, "segmentation": [[20, 20, 30, 20, 30, 30]]})


def test_training_mask_gives_both_grids_on_512() -> None:
    for seed in range(50):
        mask = training_mask(512, 512, np.random.default_rng(seed))
        x0, y0, x1, y1 = _box_of(mask)
        assert (x1 - x0, y1 - y0) == (256, 256) and mask.sum() == 256 * 256
        assert len(inside_grid(mask).cells) == 16
        assert len(outside_grid(mask).cells) == 12  # the most a 256-px square allows
        check_mask(mask, "train")


def test_training_mask_best_placement_is_exhaustive() -> None:
    """No placement of the same rectangle keeps more outside cells (checked by brute force)."""
    w, h = 448, 320
    mask = training_mask(w, h, np.random.default_rng(0))
    x0, y0, x1, y1 = _box_of(mask)
    mw, mh = x1 - x0, y1 - y0
    assert (mw, mh) == (224, 160)  # half of each side
    best = 0
    for bx in range(0, w - mw + 1, 4):
        for by in range(0, h - mh + 1, 4):
            trial = np.zeros((h, w), dtype=bool)
            trial[by : by + mh, bx : bx + mw] = True
            best = max(best, len(outside_grid(trial).cells))
    assert len(outside_grid(mask).cells) >= best
    assert len(inside_grid(mask).cells) == 3 * 2


def test_training_mask_small_and_large_images() -> None:
    small = training_mask(300, 200, np.random.default_rng(1))
    assert _box_of(small)[2] - _box_of(small)[0] == 150
    large = training_mask(1024, 1024, np.random.default_rng(1))
    assert len(inside_grid(large).cells) == 16 and len(outside_grid(large).cells) == 15
    positions = {_box_of(training_mask(512, 512, np.random.default_rng(s)))[:2] for s in range(30)}
    assert len(positions) > 5  # varied placement, not one fixed square


def test_check_mask() -> None:
    with pytest.raises(MaskError, match="img7: mask is empty"):
        check_mask(np.zeros((8, 8), dtype=bool), "img7")
    with pytest.raises(MaskError, match="img7: mask is full"):
        check_mask(np.ones((8, 8), dtype=bool), "img7")
    with pytest.raises(MaskError, match="img7: mask must be a"):
        check_mask(np.zeros((8, 8), dtype=np.uint8), "img7")
    with pytest.raises(MaskError, match="img7: mask must be a"):
        check_mask(np.zeros((8, 8, 1), dtype=bool), "img7")


def test_load_mask_round_trip_and_errors(tmp_path) -> None:
    mask = np.zeros((30, 40), dtype=bool)
    mask[5:20, 10:30] = True
    path = tmp_path / "m.png"
    to_image(mask).save(path)
    assert Image.open(path).mode == "L"
    np.testing.assert_array_equal(load_mask(path, size=(40, 30)), mask)
    with pytest.raises(MaskError, match=r"m\.png: mask is 40x30, expected 30x40"):
        load_mask(path, size=(30, 40))

    grey = tmp_path / "grey.png"
    Image.fromarray((mask * 128).astype(np.uint8)).save(grey)
    with pytest.raises(MaskError, match=r"grey\.png: mask has values other than 0 and 255"):
        load_mask(grey)
    rgb = tmp_path / "rgb.png"
    to_image(mask).convert("RGB").save(rgb)
    with pytest.raises(MaskError, match=r"rgb\.png: .*mode RGB"):
        load_mask(rgb)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(MaskError, match=r"broken\.png: cannot decode"):
        load_mask(broken)
    with pytest.raises(MaskError, match=r"missing\.png: no such file"):
        load_mask(tmp_path / "missing.png")
    bilevel = tmp_path / "bilevel.png"
    to_image(mask).convert("1").save(bilevel)
    np.testing.assert_array_equal(load_mask(bilevel), mask)


def test_transform_mask_follows_prepare() -> None:
    """A mask marking an image's pixels stays aligned after prepare's resize and crop."""
    w, h = 1000, 700
    mask = np.zeros((h, w), dtype=bool)
    mask[200:500, 300:700] = True
    image = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).convert("RGB")
    prepared = prepare(image, multiple=16, max_side=640, min_side=64, where="x")
    out = transform_mask(mask, prepared.scale, prepared.crop)
    assert out.shape == (prepared.image.height, prepared.image.width)
    bright = np.asarray(prepared.image)[..., 0] > 127
    assert (out != bright).mean() < 0.005  # only resampling-edge disagreement
    # Without resizing, it is a plain crop.
    small = prepare(image.crop((0, 0, 500, 403)), 16, 640, 64, "y")
    np.testing.assert_array_equal(
        transform_mask(mask[:403, :500], small.scale, small.crop), mask[1:401, 2:498]
    )
