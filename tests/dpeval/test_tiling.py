import numpy as np
import pytest

from dpeval.tiling import Blender, ramp, tile_starts, tiles


def test_starts_cover_the_side_with_at_least_the_overlap():
    for length in (1, 100, 1024, 1025, 3000, 4000):
        starts = tile_starts(length, 1024, 128)
        assert starts[0] == 0 and starts[-1] + min(length, 1024) == length
        gaps = np.diff(starts)
        assert (1024 - gaps >= 128 - 1).all()  # neighbours share >= overlap (rounding: 1 px)
    assert tile_starts(4000, 1024, 128) == [0, 744, 1488, 2232, 2976]  # ceil(3872 / 896) = 5
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(100, 64, 40)


def test_every_tile_of_an_image_has_one_shape():
    boxes = tiles(3000, 4000, 1024, 128)
    assert len(boxes) == 4 * 5 and {(b.h, b.w) for b in boxes} == {(1024, 1024)}
    assert {(b.h, b.w) for b in tiles(700, 1500, 1024, 128)} == {(700, 1024)}


def test_blend_reconstructs_a_field_exactly_where_tiles_agree():
    field = np.random.default_rng(0).random((300, 410)).astype(np.float32)
    blender = Blender(300, 410, 32)
    for box in tiles(300, 410, 128, 32):
        blender.add(box, box.crop(field))
    np.testing.assert_allclose(blender.result(), field, rtol=1e-6)


def test_blend_has_no_seam_when_tiles_disagree():
    # every tile predicts its own constant: a hard seam of 1.0 if pasted; the blend cross-fades
    h, w, tile, overlap = 200, 500, 128, 32
    blender = Blender(h, w, overlap)
    for i, box in enumerate(tiles(h, w, tile, overlap)):
        blender.add(box, np.full((box.h, box.w), float(i % 2), np.float32))
    out = blender.result()
    steps = np.abs(np.diff(out, axis=1)).max()
    assert steps <= 1.0 / overlap + 1e-6  # at most a 1/overlap change between neighbours
    assert out.min() == 0.0 and out.max() == 1.0  # a tile's own interior keeps its value


def test_ramp_is_positive_and_reaches_one():
    r = ramp(100, 16)
    assert r.min() > 0 and r.max() == 1.0 and r[0] == pytest.approx(0.5 / 16)
    assert (ramp(10, 0) == 1).all()
