"""WebDataset sources (Dragon's layout): one spelling for a local snapshot and the Hub, each
generator taking only its own model's samples, read shard by shard, one-line errors."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dpgen.fixtures import DRAGON_CARD, DRAGON_MODELS, DRAGON_SHARDS
from dpgen.manifest import ManifestError, generated_locations, resolve_generators
from dpgen.schema import SOURCE_GENERATED, SOURCE_REAL
from dpgen.sources import GeneratedSource, SourceError, list_generated, list_images, load_image
from dpgen.sources.webdataset import card_configs, matches, resolve_shards

SD21, SDXL, FLUX = DRAGON_MODELS


def _sources(location: str, names=("sd", "flux"), models=(SD21, FLUX), field="model.txt"):
    return [GeneratedSource(n, location, field, (m,)) for n, m in zip(names, models, strict=True)]


def test_card_configs_follow_the_hub_card_format() -> None:
    configs = card_configs(DRAGON_CARD, "README.md")
    assert list(configs) == ["ExtraSmall", "Small", "Regular", "Large", "ExtraLarge"]
    assert configs["ExtraSmall"] == {
        "train": ["train/xs/dragon_train_xs.tar"],
        "test": ["test/dragon_test_00.tar"],
    }
    plain = card_configs("---\nconfigs:\n- config_name: d\n  data_files: a/*.tar\n---\n", "x")
    assert plain == {"d": {"train": ["a/*.tar"]}}
    assert card_configs("no header", "x") == {}
    # '?' and '*' stay within one path component; '**' crosses them
    assert matches("train/dragon_train_007.tar", "train/dragon_train_0??.tar")
    assert not matches("train/xs/dragon_train_xs.tar", "train/dragon_train_???.tar")
    assert not matches("train/xs/a.tar", "train/*.tar")
    assert matches("train/xs/a.tar", "train/**/*.tar")


def test_configs_name_the_card_s_shards(dragon: Path) -> None:
    assert resolve_shards(f"{dragon}/ExtraSmall:train").files == (DRAGON_SHARDS[0],)
    assert resolve_shards(f"{dragon}/Regular:train").files == DRAGON_SHARDS[1:]
    assert resolve_shards(f"hf://{dragon}/Large").files == DRAGON_SHARDS[1:]  # split: train
    assert resolve_shards(str(Path(__file__).parent)) is None  # a folder without shards


def test_both_spellings_give_each_generator_only_its_own_model(dragon, dragon_hub) -> None:
    listings = {
        spelling: list_generated(_sources(f"{base}/Regular:train"), count=3)
        for spelling, base in (("local", dragon), ("hub", dragon_hub))
    }
    for listing in listings.values():
        assert {n: {r.model for r in refs} for n, refs in listing.refs.items()} == {
            "sd": {SD21},
            "flux": {FLUX},
        }
        assert all(len(refs) == 3 for refs in listing.refs.values())
        (entry,) = listing.report
        # 3 models interleaved, 6 samples a shard: 9 read to find 3 of each of sd and flux
        assert entry["by_value"] == {FLUX: 3, SD21: 3, SDXL: 3}
        assert {n: e["taken"] for n, e in entry["by_generator"].items()} == {"sd": 3, "flux": 3}
        assert (entry["shards_read"], entry["shards_total"]) == (2, 2)
    local, hub = listings["local"].refs["sd"], listings["hub"].refs["sd"]
    assert [r.image_id for r in local] == [r.image_id for r in hub]
    assert all(r.source_set == SOURCE_GENERATED and r.generator == "sd" for r in local + hub)
    for a, b in zip(local, hub, strict=True):
        image_a, size = load_image(a)
        np.testing.assert_array_equal(np.asarray(image_a), np.asarray(load_image(b)[0]))
        assert size == (160, 128) and image_a.mode == "RGB"


def test_a_small_build_never_opens_the_shards_it_does_not_need(dragon, tmp_path) -> None:
    snap = tmp_path / "dragon"
    shutil.copytree(dragon, snap)
    (snap / DRAGON_SHARDS[2]).write_bytes(b"not a tar file")  # the second Regular shard
    listing = list_generated(_sources(f"{snap}/Regular:train"), count=2)
    assert listing.report[0]["shards_read"] == 1 and listing.report[0]["samples_read"] == 6
    assert len(list_images(f"{snap}/Regular:train", SOURCE_REAL, num_images=6)) == 6
    with pytest.raises(SourceError, match="dragon_train_001.tar"):
        list_generated(_sources(f"{snap}/Regular:train"), count=3)  # needs the second shard


def test_an_unknown_model_value_is_one_line_listing_the_values_found(dragon, dragon_hub):
    for base in (dragon, dragon_hub):
        location = f"{base}/ExtraSmall:train"
        with pytest.raises(SourceError) as err:
            list_generated(_sources(location, models=(SD21, "black-forest-labs/FLUX.1-dev")), 3)
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"{location}: no sample of flux")
        assert f"model.txt values found: {sorted(DRAGON_MODELS)}" in message
    with pytest.raises(SourceError, match=r"sd names no source_models .*values found: \["):
        list_generated([GeneratedSource("sd", f"{dragon}/ExtraSmall:train", "model.txt")], 1)
    with pytest.raises(SourceError, match="claimed by sd and flux"):
        list_generated(_sources(f"{dragon}/ExtraSmall:train", models=(SD21, SD21)), 1)


def test_a_missing_config_or_split_is_one_line_listing_the_card_s(dragon, dragon_hub):
    for base in (dragon, dragon_hub):
        with pytest.raises(SourceError) as err:
            list_generated(_sources(f"{base}/Medium:train"), 1)
        assert str(err.value) == (
            f"{base}/Medium:train: no config 'Medium'; the card declares "
            "['ExtraSmall', 'Small', 'Regular', 'Large', 'ExtraLarge']"
        )
        with pytest.raises(SourceError, match=r"several configs .* name one as DATASET/CONFIG"):
            resolve_shards(f"{base}:train")
        with pytest.raises(SourceError, match=r"no split 'validation'; the card declares"):
            resolve_shards(f"{base}/Small:validation")
    with pytest.raises(SourceError, match=r"no shard in .* matches \['test/dragon_test_00.tar'\]"):
        resolve_shards(f"{dragon}/ExtraSmall:test")  # the imitation has no test shards


def test_field_is_needed_to_share_a_location_and_optional_for_folders(dragon, tmp_path):
    with pytest.raises(SourceError, match="without a per-sample model field"):
        list_generated(_sources(f"{dragon}/ExtraSmall:train", field=""), 1)
    # A plain folder has no per-sample field: a manifest's default field does not apply ...
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, ref in enumerate(list_images(f"{dragon}/ExtraSmall:train", SOURCE_REAL, num_images=3)):
        load_image(ref)[0].save(folder / f"{i}.png")
    listing = list_generated([GeneratedSource("sd", str(folder), "model.txt", (SD21,))], 2)
    assert len(listing.refs["sd"]) == 2 and listing.refs["sd"][0].model == ""
    # ... unless it was asked for explicitly (--generated-field)
    with pytest.raises(SourceError, match=r"no per-sample field 'model.txt'"):
        list_generated([GeneratedSource("sd", str(folder), "model.txt", (SD21,), True)], 2)


def test_generated_names_are_manifest_names_or_unambiguous_labels() -> None:
    specs = resolve_generators("tiny-sd21,tiny-sdxl,tiny-flux")
    located = generated_locations({"sd21": "a", "tiny-flux": "b"}, "c", specs)
    assert located == {"tiny-sd21": "a", "tiny-sdxl": "c", "tiny-flux": "b"}
    assert generated_locations({}, None, specs) == {}
    with pytest.raises(ManifestError, match=r"'sd' names no generator .*tiny-sd21 \(label sd21\)"):
        generated_locations({"sd": "a"}, None, specs)
    with pytest.raises(ManifestError, match="given twice"):
        generated_locations({"sd21": "a", "tiny-sd21": "b"}, None, specs)
    twins = [specs[0], dataclasses.replace(specs[0], name="my-sd21")]  # both labelled sd21
    with pytest.raises(ManifestError, match=r"'sd21' is the label of \['tiny-sd21', 'my-sd21'\]"):
        generated_locations({"sd21": "a"}, None, twins)
    assert generated_locations({"my-sd21": "a"}, None, twins) == {"my-sd21": "a"}


def test_a_parquet_dataset_selects_by_a_column(tmp_path) -> None:
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(0)
    pictures = [
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)) for _ in range(6)
    ]
    models = ["m1", "m2", "m3"] * 2
    folder = tmp_path / "mixed"
    folder.mkdir()
    datasets.Dataset.from_dict(
        {"image": pictures, "model": models},
        features=datasets.Features({"image": datasets.Image(), "model": datasets.Value("string")}),
    ).to_parquet(str(folder / "train.parquet"))
    location = f"hf://{folder}"
    listing = list_generated(_sources(location, models=("m1", "m3"), field="model"), count=5)
    assert {n: [(r.image_id, r.model) for r in refs] for n, refs in listing.refs.items()} == {
        "sd": [("mixed:0", "m1"), ("mixed:3", "m1")],
        "flux": [("mixed:2", "m3"), ("mixed:5", "m3")],
    }
    np.testing.assert_array_equal(
        np.asarray(load_image(listing.refs["flux"][1])[0]), np.asarray(pictures[5])
    )
    assert listing.report[0]["by_value"] == {"m1": 2, "m2": 2, "m3": 2}
    with pytest.raises(SourceError, match=r"no per-sample field 'model.txt'; fields: \['image', "):
        list_generated([GeneratedSource("sd", location, "model.txt", ("m1",), True)], 1)
