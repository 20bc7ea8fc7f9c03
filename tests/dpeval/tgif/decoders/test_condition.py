"""ConditionFuser: four scales to one map on the latent grid."""

from __future__ import annotations

import pytest
import torch

from dpeval.tgif.decoders.condition import ConditionFuser


def features(batch=2, side=64, channels=(8, 16, 24, 32)):
    return [
        torch.randn(batch, c, side // s, side // s)
        for c, s in zip(channels, (4, 8, 16, 32), strict=True)
    ]


def test_fuses_four_scales_on_the_grid():
    fuser = ConditionFuser((8, 16, 24, 32), 12)
    out = fuser(features(), (8, 8))
    assert out.shape == (2, 12, 8, 8)
    assert out.min() >= 0  # ends in a ReLU


def test_wrong_features_raise():
    fuser = ConditionFuser((8, 16, 24, 32), 12)
    with pytest.raises(ValueError, match="expected 4 feature maps"):
        fuser(features()[:3], (8, 8))
    with pytest.raises(ValueError, match="16 channels, expected 8"):
        fuser(features(channels=(16, 16, 24, 32)), (8, 8))
