import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import SegformerConfig, SegformerModel

from dpeval.tgif.augment import IGNORE, augment
from dpeval.tgif.decoders.lightvae import LightVAE
from dpeval.tgif.lite_baseline import DECODERS, LiteBaseline, load_rgb_encoder
from dpeval.tgif.objective import masked_bce
from dptrain.model import DiffusionPrint

from .conftest import TINY_SEGFORMER


def _tiny_model(c: int = 4) -> LiteBaseline:
    torch.manual_seed(0)
    rgb = SegformerModel(SegformerConfig(**TINY_SEGFORMER))
    return LiteBaseline.from_parts(rgb, DiffusionPrint(out_channels=c, width=8, depth=3))


def test_output_has_input_size_and_only_the_extractor_is_frozen():
    model = _tiny_model().train()
    x = torch.randint(0, 256, (2, 3, 45, 70), dtype=torch.uint8)  # odd sizes, not multiples of 32
    logits = model(x)
    assert logits.shape == (2, 1, 45, 70)
    assert not model.extractor.training  # frozen BN even in train mode
    before = {k: v.clone() for k, v in model.extractor.state_dict().items()}
    masked_bce(logits, torch.randint(0, 2, (2, 45, 70))).backward()
    assert all(p.grad is None for p in model.extractor.parameters())
    assert all(not p.requires_grad for p in model.extractor.parameters())
    for part in (model.rgb_encoder, model.modality, model.fuse, model.decoder):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.extractor.state_dict().items())


def test_modality_stream_matches_segformer_scales():
    model = _tiny_model()
    modal = model.modality(torch.zeros(1, 4, 50, 37))
    rgb = model.rgb_encoder(torch.zeros(1, 3, 50, 37), output_hidden_states=True).hidden_states
    assert [m.shape for m in modal] == [r.shape for r in rgb]


def test_mit_b2_paper_size():
    """MiT-B2 + C = 64: the paper says ~36M parameters; this design has 37.6M."""
    model = LiteBaseline.from_parts(load_rgb_encoder("nvidia/mit-b2", "random"), DiffusionPrint())
    assert model.modality.stages[-1][-1].body[0].in_channels == 512
    n = sum(p.numel() for p in model.parameters())
    assert 35e6 < n < 39e6


def test_imagenet_init_fails_loudly_when_unreachable(tmp_path):
    SegformerConfig(**TINY_SEGFORMER).save_pretrained(tmp_path)  # config but no weights
    with pytest.raises(OSError, match="--rgb-encoder-init random"):
        load_rgb_encoder(str(tmp_path), "imagenet")
    assert load_rgb_encoder(str(tmp_path), "random").config.hidden_sizes == [16, 32, 40, 64]


def test_augment_pads_with_ignore_and_keeps_size():
    rng = np.random.default_rng(0)
    image = np.full((20, 30, 3), 200, np.uint8)
    mask = np.zeros((20, 30), np.uint8)
    mask[5:10, 5:10] = 1
    seen_pad = False
    for _ in range(20):
        img, m = augment(image, mask, 48, rng)
        assert img.shape == (48, 48, 3) and img.dtype == np.uint8 and m.shape == (48, 48)
        assert set(np.unique(m)) <= {IGNORE, 0, 1}
        seen_pad |= bool((m == IGNORE).any())
    assert seen_pad
    # the loss ignores padded pixels
    logits = torch.zeros(1, 1, 2, 2)
    assert masked_bce(logits, torch.tensor([[[1, IGNORE], [IGNORE, IGNORE]]])) == pytest.approx(
        np.log(2)
    )


def test_save_pretrained_rebuilds_the_same_localizer_offline(tmp_path):
    model = _tiny_model().eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    # complete: the SegFormer and DiffusionPrint settings and the decoder's name, nothing else
    assert set(config) == {"rgb_encoder_config", "extractor_config", "decoder", "decoder_config"}
    assert config["rgb_encoder_config"]["hidden_sizes"] == [16, 32, 40, 64]
    assert config["extractor_config"]["out_channels"] == 4 and config["decoder"] == "mlp"
    weights = load_file(tmp_path / "model.safetensors")
    assert "extractor.backbone.0.weight" in weights  # the frozen extractor travels with it
    loaded = LiteBaseline.from_pretrained(tmp_path, strict=True).eval()
    x = torch.randint(0, 256, (1, 3, 33, 47), dtype=torch.uint8)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert not any(p.requires_grad for p in loaded.extractor.parameters())


