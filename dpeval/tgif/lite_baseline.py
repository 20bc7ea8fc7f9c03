"""Lite Baseline: a SegFormer RGB stream fused with a frozen forensic extractor (paper Sec. 4.3).

The RGB image goes through a SegFormer MiT encoder (MiT-B2, ImageNet-pretrained ``nvidia/mit-b2``
in the paper). The frozen extractor (DiffusionPrint or Noiseprint++) turns the same image into a
full-resolution (C, H, W) map, which a light residual CNN brings to the encoder's four scales
(64/128/320/512 channels at strides 4/8/16/32 for MiT-B2). At each scale the two features are
concatenated and fused by 1x1 conv -> BN -> ReLU (`LiteBaseline.encode`); a decoder turns the
four fused maps into the map of "inpainted": SegFormer's All-MLP decoder (``"mlp"``, the paper's:
logits, upsampled to the input size) or DiffIML's conditional diffusion decoder (``"diffiml"``,
`dpeval.tgif.decoders.diffiml.DiffIMLDecoder`: probabilities sampled from mask latents).
`LiteBaseline.probabilities` is the map of either. About 36M parameters with MiT-B2, C = 64 and
the MLP decoder, of which the extractor's 0.6M are frozen.

`LiteBaseline` is a `huggingface_hub.PyTorchModelHubMixin` model: ``save_pretrained`` writes a
``config.json`` that rebuilds it (the SegFormer and DiffusionPrint settings, the decoder's name)
and one ``model.safetensors`` with every weight, the frozen extractor's included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import SegformerConfig, SegformerModel
from transformers.models.segformer.modeling_segformer import SegformerDecodeHead

from dpeval.tgif.decoders.diffiml import DiffIMLDecoder
from dpeval.tgif.decoders.lightvae import DOWNSAMPLE, LightVAE
from dpgen.errors import InputError
from dptrain.hub import HubMixin
from dptrain.model import DiffusionPrint

logger = logging.getLogger(__name__)

#: The paper's RGB encoder and the config of MiT-B2 (so a random-init B2 needs no download).
MIT_B2 = "nvidia/mit-b2"
MIT_B2_CONFIG = {
    "hidden_sizes": [64, 128, 320, 512],
    "depths": [3, 4, 6, 3],
    "num_attention_heads": [1, 2, 5, 8],
    "sr_ratios": [8, 4, 2, 1],
    "decoder_hidden_size": 768,
}
#: SegFormer settings that define the architecture (what `segformer_config_dict` keeps).
SEGFORMER_KEYS = (
    "num_channels", "num_encoder_blocks", "depths", "sr_ratios", "hidden_sizes", "patch_sizes",
    "strides", "num_attention_heads", "mlp_ratios", "hidden_act", "hidden_dropout_prob",
    "attention_probs_dropout_prob", "classifier_dropout_prob", "initializer_range",
    "drop_path_rate", "layer_norm_eps", "decoder_hidden_size", "semantic_loss_ignore_index",
    "reshape_last_stage",
)  # fmt: skip
#: ImageNet statistics of the RGB stream's input (the extractor sees raw pixels).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ``forward`` of a sampling decoder returns ``logit(probabilities)``, clamped to [eps, 1 - eps].
LOGIT_EPS = 1e-6


class RGBEncoderError(InputError, OSError):
    """The RGB encoder named by ``--rgb-encoder`` cannot be loaded (one line, naming it)."""


def load_rgb_encoder(spec: str, init: str) -> SegformerModel:
    """The SegFormer MiT encoder of the RGB stream.

    Args:
        spec: a Hub id or local folder with a Segformer ``config.json`` (and, for
            ``init="imagenet"``, its weights), e.g. ``nvidia/mit-b2``.
        init: ``"imagenet"`` loads the pretrained weights with ``from_pretrained``;
            ``"random"`` builds the same architecture with random weights. There is no silent
            fallback from one to the other.

    Raises:
        RGBEncoderError: (an `InputError` and an ``OSError``) when the weights (``imagenet``)
            or the config (``random``, other than MiT-B2) cannot be loaded, offline say; for
            ``imagenet`` with a hint to pass ``--rgb-encoder-init random`` explicitly.
    """
    if init not in ("imagenet", "random"):
        raise ValueError(f"rgb encoder init must be 'imagenet' or 'random', got {init!r}")
    try:
        if init == "imagenet":
            return SegformerModel.from_pretrained(spec)
        config = (
            SegformerConfig(**MIT_B2_CONFIG)
            if spec == MIT_B2
            else SegformerConfig.from_pretrained(spec)
        )
    except OSError as err:
        what = "ImageNet-pretrained RGB encoder" if init == "imagenet" else "SegFormer config"
        hint = (
            "; download it, give a local folder, or pass --rgb-encoder-init random to train "
            "the RGB stream from scratch"
            if init == "imagenet"
            else ""
        )
        reason = " ".join(str(err).split())
        raise RGBEncoderError(f"{spec}: cannot load the {what} ({reason}){hint}") from None
    logger.warning("RGB encoder %s built with RANDOM weights (--rgb-encoder-init random)", spec)
    return SegformerModel(config)


class ResidualBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the input, then ReLU (ResNet's basic block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


def _down(cin: int, cout: int) -> nn.Sequential:
    """Stride-2 conv3x3 -> BN -> ReLU; output side ceil(H/2), like SegFormer's patch embeddings."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ModalityStream(nn.Module):
    """Light residual CNN: (B, C, H, W) forensic map -> four maps at strides 4, 8, 16, 32.

    Args:
        in_channels: C, channels of the extractor's map.
        channels: output channels per scale (64/128/320/512 for MiT-B2).
    """

    def __init__(self, in_channels: int, channels: list[int]) -> None:
        super().__init__()
        self.stages = nn.ModuleList()
        prev = in_channels
        for i, ch in enumerate(channels):
            # stride 4 in the first stage (two halvings, as SegFormer's 7x7/4 patch embedding)
            downs = [_down(prev, ch // 2), _down(ch // 2, ch)] if i == 0 else [_down(prev, ch)]
            self.stages.append(nn.Sequential(*downs, ResidualBlock(ch)))
            prev = ch

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


def mlp_decoder(channels: list[int], rgb_config: SegformerConfig) -> nn.Module:
    """SegFormer's All-MLP decoder over the four fused maps, one output channel.

    ``forward(fused)``: 4 x (B, C_i, H/s_i, W/s_i) -> (B, 1, H/4, W/4) logits.
    """
    head = {k: v for k, v in rgb_config.to_dict().items() if k not in ("id2label", "label2id")}
    return SegformerDecodeHead(SegformerConfig.from_dict({**head, "num_labels": 1}))


def diffiml_decoder(channels: list[int], rgb_config: SegformerConfig, **config) -> DiffIMLDecoder:
    """DiffIML's diffusion decoder conditioned on the four fused maps (``config``: its init
    arguments other than ``feature_channels``; see `DiffIMLDecoder`). ``rgb_config`` is unused."""
    return DiffIMLDecoder(feature_channels=tuple(channels), **config)


#: Decoders by name: ``factory(channels, rgb_config, **decoder_config) -> nn.Module`` over the
#: four fused maps (list of (B, C_i, H/s_i, W/s_i), strides 4/8/16/32, C_i = ``channels[i]``).
#: Two kinds: a *discriminative* decoder's ``forward(fused)`` returns (B, 1, h, w) logits at any
#: resolution (the localizer upsamples them to (H, W)); a *sampling* decoder (one with a
#: ``predict`` method, as `DiffIMLDecoder`) has ``forward(fused, mask01, generator)`` returning
#: its training loss (``.loss``) and ``predict(encode, images, generator)`` returning (B, 1, H, W)
#: probabilities for H, W multiples of 8. Another decoder plugs in by adding an entry here.
DECODERS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp_decoder, "diffiml": diffiml_decoder}


def segformer_config_dict(config: SegformerConfig) -> dict:
    """The architecture settings of a SegFormer config (what rebuilds it without a download)."""
    values = config.to_dict()
    return {k: values[k] for k in SEGFORMER_KEYS if k in values}


def extractor_config_dict(extractor: DiffusionPrint) -> dict:
    """The init arguments of a DiffusionPrint (as its own ``config.json`` records them).

    Read from the attribute where `huggingface_hub.PyTorchModelHubMixin` keeps them.
    """
    config = getattr(extractor, "_hub_mixin_config", None)
    if not isinstance(config, dict):
        raise ValueError(f"{type(extractor).__name__} does not record its init arguments")
    return dict(config)


class LiteBaseline(
    nn.Module,
    HubMixin,
    tags=["image-forensics", "inpainting-localization", "diffusionprint", "lite-baseline"],
):
    """The fusion localizer. ``forward``: (B, 3, H, W) pixels 0..255 -> (B, 1, H, W) logits;
    `probabilities`: the map in [0, 1] (either decoder); `encode`: the four fused maps.

    Architecture only, rebuilt from primitive arguments (what ``config.json`` holds), so
    ``LiteBaseline.from_pretrained(folder or Hub id)`` needs no other download: the frozen
    extractor's weights are inside ``model.safetensors`` with the rest. Build one around a
    pretrained RGB encoder and a trained extractor with `from_parts`.

    Args:
        rgb_encoder_config: SegFormer (MiT) settings (`segformer_config_dict`); its
            ``hidden_sizes`` set the channels of the four scales.
        extractor_config: DiffusionPrint init arguments (`extractor_config_dict`); C =
            ``out_channels``. The extractor is frozen: ``requires_grad=False``, always in eval
            mode (BN keeps its pretraining statistics).
        decoder: name in `DECODERS` of the head over the fused maps (``"mlp"``: SegFormer's
            All-MLP decoder, the paper's; ``"diffiml"``: DiffIML's diffusion decoder).
        decoder_config: keyword arguments of that decoder's factory (for ``"diffiml"`` the
            sampling settings and the LightVAE's shape; the LightVAE's weights are in the
            model's state dict with the rest).

    Raises:
        ValueError: an unknown decoder name.
    """

    def __init__(
        self,
        rgb_encoder_config: dict,
        extractor_config: dict,
        decoder: str = "mlp",
        decoder_config: dict | None = None,
    ) -> None:
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"decoder {decoder!r} is not one of {sorted(DECODERS)}")
        rgb_config = SegformerConfig(**rgb_encoder_config)
        channels = list(rgb_config.hidden_sizes)
        self.rgb_encoder = SegformerModel(rgb_config)
        self.extractor = DiffusionPrint(**extractor_config).eval().requires_grad_(False)
        self.modality = ModalityStream(self.extractor.out_channels, channels)
        self.fuse = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(2 * ch, ch, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True)
            )
            for ch in channels
        )
        self.decoder = DECODERS[decoder](channels, rgb_config, **(decoder_config or {}))
        self.register_buffer(
            "mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255, persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255, persistent=False
        )

    @classmethod
    def from_parts(
        cls,
        rgb_encoder: SegformerModel,
        extractor: DiffusionPrint,
        decoder: str = "mlp",
        decoder_config: dict | None = None,
        vae: LightVAE | None = None,
    ) -> LiteBaseline:
        """A new localizer holding copies of ``rgb_encoder``'s and ``extractor``'s weights.

        Args:
            vae: for ``decoder="diffiml"``, the trained LightVAE whose weights (and shape:
                latent channels, width, scale, which override ``decoder_config``'s) the
                decoder takes; required there, refused otherwise.

        Raises:
            ValueError: a ``vae`` missing for a sampling decoder or given for another one.
        """
        config = dict(decoder_config or {})
        if (decoder == "diffiml") != (vae is not None):
            raise ValueError(f"decoder {decoder!r}: a LightVAE is needed for 'diffiml' only")
        if vae is not None:
            config.update(
                latent_channels=vae.latent_channels,
                vae_base_channels=vae.base_channels,
                latent_scale=vae.scaling_factor,
            )
        model = cls(
            rgb_encoder_config=segformer_config_dict(rgb_encoder.config),
            extractor_config=extractor_config_dict(extractor),
            decoder=decoder,
            decoder_config=config,
        )
        model.rgb_encoder.load_state_dict(rgb_encoder.state_dict())
        model.extractor.load_state_dict(extractor.state_dict())
        if vae is not None:
            model.decoder.set_vae(vae)
        return model

    @property
    def sampling(self) -> bool:
        """True when the decoder samples its map (DiffIML) rather than predicting logits."""
        return callable(getattr(self.decoder, "predict", None))

    @property
    def min_side(self) -> int:
        """The smallest input side (pixels) the RGB encoder accepts: at each stage its
        spatial-reduction conv (kernel = stride = sr_ratio) needs sr_ratio cells. 32 for MiT."""
        config, stride, need = self.rgb_encoder.config, 1, 1
        for step, ratio in zip(config.strides, config.sr_ratios, strict=True):
            stride *= step
            need = max(need, stride * ratio)
        return need

    def train(self, mode: bool = True) -> LiteBaseline:
        super().train(mode)
        self.extractor.eval()  # frozen: BN keeps its pretraining statistics
        return self

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four fused maps: (B, 3, H, W) RGB pixels 0..255 (uint8 or float) -> 4 x
        (B, C_i, H/s, W/s), s = 4, 8, 16, 32 (sides rounded up), C_i = the encoder's
        ``hidden_sizes``. What every decoder reads."""
        x = x.float()
        with torch.no_grad():
            modal = self.extractor.extract(x)  # (B, C, H, W), full resolution
        rgb = (x - self.mean) / self.std
        rgb_feats = self.rgb_encoder(
            rgb, output_hidden_states=True
        ).hidden_states  # 4 x (B, Ci, H/s, W/s)
        modal_feats = self.modality(modal)
        return [
            f(torch.cat([r, m], dim=1))
            for f, r, m in zip(self.fuse, rgb_feats, modal_feats, strict=True)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of "inpainted" per pixel. ``x``: (B, 3, H, W) RGB pixels 0..255 (uint8 or float).

        For a sampling decoder (DiffIML) the logits are ``logit(probabilities(x))`` (clamped to
        `LOGIT_EPS`), sampled with torch's global generator; use `probabilities` to seed it.
        """
        if self.sampling:
            return torch.logit(self.probabilities(x), eps=LOGIT_EPS)
        logits = self.decoder(self.encode(x))  # (B, 1, h, w), h = H/4 for the MLP decoder
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def probabilities(
        self,
        x: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
    ) -> torch.Tensor:
        """The map: (B, 3, H, W) RGB pixels 0..255 -> (B, 1, H, W) probabilities of "inpainted".

        MLP decoder: ``sigmoid(forward(x))``; ``generator`` is unused. DiffIML: the decoder's
        `DiffIMLDecoder.predict` (DDIM steps x ensemble, flip TTA as configured) on the image
        padded by edge replication to multiples of 8 (the LightVAE's grid), cropped back.

        Args:
            generator: seeds DiffIML's noise; a list gives one generator per image, so an
                image's map does not depend on the images batched with it.
        """
        if not self.sampling:
            return torch.sigmoid(self(x))
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % DOWNSAMPLE, -w % DOWNSAMPLE
        if pad_h or pad_w:
            x = F.pad(x.float(), (0, pad_w, 0, pad_h), mode="replicate")
        return self.decoder.predict(self.encode, x, generator)[..., :h, :w]
