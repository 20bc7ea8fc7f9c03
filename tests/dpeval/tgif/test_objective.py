"""The fine-tuning objective: BCE for the MLP decoder, DiffIML's loss with padding as authentic."""

import pytest
import torch
from transformers import SegformerConfig, SegformerModel

from dpeval.tgif.augment import IGNORE
from dpeval.tgif.decoders.lightvae import LightVAE
from dpeval.tgif.lite_baseline import LiteBaseline
from dpeval.tgif.objective import (
    LocalizerLoss,
    masked_bce,
    noise_generator,
    padding_as_authentic,
)
from dptrain.model import DiffusionPrint

from .conftest import TINY_SEGFORMER
from .test_lite_baseline import SMALL_DIFFIML


def _parts():
    torch.manual_seed(0)
    rgb = SegformerModel(SegformerConfig(**TINY_SEGFORMER))
    return rgb, DiffusionPrint(out_channels=4, width=8, depth=3)


def _batch():
    image = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    mask = torch.zeros(2, 32, 32, dtype=torch.int64)
    mask[:, 8:20, 4:24] = 1
    mask[:, 24:] = IGNORE  # padding, as augment() writes it
    return image, mask


def test_mlp_objective_is_the_masked_bce_of_the_logits():
    model = LiteBaseline.from_parts(*_parts()).train()
    image, mask = _batch()
    torch.manual_seed(1)  # SegFormer's drop-path draws from the global generator
    got = LocalizerLoss(model)(image, mask, noise_generator(0, 0, 0))
    torch.manual_seed(1)
    torch.testing.assert_close(got, masked_bce(model(image), mask), rtol=0, atol=0)


def test_diffiml_objective_maps_padding_to_authentic_and_trains_the_right_parts():
    model = LiteBaseline.from_parts(*_parts(), "diffiml", SMALL_DIFFIML, LightVAE(base_channels=8))
    model.train()
    image, mask = _batch()
    torch.manual_seed(1)
    loss = LocalizerLoss(model)(image, mask, noise_generator(0, 5, 0))
    torch.manual_seed(1)
    clean = torch.where(mask == IGNORE, 0, mask)  # padding written as authentic by hand
    want = model.decoder(model.encode(image), clean, noise_generator(0, 5, 0)).loss
    torch.testing.assert_close(loss, want, rtol=0, atol=0)
    loss.backward()
    for part in (model.rgb_encoder, model.modality, model.fuse, model.decoder.unet):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    assert model.decoder.condition.project[0].weight.grad is not None
    frozen = [*model.extractor.parameters(), *model.decoder.vae.parameters()]
    assert all(p.grad is None for p in frozen)
    assert padding_as_authentic(torch.tensor([IGNORE, 0, 1])).tolist() == [0.0, 0.0, 1.0]


def test_noise_generators_are_a_function_of_seed_micro_batch_and_rank():
    def draw(*key):
        return torch.randn(4, generator=noise_generator(*key))

    assert torch.equal(draw(0, 3, 0), draw(0, 3, 0))
    others = [draw(1, 3, 0), draw(0, 4, 0), draw(0, 3, 1)]
    assert all(not torch.equal(draw(0, 3, 0), o) for o in others)


@pytest.mark.parametrize("bad", [0.5, 2])
def test_diffiml_objective_refuses_mask_values_other_than_tgifs(bad):
    model = LiteBaseline.from_parts(*_parts(), "diffiml", SMALL_DIFFIML, LightVAE(base_channels=8))
    image, _ = _batch()
    with pytest.raises(ValueError, match="-1 \\(padding\\), 0 or 1"):
        LocalizerLoss(model)(image, torch.full((2, 32, 32), bad))
