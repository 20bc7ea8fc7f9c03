"""Lite Baseline: a SegFormer RGB stream fused with a frozen forensic extractor (paper Sec. 4.3).

The RGB image goes through a SegFormer MiT encoder (MiT-B2, ImageNet-pretrained ``nvidia/mit-b2``
in the paper). The frozen extractor (DiffusionPrint or Noiseprint++) turns the same image into a
full-resolution (C, H, W) map, which a light residual CNN brings to the encoder's four scales
(64/128/320/512 channels at strides 4/8/16/32 for MiT-B2). At each scale the two features are
concatenated and fused by 1x1 conv -> BN -> ReLU; SegFormer's All-MLP decoder turns the four
fused maps into one logit map at stride 4, upsampled to the input size. About 36M parameters with
MiT-B2 and C = 64, of which the extractor's 0.6M are frozen.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn
from transformers import SegformerConfig, SegformerModel
from transformers.models.segformer.modeling_segformer import SegformerDecodeHead

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
#: ImageNet statistics of the RGB stream's input (the extractor sees raw pixels).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_rgb_encoder(spec: str, init: str) -> SegformerModel:
    """The SegFormer MiT encoder of the RGB stream.

    Args:
        spec: a Hub id or local folder with a Segformer ``config.json`` (and, for
            ``init="imagenet"``, its weights), e.g. ``nvidia/mit-b2``.
        init: ``"imagenet"`` loads the pretrained weights with ``from_pretrained``;
            ``"random"`` builds the same architecture with random weights. There is no silent
            fallback from one to the other.

    Raises:
        OSError: for ``init="imagenet"`` when the weights cannot be loaded (offline, say),
            with a hint to pass ``--rgb-encoder-init random`` explicitly.
    """
    if init == "imagenet":
        try:
            return SegformerModel.from_pretrained(spec)
        except OSError as err:
            raise OSError(
                f"cannot load the ImageNet-pretrained RGB encoder {spec!r}: {err}\n"
                "Download it (or give a local folder), or pass --rgb-encoder-init random to "
                "train the RGB stream from scratch."
            ) from None
    if init != "random":
        raise ValueError(f"rgb encoder init must be 'imagenet' or 'random', got {init!r}")
    config = (
        SegformerConfig(**MIT_B2_CONFIG)
        if spec == MIT_B2
        else SegformerConfig.from_pretrained(spec)
    )
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


class LiteBaseline(nn.Module):
    """The fusion localizer. ``forward``: (B, 3, H, W) pixels 0..255 -> (B, 1, H, W) logits.

    Args:
        rgb_encoder: a `SegformerModel` (MiT); its config sets the scales' channels and the
            decoder's width.
        extractor: the frozen forensic extractor: an ``nn.Module`` with ``extract(x)`` taking
            (B, 3, H, W) pixels and returning (B, C, H, W), and ``out_channels`` = C. Its
            parameters get ``requires_grad=False`` and it stays in eval mode (BN statistics frozen).
    """

    def __init__(self, rgb_encoder: SegformerModel, extractor: nn.Module) -> None:
        super().__init__()
        config = rgb_encoder.config
        channels = list(config.hidden_sizes)
        self.rgb_encoder = rgb_encoder
        self.extractor = extractor.eval().requires_grad_(False)
        self.modality = ModalityStream(extractor.out_channels, channels)
        self.fuse = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(2 * ch, ch, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(inplace=True)
            )
            for ch in channels
        )
        head = {k: v for k, v in config.to_dict().items() if k not in ("id2label", "label2id")}
        head_config = SegformerConfig.from_dict({**head, "num_labels": 1})
        self.decoder = SegformerDecodeHead(head_config)
        self.register_buffer(
            "mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255, persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255, persistent=False
        )

    def train(self, mode: bool = True) -> LiteBaseline:
        super().train(mode)
        self.extractor.eval()  # frozen: BN keeps its pretraining statistics
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of "inpainted" per pixel. ``x``: (B, 3, H, W) RGB pixels 0..255 (uint8 or float)."""
        x = x.float()
        with torch.no_grad():
            modal = self.extractor.extract(x)  # (B, C, H, W), full resolution
        rgb = (x - self.mean) / self.std
        rgb_feats = self.rgb_encoder(
            rgb, output_hidden_states=True
        ).hidden_states  # 4 x (B, Ci, H/s, W/s)
        modal_feats = self.modality(modal)
        fused = [
            f(torch.cat([r, m], dim=1))
            for f, r, m in zip(self.fuse, rgb_feats, modal_feats, strict=True)
        ]
        logits = self.decoder(fused)  # (B, 1, H/4, W/4)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
