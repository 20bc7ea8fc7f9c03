"""One decision per image: the mask policy of its source set, and its prompt."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dpgen.errors import InputError
from dpgen.masks import MaskError, parse_mask_policy
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


def _copy_as(coco, tmp_path, name: str, edit) -> SourceRef:
    """A copy of a fixture photo, changed by ``edit(image) -> (image, exif)``, under its name."""
    image = Image.open(coco / "val2017" / name)
    changed, exif = edit(image)
    changed.save(tmp_path / name, exif=exif) if exif else changed.save(tmp_path / name)
    return SourceRef(name[:-4], str(tmp_path / name), SOURCE_REAL)


def test_annotations_of_another_size_are_refused_for_that_image(coco, tmp_path) -> None:
    chooser = _chooser(coco, "semantic")
    half = _copy_as(coco, tmp_path, "000000000001.jpg", lambda im: (im.reduce(2), None))
    prepared = prepare(load_image(half)[0], 16, 256, 64, half.path)
    with pytest.raises(
        MaskError,
        match=r"000000000001.jpg: annotations are for a 320x240 image, the file is 160x120",
    ):
        chooser.choose(SOURCE_REAL, half, prepared, np.random.default_rng(0), half.path)


def test_annotations_of_an_exif_rotated_photo_follow_its_pixels(coco, tmp_path) -> None:
    chooser = _chooser(coco, "semantic")
    ref = list_images(str(coco / "val2017"), SOURCE_REAL)[0]
    exif = Image.Exif()
    exif[0x0112] = 6  # stored as annotated; shown turned by a quarter
    rotated = _copy_as(coco, tmp_path, "000000000001.jpg", lambda im: (im, exif))
    straight = prepare(load_image(ref)[0], 1, 10_000, 64, ref.path)
    turned = prepare(load_image(rotated)[0], 1, 10_000, 64, rotated.path)
    assert turned.image.size == straight.image.size[::-1]
    a = chooser.choose(SOURCE_REAL, ref, straight, np.random.default_rng(0), ref.path).mask
    b = chooser.choose(SOURCE_REAL, rotated, turned, np.random.default_rng(0), rotated.path).mask
    # the mask turns with the pixels: the same object under it
    np.testing.assert_array_equal(b, np.rot90(a, k=-1))
