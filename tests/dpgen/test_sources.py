"""Source images: listing, decoding every awkward file kind, preparing, prompts, COCO files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from dpgen.schema import SOURCE_GENERATED, SOURCE_REAL
from dpgen.sources import (
    SourceError,
    SourceRef,
    bundled_photos_dir,
    list_images,
    load_coco_instances,
    load_image,
    load_prompts,
    prepare,
)


def _photo(w: int = 96, h: int = 64, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _ref(path: Path) -> SourceRef:
    return SourceRef(path.stem, str(path), SOURCE_REAL)


# --------------------------------------------------------------------------- listing


def test_list_folder_recursive_sorted_ids(tmp_path: Path) -> None:
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    for name in ["z.jpg", "a.PNG", "b/c.jpeg", "b/deep/d.webp", ".hidden/e.png", "._f.jpg"]:
        _photo().save(tmp_path / name, format="PNG")
    (tmp_path / "notes.txt").write_text("not an image")
    refs = list_images(str(tmp_path), SOURCE_GENERATED, generator="sdxl")
    assert [r.image_id for r in refs] == ["a", "b/c", "b/deep/d", "z"]
    assert refs[1].path == str(tmp_path / "b" / "c.jpeg")
    assert {(r.source_set, r.generator, r.prompt) for r in refs} == {(SOURCE_GENERATED, "sdxl", "")}


def test_list_num_images_seeded_subset(tmp_path: Path) -> None:
    for i in range(20):
        _photo(8, 8).save(tmp_path / f"{i:02d}.png")
    all_ids = [r.image_id for r in list_images(str(tmp_path), SOURCE_REAL)]
    five = [r.image_id for r in list_images(str(tmp_path), SOURCE_REAL, num_images=5, seed=1)]
    eight = [r.image_id for r in list_images(str(tmp_path), SOURCE_REAL, num_images=8, seed=1)]
    assert len(five) == 5 and five == sorted(five) and set(five) <= set(eight)
    assert five != all_ids[:5]  # shuffled choice, not the first five
    assert five == [
        r.image_id for r in list_images(str(tmp_path), SOURCE_REAL, num_images=5, seed=1)
    ]
    assert five != [
        r.image_id for r in list_images(str(tmp_path), SOURCE_REAL, num_images=5, seed=2)
    ]
    assert len(list_images(str(tmp_path), SOURCE_REAL, num_images=99)) == 20


def test_list_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=rf"^{tmp_path / 'nope'}: no such folder"):
        list_images(str(tmp_path / "nope"), SOURCE_REAL)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(SourceError, match=rf"^{tmp_path / 'empty'}: no images"):
        list_images(str(tmp_path / "empty"), SOURCE_REAL)
    (tmp_path / "dup").mkdir()
    _photo().save(tmp_path / "dup" / "x.png")
    _photo().save(tmp_path / "dup" / "x.jpg")
    with pytest.raises(SourceError, match="same image id 'x'"):
        list_images(str(tmp_path / "dup"), SOURCE_REAL)
    with pytest.raises(ValueError, match="num_images"):
        list_images(str(tmp_path / "dup"), SOURCE_REAL, num_images=0)
    with pytest.raises(ValueError, match="source_set"):
        list_images(str(tmp_path / "dup"), "fake")


def test_bundled_photos() -> None:
    folder = bundled_photos_dir()
    refs = list_images(None, SOURCE_REAL)
    assert 10 <= len(refs) <= 12
    total = sum(p.stat().st_size for p in folder.iterdir())
    assert total < 2_000_000
    attribution = (folder.parent / "ATTRIBUTION.md").read_text()
    for ref in refs:
        image, (w, h) = load_image(ref)
        assert image.mode == "RGB" and image.size == (w, h)
        assert max(w, h) <= 640 and min(w, h) >= 300
        assert f"`{Path(ref.path).name}`" in attribution
        rgb = np.asarray(image)
        assert not (rgb[..., 0] == rgb[..., 1]).all()  # colour photographs only


def test_hub_dataset_path(tmp_path: Path) -> None:
    """The datasets.load_dataset path, on a local script-free (parquet) dataset."""
    datasets = pytest.importorskip("datasets")
    images = [_photo(90, 80, seed=i) for i in range(3)]
    rows = datasets.Dataset.from_dict(
        {"id": [0, 1, 2], "caption": ["a cat", "a dog", "a cow"], "picture": images},
        features=datasets.Features(
            {
                "id": datasets.Value("int32"),
                "caption": datasets.Value("string"),
                "picture": datasets.Image(),
            }
        ),
    )
    folder = tmp_path / "tinyset"
    folder.mkdir()
    rows.to_parquet(str(folder / "train.parquet"))
    refs = list_images(f"hf://{folder}", SOURCE_REAL, num_images=2, seed=0)
    assert len(refs) == 2
    for ref in refs:
        index = int(ref.image_id.split(":")[1])
        assert ref.image_id == f"tinyset:{index}"
        assert ref.path == f"hf://{folder}:train:{index}"
        assert ref.prompt == ["a cat", "a dog", "a cow"][index]
        image, size = load_image(ref)
        assert size == (90, 80)
        np.testing.assert_array_equal(np.asarray(image), np.asarray(images[index]))
    with pytest.raises(SourceError, match=rf"^hf://{folder}:train:7: row 7 out of range"):
        load_image(SourceRef("x", f"hf://{folder}:train:7", SOURCE_REAL))

    bad = tmp_path / "badset"
    bad.mkdir()
    datasets.Dataset.from_dict(
        {"image": [{"bytes": b"garbage", "path": None}]},
        features=datasets.Features({"image": datasets.Image()}),
    ).to_parquet(str(bad / "train.parquet"))
    (ref,) = list_images(f"hf://{bad}:train", SOURCE_REAL)
    with pytest.raises(SourceError, match=rf"^hf://{bad}:train:0: cannot decode image"):
        load_image(ref)

    no_image = tmp_path / "textset"
    no_image.mkdir()
    datasets.Dataset.from_dict({"text": ["x"]}).to_parquet(str(no_image / "train.parquet"))
    with pytest.raises(SourceError, match="no Image column"):
        list_images(f"hf://{no_image}", SOURCE_REAL)


# --------------------------------------------------------------------------- decoding


def test_decode_rgb_jpeg_and_png(tmp_path: Path) -> None:
    photo = _photo()
    photo.save(tmp_path / "p.png")
    image, size = load_image(_ref(tmp_path / "p.png"))
    assert size == (96, 64)
    np.testing.assert_array_equal(np.asarray(image), np.asarray(photo))
    photo.save(tmp_path / "p.jpg", quality=95)
    assert load_image(_ref(tmp_path / "p.jpg"))[0].mode == "RGB"


def test_grayscale_and_palette(tmp_path: Path) -> None:
    gray = Image.fromarray(np.arange(64 * 96, dtype=np.uint32).reshape(64, 96).astype(np.uint8))
    gray.save(tmp_path / "g.png")
    image, _ = load_image(_ref(tmp_path / "g.png"))
    rgb = np.asarray(image)
    assert image.mode == "RGB"
    np.testing.assert_array_equal(rgb[..., 0], np.asarray(gray))
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])
    palette = _photo().quantize(16)
    palette.save(tmp_path / "p.png")
    image, _ = load_image(_ref(tmp_path / "p.png"))
    np.testing.assert_array_equal(np.asarray(image), np.asarray(palette.convert("RGB")))


def test_cmyk(tmp_path: Path) -> None:
    Image.new("CMYK", (80, 60), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)
    image, size = load_image(_ref(tmp_path / "c.jpg"))
    assert image.mode == "RGB" and size == (80, 60)
    r, g, b = np.asarray(image).reshape(-1, 3).mean(axis=0)
    assert r > 240 and g < 15 and b < 15  # pure red


def test_16_bit_scaled(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16).repeat(4, axis=0)
    Image.fromarray(values).save(tmp_path / "d.png")  # 16-bit grayscale PNG
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    image, _ = load_image(_ref(tmp_path / "d.png"))
    np.testing.assert_array_equal(np.asarray(image)[0, :, 0], [0, 1, 128, 255])
    Image.fromarray(np.array([[0.0, 0.5, 1.0, 2.0]], dtype=np.float32)).save(tmp_path / "f.tif")
    image, _ = load_image(_ref(tmp_path / "f.tif"))
    np.testing.assert_array_equal(np.asarray(image)[0, :, 1], [0, 128, 255, 255])


def test_transparency_composited_on_black(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = [[0, 255, 128, 255]] * 4
    Image.fromarray(rgba).save(tmp_path / "a.png")
    image, _ = load_image(_ref(tmp_path / "a.png"))
    np.testing.assert_array_equal(np.asarray(image)[0, :, 0], [0, 200, 100, 200])
    la = Image.fromarray(rgba[..., [0, 3]])
    la.save(tmp_path / "la.png")
    np.testing.assert_array_equal(
        np.asarray(load_image(_ref(tmp_path / "la.png"))[0])[0, :, 2], [0, 200, 100, 200]
    )
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    palette.info["transparency"] = 1
    palette.save(tmp_path / "t.png", transparency=1)
    assert np.asarray(load_image(_ref(tmp_path / "t.png"))[0]).max() == 0


def test_exif_orientation_6_swaps_size(tmp_path: Path) -> None:
    yy, xx = np.mgrid[:64, :96]
    smooth = np.stack([xx * 2, yy * 3, np.full_like(xx, 90)], axis=-1).astype(np.uint8)
    photo = Image.fromarray(smooth)  # smooth, so JPEG barely changes it
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    photo.save(tmp_path / "r.jpg", exif=exif, quality=95)
    image, size = load_image(_ref(tmp_path / "r.jpg"))
    assert size == (64, 96) and image.size == (64, 96)
    expected = np.asarray(photo.transpose(Image.Transpose.ROTATE_270)).astype(int)
    assert np.abs(np.asarray(image).astype(int) - expected).mean() < 3  # JPEG error only


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg at all")
    with pytest.raises(SourceError, match=rf"^{path}: cannot decode image"):
        load_image(_ref(path))
    with pytest.raises(SourceError, match=rf"^{tmp_path / 'gone.png'}: no such file"):
        load_image(_ref(tmp_path / "gone.png"))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("lenient", [False, True])
def test_truncated_file(tmp_path: Path, fmt: str, lenient: bool, monkeypatch) -> None:
    buffer = io.BytesIO()
    _photo(256, 256).save(buffer, format=fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    # Another library may have made PIL lenient process-wide; truncation must still fail.
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", lenient)
    with pytest.raises(SourceError, match=rf"^{path}: cannot decode image.*truncated"):
        load_image(_ref(path))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is lenient  # restored


# --------------------------------------------------------------------------- preparing


def test_prepare_resize_and_crop() -> None:
    image = _photo(1000, 700)
    prepared = prepare(image, multiple=16, max_side=640, min_side=256, where="big.jpg")
    assert prepared.scale == pytest.approx(0.64)
    assert prepared.original_size == (1000, 700)
    # 1000x700 -> 640x448; 448 is already a multiple of 16.
    assert prepared.crop == (0, 0, 640, 448) and prepared.image.size == (640, 448)
    small = prepare(_photo(530, 401), multiple=8, max_side=640, min_side=256, where="s.jpg")
    assert small.scale == 1.0
    assert small.crop == (1, 0, 529, 400) and small.image.size == (528, 400)
    np.testing.assert_array_equal(
        np.asarray(small.image), np.asarray(_photo(530, 401))[0:400, 1:529]
    )


def test_prepare_too_small_names_the_file() -> None:
    with pytest.raises(SourceError, match=r"^tiny\.png: image 300x250 is smaller than the grid"):
        prepare(_photo(300, 250), multiple=16, max_side=640, min_side=256, where="tiny.png")
    # Fits before the multiple-of-16 crop, not after: 262 -> 256 is fine, 255 -> 240 is not.
    prepare(_photo(300, 262), 16, 640, 256, "ok.png")
    with pytest.raises(SourceError, match="smaller than the grid"):
        prepare(_photo(300, 255), 16, 640, 256, "cut.png")


# --------------------------------------------------------------------------- prompts, COCO


def test_prompts(tmp_path: Path) -> None:
    bundled = load_prompts(None)
    assert 30 <= len(bundled) <= 40 and all(bundled)
    text = tmp_path / "p.txt"
    text.write_text("a red car\n\n  a blue boat  \n")
    assert load_prompts(str(text)) == ["a red car", "a blue boat"]
    captions = tmp_path / "captions_val2017.json"
    captions.write_text(
        json.dumps(
            {
                "annotations": [
                    {"image_id": 1, "id": 9, "caption": "A dog. "},
                    {"image_id": 2, "id": 3, "caption": "A cat"},
                ]
            }
        )
    )
    assert load_prompts(str(captions)) == ["A dog.", "A cat"]
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(SourceError, match=r"bad\.json: not valid JSON"):
        load_prompts(str(tmp_path / "bad.json"))
    (tmp_path / "blank.txt").write_text("\n\n")
    with pytest.raises(SourceError, match=r"blank\.txt: no prompts"):
        load_prompts(str(tmp_path / "blank.txt"))
    with pytest.raises(SourceError, match=r"missing\.txt: no such file"):
        load_prompts(str(tmp_path / "missing.txt"))


def test_coco_instances(tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    path.write_text(
        json.dumps(
            {
                "images": [
                    {"id": 1, "file_name": "000000000001.jpg", "width": 640, "height": 480},
                    {"id": 2, "file_name": "000000000002.jpg", "width": 10, "height": 10},
                ],
                "annotations": [
                    {
                        "id": 7,
                        "image_id": 1,
                        "category_id": 18,
                        "bbox": [1, 2, 3, 4],
                        "segmentation": [[1, 2, 4, 2, 4, 6]],
                    },
                    {
                        "id": 8,
                        "image_id": 1,
                        "category_id": 3,
                        "bbox": [0, 0, 5, 5],
                        "segmentation": [[0, 0, 5, 0, 5, 5]],
                    },
                ],
                "categories": [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}],
            }
        )
    )
    instances = load_coco_instances(str(path))
    assert list(instances) == ["000000000001"]
    assert [a["id"] for a in instances["000000000001"]] == [7, 8]
    assert instances["000000000001"][0]["category_name"] == "dog"
    assert instances["000000000001"][0]["width"] == 640
    (tmp_path / "wrong.json").write_text(json.dumps({"annotations": []}))
    with pytest.raises(SourceError, match=r"wrong\.json: not a COCO instances file"):
        load_coco_instances(str(tmp_path / "wrong.json"))
