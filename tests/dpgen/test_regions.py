"""One decision per image: the mask policy of its source set, and its prompt."""

from __future__ import annotations

import numpy as np
import pytest

from dpgen.errors import InputError
from dpgen.masks import parse_mask_policy
from dpgen.regions import RegionChooser
from dpgen.schema import SOURCE_GENERATED, SOURCE_REAL
from dpgen.sources import SourceRef, list_images, load_image, prepare


@pytest.fixture(scope="module")
def real(coco):
    refs = list_images(str(coco / "val2017"), SOURCE_REAL)
    # resized to 256 px and cropped to a multiple of 16, as a build would
    return [(ref, prepare(load_image(ref)[0], 16, 256, 64, ref.path)) for ref in refs]


def _chooser(coco, policy: str, **kwargs) -> RegionChooser:
    files = {
        "annotations": str(coco / "annotations" / "instances_val2017.json"),
        "captions": str(coco / "annotations" / "captions_val2017.json"),
    }
    return RegionChooser(parse_mask_policy(policy), (4, 4), 32, 8, **{**files, **kwargs})


def test_semantic_for_real_images_training_rectangle_for_generated(coco, real) -> None:
    chooser = _chooser(coco, "semantic")
    ref, prepared = real[0]
    region = chooser.choose(SOURCE_REAL, ref, prepared, np.random.default_rng(0), ref.path)
    assert (region.policy, region.category, region.annotation_id) == ("semantic", "dog", 102)
    assert region.prompt == "dog, A brown dog runs in front of a crowd."
    assert region.mask.shape == (prepared.image.size[1], prepared.image.size[0])
    generated = SourceRef("g", "", SOURCE_GENERATED, "tiny-sd21", prompt="a cat")
    region = chooser.choose(SOURCE_GENERATED, generated, prepared, np.random.default_rng(0), "g")
    assert (region.policy, region.prompt, region.annotation_id) == ("train", None, -1)


def test_random_masks_of_real_images_get_tgif_s_empty_prompt(coco, real) -> None:
    chooser = _chooser(coco, "random")
    ref, prepared = real[1]
    rng = np.random.default_rng(0)
    assert chooser.choose(SOURCE_REAL, ref, prepared, rng, "r").prompt == ""
    assert chooser.choose(SOURCE_GENERATED, ref, prepared, rng, "g").prompt is None


def test_semantic_needs_its_files_and_annotations_of_the_real_images(coco, real) -> None:
    with pytest.raises(InputError, match="needs --annotations"):
        RegionChooser(parse_mask_policy("semantic"), (4, 4), 32, 8)
    with pytest.raises(InputError, match="needs --captions"):
        _chooser(coco, "semantic", captions=None)
    assert _chooser(coco, "semantic", captions=None, rule="uniform").captions == {}
    chooser = _chooser(coco, "semantic")
    chooser.check_real([ref for ref, _ in real])
    with pytest.raises(InputError, match=r"names none of the 1 real images \(e.g. x.jpg\)"):
        chooser.check_real([SourceRef("x", "/photos/x.jpg", SOURCE_REAL)])
