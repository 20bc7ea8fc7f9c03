"""TGIF training crops in an order that is a pure function of (seed, step).

The fine-tuning draws samples from an endless stream of epochs, each one permutation of the
training fakes seeded by ``(seed, epoch)``; the k-th sample of the stream is augmented with a
generator seeded by ``(seed, k)`` (`dpeval.tgif.augment`). Item ``m`` of `StepCrops` is this
process's share of micro-batch ``m`` (``m = step * accumulation + micro``), so resuming at any
step replays exactly the crops an uninterrupted run would have seen, whatever the number of
data-loader workers (as `dptrain.data.StepBatches`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dpeval.tgif.augment import augment
from dpeval.tgif.evaluate import load_mask, load_rgb
from dpeval.tgif.reader import TGIFSample
from dpgen.errors import InputError

# Purposes mixed into the seeds, so the two streams never coincide.
_ORDER, _AUGMENT = range(2)


class StepCrops(Dataset):
    """Map-style dataset whose item ``m`` is micro-batch ``m`` for one process.

    Item: ``(image (B, 3, S, S) uint8, mask (B, S, S) int64 in {-1, 0, 1})`` with B =
    ``batch_size`` and S = ``crop_size``.

    Args:
        samples: the training fakes.
        crop_size: S.
        batch_size: B, crops per micro-batch and process.
        rank, world_size: this process and the process count; micro-batch ``m`` takes
            stream positions ``(m * world_size + rank) * B ... + B - 1``.
        seed: the run's seed.
    """

    def __init__(
        self,
        samples: Sequence[TGIFSample],
        crop_size: int,
        batch_size: int,
        rank: int,
        world_size: int,
        seed: int,
    ) -> None:
        if not samples:
            raise InputError("no training sample")
        self.samples = list(samples)
        self.crop_size = crop_size
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed

    @lru_cache(maxsize=2)  # noqa: B019 - one permutation per epoch, shared by its batches
    def _epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, _ORDER, epoch]).permutation(len(self.samples))

    def sample_index(self, position: int) -> int:
        """Index into ``samples`` of stream position ``position`` (0-based)."""
        epoch, j = divmod(position, len(self.samples))
        return int(self._epoch_order(epoch)[j])

    def crop(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """The augmented crop of stream position ``position``: (S, S, 3) uint8, (S, S) int64."""
        s = self.samples[self.sample_index(position)]
        image, mask = load_rgb(s.image), load_mask(s.mask)
        if image.shape[:2] != mask.shape:
            raise InputError(
                f"{s.image}: size {image.shape[:2]} differs from its mask {s.mask} {mask.shape}"
            )
        rng = np.random.default_rng([self.seed, _AUGMENT, position])
        return augment(image, mask, self.crop_size, rng)

    def __getitem__(self, micro_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        first = (micro_batch * self.world_size + self.rank) * self.batch_size
        crops = [self.crop(first + i) for i in range(self.batch_size)]
        images = torch.from_numpy(np.stack([c[0] for c in crops])).permute(0, 3, 1, 2)
        masks = torch.from_numpy(np.stack([c[1] for c in crops]))
        return images.contiguous(), masks


def step_loader(crops: StepCrops, start: int, stop: int, num_workers: int, seed: int) -> DataLoader:
    """Micro-batches ``start .. stop - 1`` of ``crops``, prefetched by ``num_workers`` workers.

    The loader has its own random generator, so creating it does not draw from torch's global
    one (whose state a checkpoint restores for SegFormer's drop-path).
    """
    return DataLoader(
        crops,
        batch_size=None,
        sampler=range(start, stop),
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )
