"""Builds from the paper's published data layouts: Dragon's shards, COCO val2017 the TGIF way."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dpgen.cli import main as dpgen_main
from dpgen.fixtures import COCO_EXPECTED, DRAGON_MODELS
from dpgen.info import build_counts, format_counts, load_build
from dpgen.manifest import load_manifest
from dpgen.masks import semantic_mask, transform_mask
from dpgen.presets import BUILD_PRESETS, PAPER_COUNTS, matching_preset
from dpgen.schema import IMAGES, PAIRS
from dpgen.sources import load_coco_instances

SD21, _, FLUX = DRAGON_MODELS


def _records(out):
    images = load_build(out)[IMAGES].remove_columns(["mask"])
    return {r["image_id"]: r for r in images}


@pytest.mark.slow
def test_dragon_both_spellings_each_generator_gets_only_its_own_model(
    tmp_path, small_manifests, dragon, dragon_hub
):
    """sd21 (a label) from the Hub id, flux from the local snapshot: same spelling, one shard."""
    out = tmp_path / "out"
    code = dpgen_main(["build", "--generators", ",".join(small_manifests), "--num-images", "1",
                       "--num-generated", "2", "--patch-size", "32", "--out", str(out),
                       "--generated", f"sd21={dragon_hub}/ExtraSmall:train",
                       "--generated", f"flux={dragon}/ExtraSmall:train"])  # fmt: skip
    assert code == 0
    generated = [r for r in _records(out).values() if r["source_set"] == "generated"]
    assert sorted((r["generator"], r["source_model"]) for r in generated) == [
        ("tiny-flux", FLUX), ("tiny-flux", FLUX), ("tiny-sd21", SD21), ("tiny-sd21", SD21),
    ]  # fmt: skip
    assert all(
        r["image_id"].startswith(f"{r['generator']}/dragon/dragon_train_xs/") for r in generated
    )
    counts = build_counts(out)
    assert counts["formulas_hold"] and counts["missing"] == []
    assert counts["patches"]["generated_pairs"] > 0
    taken = {
        e["location"]: {g: v["taken"] for g, v in e["by_generator"].items()}
        for e in counts["generated_sources"]
    }
    assert taken == {
        f"{dragon_hub}/ExtraSmall:train": {"tiny-sd21": 2},
        f"{dragon}/ExtraSmall:train": {"tiny-flux": 2},
    }
    text = format_counts(counts)
    assert f"generated source: {dragon}/ExtraSmall:train: read 6 samples from 1 of 1" in text


@pytest.mark.slow
def test_coco_semantic_build_uses_tgif_s_rule(tmp_path, small_manifests, coco, dragon):
    out = tmp_path / "out"
    ann = coco / "annotations"
    code = dpgen_main(["build", "--generators", small_manifests[0], "--real", str(coco / "val2017"),
                       "--mask-policy", "semantic", "--annotations", str(ann / "instances_val2017.json"),
                       "--captions", str(ann / "captions_val2017.json"), "--num-generated", "1",
                       "--generated", f"sd21={dragon}/ExtraSmall:train", "--patch-size", "32",
                       "--out", str(out)])  # fmt: skip
    assert code == 0
    records = _records(out)
    for stem, (category, ann_id, caption_index) in COCO_EXPECTED.items():
        r = records[stem]
        assert (r["mask_policy"], r["category"], r["annotation_id"], r["caption_index"]) == (
            "semantic", category, ann_id, caption_index,
        )  # fmt: skip
        assert r["prompt"].startswith(f"{category}, ")
    (generated,) = [r for r in records.values() if r["source_set"] == "generated"]
    assert (generated["mask_policy"], generated["annotation_id"]) == ("train", -1)
    # the mask is the dog polygon's: no pixel of the crowd region that comes first in the file
    dd = load_build(out)
    image = next(r for r in dd[IMAGES] if r["image_id"] == "000000000001")
    mask = np.asarray(image["mask"]) > 0
    crowd, dog = load_coco_instances(str(ann / "instances_val2017.json"))["000000000001"]
    scale, crop = image["scale"], tuple(image["crop"])
    assert not (mask & transform_mask(semantic_mask(320, 240, crowd), scale, crop)).any()
    np.testing.assert_array_equal(mask, transform_mask(semantic_mask(320, 240, dog), scale, crop))
    counts = build_counts(out)
    assert counts["missing"] == [] and counts["formulas_hold"]
    assert set(counts[PAIRS]["by_category"]["inpainted"]) == {"sd21"}


def test_semantic_generated_sources_are_refused_before_anything_loads(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        dpgen_main(["build", "--mask-policy", "real=semantic,generated=semantic",
                    "--out", str(tmp_path / "out")])  # fmt: skip
    assert exit_.value.code == 2
    assert (
        "generated=semantic: generated images have no COCO annotations" in capsys.readouterr().err
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_info_flags_pairs_lacking_what_the_command_asked_for(tmp_path, small_manifests):
    small = tmp_path / "small"
    small.mkdir()
    for i in range(2):  # too small for a 32-px grid: every generated source is skipped
        Image.new("RGB", (40, 40), (i * 90, 30, 60)).save(small / f"{i}.png")
    out = tmp_path / "out"
    code = dpgen_main(["build", "--generators", small_manifests[0], "--num-images", "1",
                       "--generated", f"sd21={small}", "--num-generated", "2",
                       "--patch-size", "32", "--out", str(out)])  # fmt: skip
    assert code == 0
    counts = build_counts(out)
    assert counts["formulas_hold"] and counts["missing"] == ["inpainted/sd21"]
    assert len(counts["skipped"]) == 2
    assert "WARNING: the pairs lack what the command asked for: inpainted/sd21" in format_counts(
        counts
    )


def test_paper_preset_counts_follow_the_pairing_formulas() -> None:
    """The stated full-scale counts are the formulas on the preset's recipe (paper Sec. 3.1)."""
    preset = BUILD_PRESETS["paper"]
    k = len(preset["generators"])
    rows, cols = (int(v) for v in preset["grid"].split("x"))
    cells = rows * cols
    assert PAPER_COUNTS["generated_pairs"] == k * preset["num_generated"] * cells * 2
    assert PAPER_COUNTS["negatives"] == preset["num_images"] * cells * (k + 1)
    # real views: (K+1) views per outside position, fewer than 16 positions where the grid shrinks
    assert PAPER_COUNTS["real_views"] % (k + 1) == 0
    assert PAPER_COUNTS["real_views"] < preset["num_images"] * cells * (k + 1)
    assert PAPER_COUNTS["total"] == sum(v for n, v in PAPER_COUNTS.items() if n != "total")
    for name in preset["generators"]:  # each takes its Dragon images by model.txt
        spec = load_manifest(f"manifests/generators/{name}.yaml")
        assert spec.source_field == "model.txt" and spec.source_models
    config = dict(preset, grid=[rows, cols], real="/coco/val2017", out="x", mode="inpaint")
    assert matching_preset(config) == "paper"
    assert matching_preset(dict(config, num_images=4)) is None
