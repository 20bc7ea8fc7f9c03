"""The fingerprint U-Net: shapes, value range, save/load."""

from __future__ import annotations

import torch

from dpeval.fingerprint.unet import FingerprintUNet


def test_output_shape_and_range_and_skip_connections():
    torch.manual_seed(0)
    unet = FingerprintUNet(in_channels=16, out_channels=3, base_channels=8, depth=4)
    out = unet(torch.rand(2, 16, 32, 32) * 0.1)
    assert out.shape == (2, 3, 32, 32)
    assert out.abs().max() < 1
    # the authors' layout: 4 encoder blocks, a bottleneck, 4 decoder blocks on concatenations
    assert len(unet.encoders) == 4 and len(unet.decoders) == 4
    assert unet.decoders[0][0][0].in_channels == 2 * 64  # skip (64) + upsampled (64)
    assert unet.decoders[-1][0].in_channels == 2 * 8


def test_save_pretrained_round_trip(tmp_path):
    torch.manual_seed(0)
    unet = FingerprintUNet(out_channels=1, base_channels=4, depth=2).eval()
    unet.save_pretrained(tmp_path)
    again = FingerprintUNet.from_pretrained(tmp_path).eval()
    z = torch.rand(1, 16, 16, 16)
    assert torch.equal(unet(z), again(z))
