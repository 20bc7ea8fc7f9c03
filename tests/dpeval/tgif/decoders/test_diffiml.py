"""DiffIMLDecoder: shapes, the loss and DDIM sampling against direct transcriptions, seeds, TTA."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dpeval.tgif.decoders.diffiml import DiffIMLDecoder, fuse_flip
from dpeval.tgif.decoders.lightvae import LightVAE

CHANNELS = (8, 16, 24, 32)
STRIDES = (4, 8, 16, 32)
SMALL = dict(
    feature_channels=CHANNELS, condition_channels=16, unet_channels=32, vae_base_channels=8
)


def decoder(**kwargs) -> DiffIMLDecoder:
    torch.manual_seed(0)
    return DiffIMLDecoder(**{**SMALL, **kwargs})


def features(
    batch: int = 2, height: int = 64, width: int = 64, seed: int = 0
) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, c, height // s, width // s, generator=g)
        for c, s in zip(CHANNELS, STRIDES, strict=True)
    ]


def square_masks(batch: int = 2, side: int = 64) -> torch.Tensor:
    mask = torch.zeros(batch, 1, side, side)
    for i in range(batch):
        mask[i, :, 8 + 4 * i : 40, 16 : 48 - 4 * i] = 1
    return mask


def linear_alpha_bar(steps: int = 1000) -> np.ndarray:
    """DDPM's linear schedule: betas 1e-4 .. 0.02, alpha_bar_t = prod_{s <= t} (1 - beta_s)."""
    return np.cumprod(1 - np.linspace(1e-4, 0.02, steps, dtype=np.float64))


def edge_band(mask: torch.Tensor, width: int = 7) -> torch.Tensor:
    """Cross dilation of mask and of its complement, both: written with unfold, not max-pooling."""
    r = width // 2

    def dilate(x):
        padded = F.pad(x, (r, r, r, r))
        h, w = x.shape[-2:]
        rows = torch.stack([padded[..., r : r + h, j : j + w] for j in range(width)]).amax(0)
        cols = torch.stack([padded[..., i : i + h, r : r + w] for i in range(width)]).amax(0)
        return torch.maximum(rows, cols)

    return dilate(mask) * dilate(1 - mask)


def test_shapes_and_gradients():
    dec = decoder().train()
    loss = dec(features(), square_masks())
    assert loss.loss.ndim == 0 and torch.isfinite(loss.loss)
    loss.loss.backward()
    assert dec.unet.conv_in.merge.weight.grad is not None
    assert dec.condition.project[3].weight.grad is not None
    assert all(p.grad is None for p in dec.vae.parameters())  # frozen
    assert not dec.vae.training  # BN statistics of the LightVAE stay fixed
    dec.eval()
    probs = dec.sample(features(height=64, width=48), torch.Generator().manual_seed(0), None, 2, 2)
    assert probs.shape == (2, 1, 64, 48)
    assert 0 <= probs.min() and probs.max() <= 1


def test_loss_matches_a_direct_transcription():
    """0.2 MSE(mask) + 0.8 MSE(edge) on x0 predicted from add_noise(x0 + 0.1 e_prior, e, t)."""
    dec = decoder().train()
    feats, mask = features(), square_masks()
    got = dec(feats, mask, generator=torch.Generator().manual_seed(7))

    g = torch.Generator().manual_seed(7)  # the documented draw order: t, noise, prior
    t = torch.randint(0, 1000, (2,), generator=g)
    z_mask = dec.vae.encode(mask * 2 - 1)
    z_edge = dec.vae.encode(edge_band(mask) * 2 - 1)
    x0 = torch.cat([z_mask, z_edge], dim=1)
    noise = torch.randn(x0.shape, generator=g)
    prior = torch.randn(x0.shape, generator=g)
    a = torch.tensor(linear_alpha_bar()[t.numpy()], dtype=torch.float32).view(-1, 1, 1, 1)
    noisy = a.sqrt() * (x0 + 0.1 * prior) + (1 - a).sqrt() * noise
    pred = dec.denoise(noisy, t, dec.condition(feats, (8, 8)))
    mask_mse = ((pred[:, :4] - z_mask) ** 2).mean()  # the target is the CLEAN latent
    edge_mse = ((pred[:, 4:] - z_edge) ** 2).mean()
    torch.testing.assert_close(got.mask_loss, mask_mse)
    torch.testing.assert_close(got.edge_loss, edge_mse)
    torch.testing.assert_close(got.loss, 0.2 * mask_mse + 0.8 * edge_mse)