def test_decoder_is_a_swappable_component(monkeypatch):
    class StrideFour(torch.nn.Module):
        """A 1x1 conv on the stride-4 fused map: the smallest decoder the contract allows."""

        def __init__(self, channels, rgb_config, width=1):
            super().__init__()
            self.conv = torch.nn.Conv2d(channels[0], width, 1)

        def forward(self, fused):
            assert len(fused) == 4
            return self.conv(fused[0])

    monkeypatch.setitem(DECODERS, "stride4", StrideFour)
    torch.manual_seed(0)
    config = {**TINY_SEGFORMER}
    model = LiteBaseline(
        rgb_encoder_config=config,
        extractor_config={"out_channels": 4, "width": 8, "depth": 3},
        decoder="stride4",
        decoder_config={"width": 1},
    )
    assert isinstance(model.decoder, StrideFour)
    assert model(torch.zeros(2, 3, 40, 52, dtype=torch.uint8)).shape == (2, 1, 40, 52)
    with pytest.raises(ValueError, match="'nope' is not one of"):
        LiteBaseline(rgb_encoder_config=config, extractor_config={}, decoder="nope")


#: DiffIML at test size (the paper's is 128 / 128 / 32 wide, 8 steps x 5 samples).
SMALL_DIFFIML = {
    "condition_channels": 16, "unet_channels": 32, "num_inference_steps": 2, "ensemble": 2,
}  # fmt: skip


def _tiny_diffiml(**decoder_config) -> LiteBaseline:
    torch.manual_seed(0)
    rgb = SegformerModel(SegformerConfig(**TINY_SEGFORMER))
    extractor = DiffusionPrint(out_channels=4, width=8, depth=3)
    config = {**SMALL_DIFFIML, **decoder_config}
    return LiteBaseline.from_parts(rgb, extractor, "diffiml", config, LightVAE(base_channels=8))


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_mlp_probabilities_are_the_sigmoid_of_the_logits():
    model = _tiny_model().eval()
    x = torch.randint(0, 256, (2, 3, 45, 70), dtype=torch.uint8)
    assert not model.sampling
    probs = model.probabilities(x, _seeded(0))  # the generator is unused
    torch.testing.assert_close(probs, torch.sigmoid(model(x)), rtol=0, atol=0)
    fused = model.encode(x)
    assert [f.shape[1] for f in fused] == [16, 32, 40, 64]


def test_diffiml_localizer_is_deterministic_given_a_seed_at_any_size():
    model = _tiny_diffiml().eval()
    assert model.sampling and model.decoder.vae.base_channels == 8
    x = torch.randint(0, 256, (2, 3, 45, 70), dtype=torch.uint8)  # padded to 48 x 72 inside
    with torch.no_grad():
        a = model.probabilities(x, _seeded(3))
        b = model.probabilities(x, _seeded(3))
        c = model.probabilities(x, _seeded(4))
    assert a.shape == (2, 1, 45, 70) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    # forward: the logits of the same sampled map (drawn from torch's global generator)
    torch.manual_seed(3)
    with torch.no_grad():
        logits = model(x)
    torch.manual_seed(3)
    with torch.no_grad():
        want = model.probabilities(x)
    torch.testing.assert_close(torch.sigmoid(logits), want, atol=1e-6, rtol=0)


def test_diffiml_localizer_samples_with_1_and_8_steps():
    x = torch.randint(0, 256, (1, 3, 32, 40), dtype=torch.uint8)
    maps = []
    for steps in (1, 8):
        model = _tiny_diffiml(num_inference_steps=steps, ensemble=5).eval()
        with torch.no_grad():
            maps.append(model.probabilities(x, _seeded(0)))
        assert maps[-1].shape == (1, 1, 32, 40) and torch.isfinite(maps[-1]).all()
    assert not torch.equal(*maps)


def test_per_image_generators_make_a_map_independent_of_its_batch():
    model = _tiny_diffiml().eval()
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        pair = model.probabilities(x, [_seeded(1), _seeded(2)])
        alone = model.probabilities(x[1:], [_seeded(2)])
    torch.testing.assert_close(pair[1:], alone, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="1 generators for a batch of 2"):
        model.decoder.sample(model.encode(x), [_seeded(1)])


def test_diffiml_localizer_round_trips_through_save_pretrained(tmp_path):
    model = _tiny_diffiml(flip_tta=False).eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["decoder"] == "diffiml"
    assert config["decoder_config"]["vae_base_channels"] == 8  # the LightVAE's shape
    assert "decoder.vae.encoder.0.weight" in load_file(tmp_path / "model.safetensors")
    loaded = LiteBaseline.from_pretrained(tmp_path, strict=True).eval()
    assert not loaded.decoder.flip_tta and not loaded.decoder.vae.training
    x = torch.randint(0, 256, (1, 3, 40, 40), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.probabilities(x, _seeded(0)), model.probabilities(x, _seeded(0))
        )


def test_from_parts_needs_a_lightvae_for_diffiml_only():
    rgb = SegformerModel(SegformerConfig(**TINY_SEGFORMER))
    extractor = DiffusionPrint(out_channels=4, width=8, depth=3)
    with pytest.raises(ValueError, match="LightVAE"):
        LiteBaseline.from_parts(rgb, extractor, "diffiml", SMALL_DIFFIML)
    with pytest.raises(ValueError, match="LightVAE"):
        LiteBaseline.from_parts(rgb, extractor, "mlp", vae=LightVAE(base_channels=8))
