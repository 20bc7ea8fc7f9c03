"""Inputs: image folders, single files, and producers of a dpgen evalset or build."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset, DatasetDict
from PIL import Image

from dpeval.fingerprint.data import centre_crop, iter_images, read_set
from dpgen.errors import InputError
from dpgen.schema import eval_features, generator_names, patch_features


def _write(folder, sizes, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    g = np.random.default_rng(seed)
    arrays = {}
    for i, (w, h) in enumerate(sizes):
        a = g.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(a).save(folder / f"im{i}.png")
        arrays[f"im{i}"] = a
    return arrays


def test_folder_is_centre_cropped_without_resampling(tmp_path):
    arrays = _write(tmp_path / "imgs", [(40, 36), (33, 50)])
    images = read_set(str(tmp_path / "imgs"), 32)
    assert images.ids == ["im0", "im1"] and images.pixels.shape == (2, 3, 32, 32)
    a = arrays["im1"]  # 50 high, 33 wide: top 9, left 0
    np.testing.assert_array_equal(images.pixels[1], a[9:41, 0:32].transpose(2, 0, 1))
    assert read_set(str(tmp_path / "imgs" / "im0.png"), 32).ids == ["im0"]
    assert len(read_set(str(tmp_path / "imgs"), 32, limit=1, seed=3)) == 1


def test_too_small_images_are_refused_from_their_headers(tmp_path):
    _write(tmp_path / "imgs", [(40, 40), (20, 64)])
    with pytest.raises(InputError, match=r"im1\.png \(20x64\): smaller than --size 32"):
        read_set(str(tmp_path / "imgs"), 32)
    records = list(iter_images([str(tmp_path / "imgs")], 32))
    assert [r[2] == "" for r in records] == [True, False]
    assert "smaller than --size 32" in records[1][2] and records[1][1] is None


def test_several_small_images_and_a_missing_path_read_well(tmp_path):
    _write(tmp_path / "imgs", [(20, 20), (24, 24), (40, 40)])
    with pytest.raises(InputError) as err:
        read_set(str(tmp_path / "imgs"), 32)
    small = tmp_path / "imgs"
    assert str(err.value) == (
        f"{small / 'im0.png'} (20x20): smaller than --size 32, and so are 1 other image(s): "
        f"{small / 'im1.png'} (24x24)"
    )
    with pytest.raises(InputError, match=r"nope\.png: no such file or folder$"):
        list(iter_images([str(tmp_path / "nope.png")], 32))


def test_a_corrupt_image_refuses_training_naming_it(tmp_path):
    _write(tmp_path / "imgs", [(40, 40)])
    (tmp_path / "imgs" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(InputError, match=r"corrupt\.jpg: "):
        read_set(str(tmp_path / "imgs"), 32)


def test_centre_crop_takes_channels_first_or_last():
    a = np.arange(3 * 5 * 6, dtype=np.uint8).reshape(5, 6, 3)
    np.testing.assert_array_equal(centre_crop(a, 4, "x"), centre_crop(a.transpose(2, 0, 1), 4, "x"))


def _patches(n, p, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 3, p, p), dtype=np.uint8)


def test_evalset_producer_selection(tmp_path):
    sources = ["real", "tiny-sd21", "tiny-sd21", "tiny-flux"]
    patches = _patches(4, 16, 0)
    rows = {
        "patch_id": [f"p{i}" for i in range(4)],
        "image_id": [f"i{i}" for i in range(4)],
        "label": [0, 1, 0, 1],
        "kind": ["pristine", "generated", "latent-reconstructed", "generated"],
        "source": sources,
        "source_label": ["real", "sd21", "sd21", "flux"],
        "held_out": [False] * 4,
        "box": [[0, 0, 16, 16]] * 4,
        "patch": list(patches),
    }
    DatasetDict({"eval": Dataset.from_dict(rows, features=eval_features(16))}).save_to_disk(
        str(tmp_path / "ev")
    )
    sd21 = read_set(f"{tmp_path / 'ev'}@tiny-sd21", 8)
    assert sd21.ids == ["p1", "p2"]
    np.testing.assert_array_equal(sd21.pixels[0], patches[1][:, 4:12, 4:12])
    assert read_set(f"{tmp_path / 'ev'}@real", 16).ids == ["p0"]
    with pytest.raises(InputError, match="producers: real, tiny-flux, tiny-sd21"):
        read_set(f"{tmp_path / 'ev'}@tiny-sdxl", 8)
    with pytest.raises(InputError, match=r"select a producer with .*ev@NAME"):
        read_set(str(tmp_path / "ev"), 8)
    with pytest.raises(InputError, match="patches of 16 px < --size 32"):
        read_set(f"{tmp_path / 'ev'}@real", 32)


def test_build_producer_selection(tmp_path):
    features = patch_features(16, generator_names(["sd21"]))
    views = ["source", "tiny-sd21", "source", "tiny-sd21"]
    sets = ["real", "real", "generated", "generated"]

    def split(prefix):
        return Dataset.from_dict(
            {
                "patch_id": [f"{prefix}{i}" for i in range(4)],
                "image_id": ["a"] * 4,
                "source_set": sets,
                "view": views,
                "generator": [0, 1, 1, 1],
                "category": [0, 0, 1, 1],
                "grid_row": [0] * 4,
                "grid_col": [0] * 4,
                "box": [[0, 0, 16, 16]] * 4,
                "group_id": ["g"] * 4,
                "patch": list(_patches(4, 16, 1)),
            },
            features=features,
        )

    DatasetDict({"pairs": split("p"), "negatives": split("n")}).save_to_disk(str(tmp_path / "b"))
    assert read_set(f"{tmp_path / 'b'}@real", 16).ids == ["p0", "n0"]
    assert read_set(f"{tmp_path / 'b'}@tiny-sd21", 16).ids == ["p1", "p3", "n1", "n3"]
