from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dpeval.tgif.reader import GENERATORS, read_tgif


def _png(path: Path, size=(16, 16), mode="L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)


def test_fixture_counts_per_split_generator_type(tgif_root):
    index = read_tgif(tgif_root)
    assert index.missing == [] and index.unmatched == []
    counts = index.counts()
    # DEFAULT_LAYOUT: training has 3 (category, id) keys (id 102 under dog and cat), validation 1,
    # testing 2; one variation each, for every generator and mask type
    for split, n in (("training", 3), ("validation", 1), ("testing", 2)):
        assert index.originals[split] == n
        for gen in GENERATORS:
            assert counts[split][gen] == {"bbox": n, "segm": n, "random": n}
    # id 102 exists under two categories and each fake pairs with its own category's mask
    twins = [s for s in index.select("training") if s.image_id == "102"]
    assert {s.category for s in twins} == {"dog", "cat"}
    assert all(s.mask.parent.name == s.category for s in twins)
    # both spellings: SDXL's random fakes are named "_sd2-1024_" in the fixture (README spelling)
    sdxl_random = index.select("testing", ("random",), ("sdxl",))
    assert sdxl_random and all("_sd2-1024_" in s.image.name for s in sdxl_random)
    assert all(s.crop == 1024 and s.mask.name.endswith("_random_1024.png") for s in sdxl_random)
    summary = index.summary()
    assert "training" in summary and "flux1filldev" in summary


def test_flat_layout_and_reported_problems(tmp_path):
    root = tmp_path / "tgif"
    # no category level; split outside the generator folder
    _png(root / "training" / "masks" / "7_mask_segm_512.png")
    _png(root / "training" / "SD2-fr" / "7_mask_segm.png_sd2-512_0.png", mode="RGB")
    # the code's spelling of an SDXL random fake, and its mask
    _png(root / "training" / "masks-sdxl" / "7_mask_random_1024.png", (32, 32))
    _png(root / "training" / "sdxl-fr" / "7_mask_random.png_sdxl-1024_1.png", (32, 32), "RGB")
    # a fake whose mask is missing, one with the wrong size, one misnamed, one outside TGIF
    _png(root / "training" / "SD2-fr" / "8_mask_bbox.png_sd2-512_0.png", mode="RGB")
    _png(root / "training" / "masks" / "9_mask_bbox_1024.png", (20, 20))
    _png(root / "training" / "SDXL-fr" / "9_mask_bbox.png_sdxl-1024_0.png", (24, 24), "RGB")
    _png(root / "training" / "SDXL-fr" / "9_mask_bbox.png_flux1dev-1024_0.png", mode="RGB")
    _png(root / "training" / "SDXL-fr" / "notes.png", mode="RGB")
    _png(root / "elsewhere" / "x.png")
    index = read_tgif(root)
    found = {(s.generator, s.mask_type, s.category) for s in index.samples}
    assert found == {("sd2", "segm", ""), ("sdxl", "random", "")}
    assert len(index.missing) == 2
    assert any(
        "8_mask_bbox.png_sd2-512_0.png" in m and "no mask 8_mask_bbox_512.png" in m
        for m in index.missing
    )
    assert any("9_mask_bbox.png_sdxl-1024_0.png" in m and "size" in m for m in index.missing)
    assert len(index.unmatched) == 3
    assert any("flux1dev" in u and "SDXL-fr" in u for u in index.unmatched)
    assert any("notes.png" in u for u in index.unmatched)
    assert any("elsewhere" in u and "no TGIF folder" in u for u in index.unmatched)


def test_ambiguous_masks_are_not_guessed(tmp_path):
    root = tmp_path / "tgif"
    _png(root / "masks" / "testing" / "dog" / "5_mask_random_512.png")
    _png(root / "masks-sd2" / "testing" / "dog" / "5_mask_random_512.png")
    _png(root / "sd2-fr" / "testing" / "dog" / "5_mask_random.png_sd2-512_0.png", mode="RGB")
    index = read_tgif(root)
    assert index.samples == [] and "2 masks" in index.missing[0]


def test_missing_root_and_bad_split(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        read_tgif(tmp_path / "nope")
    with pytest.raises(ValueError, match="unknown split"):
        read_tgif(tmp_path).select("train")


def test_fixture_masks_are_0_255_and_fakes_match_mask_size(tgif_root):
    for s in read_tgif(tgif_root).select("validation"):
        mask = np.asarray(Image.open(s.mask))
        assert set(np.unique(mask)) <= {0, 255} and mask.max() == 255
        assert Image.open(s.image).size == mask.shape[::-1]
