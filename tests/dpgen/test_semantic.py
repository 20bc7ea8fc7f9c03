"""TGIF's semantic rule: non-crowd instances, TGIF's object filter and choice order, prompts."""

from __future__ import annotations

import numpy as np
import pytest

from dpgen.fixtures import COCO_EXPECTED
from dpgen.masks import MaskError, semantic_mask
from dpgen.semantic import choose, passes_filter, tgif_choice, tgif_prompt, uniform_choice
from dpgen.sources import load_coco_captions, load_coco_instances


def _ann(ann_id, category_id, bbox, name="dog", iscrowd=0):
    return {"id": ann_id, "category_id": category_id, "category_name": name, "bbox": bbox,
            "iscrowd": iscrowd, "area": bbox[2] * bbox[3]}  # fmt: skip


@pytest.fixture(scope="module")
def coco_files(coco):
    return (
        load_coco_instances(str(coco / "annotations" / "instances_val2017.json")),
        load_coco_captions(str(coco / "annotations" / "captions_val2017.json")),
    )


def test_tgif_rule_on_the_coco_imitation(coco_files) -> None:
    instances, captions = coco_files
    assert all(len(c) == 5 for c in captions.values())
    for stem, (category, ann_id, caption_index) in COCO_EXPECTED.items():
        choice = tgif_choice(instances[stem], captions[stem], stem)
        assert (choice.category, choice.annotation["id"], choice.caption_index) == (
            category, ann_id, caption_index,
        )  # fmt: skip
        assert choice.prompt == f"{category}, {captions[stem][caption_index]}"
        assert choice.annotation["iscrowd"] == 0
    # the crowd RLE of image 1 is a real region (it decodes), it is just never chosen
    crowd = instances["000000000001"][0]
    assert crowd["iscrowd"] == 1 and semantic_mask(320, 240, crowd).sum() == crowd["area"]


def test_filter_is_tgif_s_bbox_rule() -> None:
    assert passes_filter(_ann(1, 18, [0, 0, 511.9, 100]))
    assert not passes_filter(_ann(1, 18, [0, 0, 512, 100]))  # under 512 px per side
    assert not passes_filter(_ann(1, 18, [0, 0, 64, 64]))  # w * h must exceed 64 x 64
    assert passes_filter(_ann(1, 18, [0, 0, 64, 64.5]))


def test_choice_order_first_instance_of_each_category_in_category_order() -> None:
    anns = [
        _ann(1, 18, [0, 0, 30, 30]),  # first dog: too small, so dog is passed over ...
        _ann(2, 18, [0, 0, 200, 200]),  # ... even though the second dog would pass
        _ann(3, 3, [0, 0, 300, 100], "car", iscrowd=1),  # crowd: never a candidate
        _ann(4, 17, [0, 0, 100, 100], "cat"),
        _ann(5, 3, [0, 0, 90, 90], "car"),  # first non-crowd car; car (3) comes before cat
    ]
    choice = tgif_choice(anns, ["A cat.", "A car on a road."], "img")
    assert (choice.annotation["id"], choice.prompt, choice.caption_index) == (
        5, "car, A car on a road.", 1,
    )  # fmt: skip
    with pytest.raises(MaskError, match=r"img: no category's first non-crowd instance .*dog"):
        tgif_choice(anns[:3], ["x"], "img")
    with pytest.raises(MaskError, match="no non-crowd COCO instance"):
        tgif_choice([anns[2]], ["x"], "img")


def test_prompt_is_category_and_first_caption_with_the_word() -> None:
    captions = ["Two Dogs play.", "A hotdog stand.", "A dog sleeps."]
    # TGIF tests `word in caption`: case-sensitive, and a substring ("hotdog") counts
    assert tgif_prompt("dog", captions) == ("dog, A hotdog stand.", 1)
    assert tgif_prompt("cat", captions) == ("cat, Two Dogs play.", 0)
    with pytest.raises(MaskError, match="no COCO caption"):
        tgif_prompt("cat", [])


def test_uniform_rule_keeps_the_source_prompt_and_skips_crowds() -> None:
    anns = [_ann(1, 1, [0, 0, 300, 300], "person", iscrowd=1), _ann(2, 18, [0, 0, 80, 80])]
    picks = {
        uniform_choice(anns, np.random.default_rng(s), "x").annotation["id"] for s in range(20)
    }
    assert picks == {2}
    assert choose("uniform", anns, [], np.random.default_rng(0), "x").prompt is None
    with pytest.raises(ValueError, match="unknown semantic rule"):
        choose("coco", anns, [], np.random.default_rng(0), "x")