def ddim_transcription(dec, feats, noise, steps):
    """DDIM, eta 0, x0-prediction clipped to [-1, 1], "leading" steps 875, 750, ..., 0 for 8."""
    alpha_bar = linear_alpha_bar()
    stride = 1000 // steps
    timesteps = [stride * i for i in reversed(range(steps))]
    cond = dec.condition(feats, noise.shape[-2:])
    cond = cond.repeat(noise.shape[0] // cond.shape[0], 1, 1, 1)
    y = noise
    for t in timesteps:
        x0 = dec.denoise(y, torch.tensor(t), cond)
        eps = (y - math.sqrt(alpha_bar[t]) * x0) / math.sqrt(1 - alpha_bar[t])
        x0 = x0.clamp(-1, 1)
        prev = alpha_bar[t - stride] if t - stride >= 0 else 1.0
        y = math.sqrt(prev) * x0 + math.sqrt(1 - prev) * eps
    return y


@pytest.mark.parametrize("steps", [1, 8])
def test_sampling_matches_ddim_and_the_latent_ensemble(steps):
    dec = decoder().eval()
    feats = features(batch=2)
    got = dec.sample(feats, torch.Generator().manual_seed(3), num_inference_steps=steps, ensemble=3)
    noise = torch.randn(6, 8, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = ddim_transcription(dec, feats, noise, steps)
        z = y.view(3, 2, 8, 8, 8).mean(0)[:, :4]  # members k*B .. (k+1)*B - 1, averaged
        want = torch.sigmoid(dec.vae.decode(z))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_sampling_is_deterministic_given_a_seed():
    dec = decoder(num_inference_steps=3, ensemble=2).eval()
    feats = features()
    a = dec.sample(feats, generator=torch.Generator().manual_seed(11))
    b = dec.sample(feats, generator=torch.Generator().manual_seed(11))
    c = dec.sample(feats, generator=torch.Generator().manual_seed(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_one_and_eight_steps_both_run():
    dec = decoder().eval()
    feats = features(batch=1, height=32, width=32)
    one = dec.sample(feats, torch.Generator().manual_seed(0), num_inference_steps=1)
    eight = dec.sample(feats, torch.Generator().manual_seed(0))  # the default: 8 steps x 5
    assert one.shape == eight.shape == (1, 1, 32, 32)
    assert not torch.equal(one, eight)


def test_fuse_flip_is_a_max_with_the_mirrored_back_map():
    probs = torch.tensor([[[[0.25, 0.875, 0.5]]]])
    flipped = torch.tensor([[[[0.125, 0.375, 0.75]]]])  # mirrored back: 0.75, 0.375, 0.125
    assert fuse_flip(probs, flipped).tolist() == [[[[0.75, 0.875, 0.5]]]]


def toy_encoder(seed: int = 0):
    """A fixed (not flip-equivariant) four-scale encoder of images."""
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(c, 3, 1, 1, generator=g) for c in CHANNELS]

    def encode(images):
        return [
            F.conv2d(F.avg_pool2d(images, s), w) + torch.arange(images.shape[-1] // s).float()
            for w, s in zip(weights, STRIDES, strict=True)
        ]

    return encode


def test_predict_fuses_the_flipped_batch_by_max():
    dec = decoder(num_inference_steps=2, ensemble=2).eval()
    encode, images = toy_encoder(), torch.rand(2, 3, 32, 32)
    got = dec.predict(encode, images, generator=torch.Generator().manual_seed(5))
    both = dec.sample(
        encode(torch.cat([images, images.flip(-1)])), torch.Generator().manual_seed(5)
    )
    want = torch.maximum(both[:2], both[2:].flip(-1))
    torch.testing.assert_close(got, want)
    assert (got >= both[:2]).all() and not torch.equal(got, both[:2])

    plain = decoder(num_inference_steps=2, ensemble=2, flip_tta=False).eval()
    torch.testing.assert_close(
        plain.predict(encode, images, torch.Generator().manual_seed(5)),
        plain.sample(encode(images), torch.Generator().manual_seed(5)),
    )


def test_save_pretrained_round_trip(tmp_path):
    dec = decoder(num_inference_steps=2, ensemble=2, prior_rate=0.05).eval()
    dec.save_pretrained(tmp_path)
    loaded = DiffIMLDecoder.from_pretrained(tmp_path).eval()
    assert (loaded.num_inference_steps, loaded.ensemble, loaded.prior_rate) == (2, 2, 0.05)
    feats = features(batch=1)
    torch.testing.assert_close(
        loaded.sample(feats, torch.Generator().manual_seed(0)),
        dec.sample(feats, torch.Generator().manual_seed(0)),
    )


def test_set_vae_copies_weights_and_checks_the_shape():
    dec = decoder()
    torch.manual_seed(9)
    vae = LightVAE(base_channels=8)
    dec.set_vae(vae)
    for a, b in zip(dec.vae.state_dict().values(), vae.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="differs"):
        dec.set_vae(LightVAE(base_channels=16))


def test_bad_masks_and_sizes_raise():
    dec = decoder()
    with pytest.raises(ValueError, match="0/1"):
        dec(features(), square_masks() - 1)  # -1 = TGIF's ignored padding
    with pytest.raises(ValueError, match="multiples of 8"):
        dec(features(height=60, width=60), torch.zeros(2, 60, 60))
    with pytest.raises(ValueError, match="multiples of 8"):
        dec.eval().sample(features(), size=(64, 60))
