"""LightVAE: shapes, the latent scale, and a save_pretrained round trip."""

from __future__ import annotations

import torch

from dpeval.tgif.decoders.lightvae import LATENT_SCALE, LightVAE, to_signed


def test_shapes_and_latent_scale():
    torch.manual_seed(0)
    vae = LightVAE(base_channels=8).eval()
    mask = to_signed(torch.rand(2, 1, 64, 48) > 0.5)
    assert set(mask.unique().tolist()) == {-1.0, 1.0}
    latent = vae.encode(mask)
    assert latent.shape == (2, 4, 8, 6)
    torch.testing.assert_close(latent, vae.encoder(mask) * LATENT_SCALE)
    assert vae(mask).shape == (2, 1, 64, 48)
    torch.testing.assert_close(vae(mask), vae.decoder(vae.encoder(mask)))


def test_paper_widths():
    vae = LightVAE()
    convs = [m for m in vae.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 4]
    assert [c.stride for c in convs[:3]] == [(2, 2)] * 3
    ups = [m for m in vae.decoder if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [u.out_channels for u in ups] == [64, 32, 32]


def test_save_pretrained_round_trip(tmp_path):
    torch.manual_seed(1)
    vae = LightVAE(latent_channels=3, base_channels=8, scaling_factor=0.5).eval()
    vae.save_pretrained(tmp_path)
    loaded = LightVAE.from_pretrained(tmp_path).eval()
    assert (loaded.latent_channels, loaded.base_channels, loaded.scaling_factor) == (3, 8, 0.5)
    x = to_signed(torch.rand(1, 1, 32, 32) > 0.5)
    torch.testing.assert_close(loaded(x), vae(x))
