"""dptrain.data and dptrain.augment on a synthetic dpgen build."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch

from dpgen import schema
from dptrain.augment import high_pass, jpeg_compress, to_model_input
from dptrain.data import StepBatches, index_build
from tests.dptrain.conftest import PATCH, make_build


def batches(build, index, **kwargs):
    args = dict(
        batch_size=8,
        pool_per_step=10,
        rank=0,
        world_size=1,
        seed=0,
        pairing="paired",
        augment="geometric",
        binary=False,
    )
    args.update(kwargs)
    return StepBatches(build, index, **args)


def test_index_counts_and_classes(tiny_build):
    index = index_build(tiny_build)
    assert index.patch_size == PATCH
    assert index.class_names == ["real", "sd21", "sdxl", "flux"]
    assert index.counts["anchor_rows"] == 12 * 4 + 12 * 2
    assert index.counts["groups"] == 24
    assert index.counts["negatives_used"] == 96


def test_positive_is_another_member_of_the_group(tiny_build):
    index = index_build(tiny_build)
    sb = batches(tiny_build, index)
    groups = np.array(datasets.load_from_disk(str(tiny_build))["pairs"]["group_id"])
    for step in range(20):
        anchors = sb.anchor_rows(step)
        partners = sb.partner_rows(step, anchors)
        assert (partners != anchors).all()
        assert (groups[partners] == groups[anchors]).all()
    aug = batches(tiny_build, index, pairing="augment")
    anchors = aug.anchor_rows(0)
    assert (aug.partner_rows(0, anchors) == anchors).all()


def test_epochs_cover_anchors_and_ranks_split_them(tiny_build):
    index = index_build(tiny_build)
    per_rank = [batches(tiny_build, index, rank=r, world_size=2) for r in range(2)]
    spe = per_rank[0].steps_per_epoch
    assert spe == 72 // 16
    seen = np.concatenate([sb.anchor_rows(s) for s in range(spe) for sb in per_rank])
    assert len(np.unique(seen)) == len(seen) == spe * 16


def test_batches_are_a_function_of_the_step(tiny_build):
    index = index_build(tiny_build)
    a, b = batches(tiny_build, index)[3], batches(tiny_build, index)[3]
    for key in ("anchor", "positive", "pool", "flips", "rows", "label"):
        assert torch.equal(a[key], b[key])
    assert not torch.equal(a["rows"], batches(tiny_build, index)[4]["rows"])
    assert a["anchor"].dtype == torch.uint8 and a["anchor"].shape == (8, 3, PATCH, PATCH)
    assert a["pool"].shape == (10, 3, PATCH, PATCH)
    assert a["flips"].shape == (2, 8, 2)
    assert not batches(tiny_build, index, augment="none")[3]["flips"].any()


def test_patches_match_the_dataset(tiny_build):
    index = index_build(tiny_build)
    sb = batches(tiny_build, index)
    item = sb[0]
    pairs = datasets.load_from_disk(str(tiny_build))["pairs"]
    for row, patch in zip(item["rows"].tolist(), item["anchor"], strict=True):
        assert np.array_equal(np.asarray(pairs[row]["patch"], dtype=np.uint8), patch.numpy())


def test_labels_binary_and_generator(tiny_build):
    index = index_build(tiny_build)
    item = batches(tiny_build, index)[0]
    rows = item["rows"].numpy()
    assert torch.equal(item["label"], torch.from_numpy(index.pair_class[rows]))
    binary = batches(tiny_build, index, binary=True)[0]
    assert torch.equal(binary["label"], binary["category"])


def test_exclude_generators_drops_flux(tiny_build):
    index = index_build(tiny_build, ("flux",))
    assert index.class_names == ["real", "sd21", "sdxl"]
    ds = datasets.load_from_disk(str(tiny_build))
    names = ds["pairs"].features["generator"].names
    gen = np.array(ds["pairs"]["generator"])
    view = np.array(ds["pairs"]["view"])
    assert not np.isin(
        index.anchors, np.flatnonzero((gen == names.index("flux")) | (view == "flux"))
    ).any()
    # authentic groups lose their flux view (3 left), flux-inpainted groups vanish
    assert index.counts["authentic_anchors"] == 12 * 3
    assert index.counts["inpainted_anchors"] == 8 * 2
    neg_gen = np.array(ds["negatives"]["generator"])
    assert (neg_gen[index.negatives] != names.index("flux")).all()
    with pytest.raises(ValueError, match="cannot exclude"):
        index_build(tiny_build, ("dalle",))


def test_not_a_build_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=str(tmp_path)):
        index_build(tmp_path)
    pairs_only = datasets.DatasetDict({"pairs": datasets.Dataset.from_dict({"x": [1]})})
    pairs_only.save_to_disk(str(tmp_path / "b"))
    with pytest.raises(ValueError, match="expected a DatasetDict"):
        index_build(tmp_path / "b")


def test_batch_larger_than_data_is_a_clear_error(tiny_build):
    with pytest.raises(ValueError, match="lower --batch-size"):
        batches(tiny_build, index_build(tiny_build), batch_size=100)


def test_multi_shard_build(tmp_path):
    build = make_build(tmp_path / "b", groups=6, negatives=20)
    ds = datasets.load_from_disk(str(build))
    ds.save_to_disk(str(tmp_path / "sharded"), num_shards={"pairs": 3, "negatives": 2, "images": 1})
    sharded = tmp_path / "sharded"
    index = index_build(sharded)
    sb = batches(sharded, index, batch_size=4)
    rows = np.array([35, 0, 17, 12, 1])
    expected = np.stack([np.asarray(p, dtype=np.uint8) for p in ds["pairs"].select(rows)["patch"]])
    assert np.array_equal(sb.pairs.take(rows), expected)


def test_prefill_shards_are_disjoint(tiny_build):
    index = index_build(tiny_build)
    shards = [batches(tiny_build, index, rank=r, world_size=2).prefill_rows(64) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 32
    assert not set(shards[0]) & set(shards[1])


def test_flips_happen_on_device_per_sample():
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.uint8).reshape(2, 3, 2, 2)
    flips = torch.tensor([[True, False], [False, True]])
    y = to_model_input(x, flips)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y[0], x[0].flip(2).float())
    torch.testing.assert_close(y[1], x[1].flip(1).float())


def test_jpeg_compress_changes_about_half():
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (40, 3, 16, 16), dtype=np.uint8)
    out = jpeg_compress(patches, np.random.default_rng(1))
    changed = [not np.array_equal(a, b) for a, b in zip(patches, out, strict=True)]
    assert 8 < sum(changed) < 32
    assert out.shape == patches.shape and out.dtype == np.uint8


def test_jpeg_keeps_rgb_order():
    patch = np.zeros((1, 3, 16, 16), np.uint8)
    patch[0, 0] = 255  # pure red
    rng = np.random.default_rng(0)
    while True:  # find a seed that compresses patch 0
        out = jpeg_compress(patch, rng)
        if not np.array_equal(out, patch):
            break
    assert out[0, 0].mean() > 200 and out[0, 2].mean() < 50


def test_high_pass_removes_low_frequencies():
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    smooth = 100 + 50 * torch.cos(2 * torch.pi * xx / 32)  # 1/32 cycles/px = 0.0625 Nyquist
    fine = 20 * torch.cos(torch.pi * xx / 2)  # 0.25 cycles/px = 0.5 Nyquist
    x = (smooth + fine).expand(1, 3, 32, 32)
    torch.testing.assert_close(high_pass(x), fine.expand(1, 3, 32, 32), atol=1e-3, rtol=0)


def test_schema_layout_is_what_the_loader_expects():
    assert tuple(schema.patch_features(8, ["real"])["patch"].shape) == (3, 8, 8)
