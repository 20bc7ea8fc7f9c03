"""The training crops are a pure function of (seed, step): any order of reads, any worker count."""

import numpy as np
import torch
from PIL import Image

from dpeval.tgif.crops import StepCrops, step_loader
from dpeval.tgif.reader import TGIFSample


def _samples(tmp_path, n=5):
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        image, mask = tmp_path / f"{i}.png", tmp_path / f"{i}_mask.png"
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(image)
        m = np.zeros((40, 48), np.uint8)
        m[10:20, 10 + i : 30] = 255
        Image.fromarray(m).save(mask)
        out.append(TGIFSample("training", "dog", str(i), "sd2", "segm", 512, 0, image, mask))
    return out


def test_items_depend_only_on_seed_and_index(tmp_path):
    samples = _samples(tmp_path)
    a = StepCrops(samples, 32, 3, rank=0, world_size=1, seed=7)
    b = StepCrops(samples, 32, 3, rank=0, world_size=1, seed=7)
    for m in (4, 0, 2):  # any order
        for x, y in zip(a[m], b[m], strict=True):
            assert torch.equal(x, y)
    image, mask = a[0]
    assert (
        image.shape == (3, 3, 32, 32) and image.dtype == torch.uint8 and mask.shape == (3, 32, 32)
    )
    assert not torch.equal(a[0][0], StepCrops(samples, 32, 3, 0, 1, seed=8)[0][0])


def test_each_epoch_sees_every_sample_once_and_ranks_split_the_stream(tmp_path):
    samples = _samples(tmp_path)
    crops = StepCrops(samples, 32, 1, rank=0, world_size=1, seed=0)
    for epoch in range(3):
        seen = sorted(crops.sample_index(epoch * 5 + j) for j in range(5))
        assert seen == list(range(5))
    r0, r1 = (StepCrops(samples, 32, 2, rank=r, world_size=2, seed=0) for r in (0, 1))
    # micro-batch m of rank r takes stream positions (2m + r) * 2, +1
    assert torch.equal(r1[0][0][0], crops[2][0][0]) and torch.equal(r0[1][0][1], crops[5][0][0])


def test_resumed_loader_replays_the_same_batches(tmp_path):
    samples = _samples(tmp_path)
    crops = StepCrops(samples, 32, 2, rank=0, world_size=1, seed=3)
    full = [b[0] for b in step_loader(crops, 0, 6, num_workers=0, seed=3)]
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    resumed = [b[0] for b in step_loader(crops, 4, 6, num_workers=2, seed=3)]
    assert torch.equal(torch.rand(1), before)  # the loader left the global generator alone
    assert all(torch.equal(x, y) for x, y in zip(full[4:], resumed, strict=True))
