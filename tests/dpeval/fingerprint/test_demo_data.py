"""Demo image sets: photo tiles, the split, the decoder perturbation of a derived generator."""

from __future__ import annotations

import numpy as np
import torch
from diffusers import AutoencoderKL

from dpeval.fingerprint.demo_data import MIN_STD, perturb_decoder, photo_tiles, split


def test_photo_tiles_are_whole_non_flat_tiles():
    tiles = photo_tiles(128)
    assert len(tiles) > 50 and len({i for i, _ in tiles}) == len(tiles)
    assert all(t.size == (128, 128) for _, t in tiles)
    assert min(np.asarray(t.convert("L"), dtype=float).std() for _, t in tiles) >= MIN_STD
    parts = split(tiles, 0.25, seed=0)
    assert len(parts["test"]) == round(0.25 * len(tiles))
    assert {i for i, _ in parts["train"]}.isdisjoint(i for i, _ in parts["test"])
    assert [i for i, _ in split(tiles, 0.25, seed=0)["test"]] == [i for i, _ in parts["test"]]


def test_perturb_decoder_touches_the_decoder_only_and_is_seeded():
    def vae():
        torch.manual_seed(0)
        return AutoencoderKL(block_out_channels=(8,), norm_num_groups=8, latent_channels=4)

    a, b, base = vae(), vae(), vae()
    perturb_decoder(a, 0.05, seed=3)
    perturb_decoder(b, 0.05, seed=3)
    for (name, p), q, r in zip(
        a.named_parameters(), b.parameters(), base.parameters(), strict=True
    ):
        assert torch.equal(p, q), name
        if name.startswith("decoder.") and r.abs().sum() > 0:
            ratio = (p / r)[r != 0]
            assert 0.5 < ratio.mean() < 1.5 and not torch.equal(p, r), name
        elif not name.startswith("decoder."):
            assert torch.equal(p, r), name
