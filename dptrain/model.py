"""DiffusionPrint: the DnCNN backbone and its pretraining projector (architecture only).

The backbone is Noiseprint++'s DnCNN (17 layers of 3x3 conv, 64 channels, BN on layers 2-16,
ReLU everywhere but the last) with C output channels (paper Sec. 3.2; C = 64 is the paper's best).
Its modules are numbered exactly like Noiseprint++'s ``nn.Sequential`` (``0.weight`` ...
``47.bias``), so Noiseprint++ weights load with `DiffusionPrint.from_noiseprint`.

Pretraining adds global average pooling and a 2-layer MLP projector to a 128-d L2-normalised
embedding. The queue, temperature, mining and the generator head live in `dptrain.loss`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dpgen.errors import InputError

from .hub import HubMixin

logger = logging.getLogger(__name__)

#: Prefixes stripped from Noiseprint++ state-dict keys (DataParallel, MMFusion's checkpoints).
_NOISEPRINT_PREFIXES = ("module.", "noiseprint.")


def dncnn(
    in_channels: int = 3, out_channels: int = 64, width: int = 64, depth: int = 17
) -> nn.Sequential:
    """DnCNN in Noiseprint++'s ``nn.Sequential`` numbering.

    Layer 1: conv (bias) + ReLU; layers 2..depth-1: conv (no bias) + BN + ReLU; layer depth:
    conv (bias), linear. At the defaults with C = 64 it has 593,600 parameters; with C = 1
    (Noiseprint++) 557,249.
    """
    layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True)]
    for _ in range(depth - 2):
        layers += [
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
    layers.append(nn.Conv2d(width, out_channels, 3, padding=1))
    return nn.Sequential(*layers)


class DiffusionPrint(
    nn.Module,
    HubMixin,
    tags=["image-forensics", "inpainting-localization", "diffusionprint"],
):
    """DnCNN backbone + GAP + projector, loadable with ``DiffusionPrint.from_pretrained``.

    Every method takes images in pixel units: ``(B, 3, H, W)`` RGB, uint8 or float in 0..255;
    they are divided by ``input_divisor`` inside (255 for DiffusionPrint, 256 for Noiseprint++).

    Args:
        out_channels: C, channels of the forensic map (paper: 64; ablations 1 and 256).
        width: hidden channels of the DnCNN.
        depth: number of conv layers of the DnCNN.
        embed_dim: size of the L2-normalised projection.
        proj_hidden: hidden size of the MLP projector (paper text: 128; authors' code: 512).
        patch_size: training patch side; only used when C = 1, where GAP of a single channel
            carries no information and the map is flattened into a linear projector instead.
        input_divisor: pixel values are divided by it before the backbone.
    """

    def __init__(
        self,
        out_channels: int = 64,
        width: int = 64,
        depth: int = 17,
        embed_dim: int = 128,
        proj_hidden: int = 128,
        patch_size: int = 64,
        input_divisor: float = 255.0,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.input_divisor = input_divisor
        self.backbone = dncnn(3, out_channels, width, depth)
        if out_channels == 1:
            self.projector = nn.Sequential(
                nn.Flatten(),
                nn.Linear(patch_size * patch_size, embed_dim),
                nn.BatchNorm1d(embed_dim),
            )
        else:
            self.projector = nn.Sequential(
                nn.Linear(out_channels, proj_hidden),
                nn.BatchNorm1d(proj_hidden),
                nn.ReLU(inplace=True),
                nn.Linear(proj_hidden, embed_dim),
                nn.BatchNorm1d(embed_dim),
            )

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        """The forensic map. ``x``: (B, 3, H, W) pixels -> (B, C, H, W)."""
        return self.backbone(x.float() / self.input_divisor)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled features, the linear probe's input. (B, 3, H, W) -> (B, C)."""
        return self.extract(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The pretraining embedding. (B, 3, P, P) pixels -> (B, embed_dim), unit L2 norm."""
        feats = self.extract(x)  # (B, C, P, P)
        if self.out_channels != 1:
            feats = feats.mean(dim=(2, 3))  # (B, C)
        return F.normalize(self.projector(feats), dim=1)

    @classmethod
    def from_noiseprint(cls, path: str | Path) -> DiffusionPrint:
        """Load Noiseprint++ weights (C = 1, input / 256) into this architecture.

        Reads both published formats: TruFor's ``noiseprint++.th`` (``{'network': state_dict,
        ...}``, tensors saved on ``cuda:0``) and MMFusion's ``np++.pth`` (a plain state dict);
        ``module.`` / ``noiseprint.`` key prefixes are stripped. Only the backbone is loaded;
        the projector keeps its initialisation (Noiseprint++ has none).

        Raises:
            ValueError: naming the file, when it holds no DnCNN state dict of the expected shape.
        """
        path = Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # unreadable, not a torch file, or disallowed pickle types
            raise InputError(f"{path}: not a readable Noiseprint++ checkpoint: {err}") from None
        if isinstance(state, dict) and isinstance(state.get("network"), dict):
            state = state["network"]
        if not isinstance(state, dict):
            raise InputError(f"{path}: expected a state dict, got {type(state).__name__}")
        cleaned = {}
        for key, value in state.items():
            for prefix in _NOISEPRINT_PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix) :]
            cleaned[key] = value
        if "47.weight" not in cleaned:
            raise InputError(f"{path}: no key '47.weight': not a 17-layer DnCNN state dict")
        model = cls(out_channels=cleaned["47.weight"].shape[0], input_divisor=256.0)
        missing, unexpected = model.backbone.load_state_dict(cleaned, strict=False)
        if missing or unexpected:
            raise InputError(
                f"{path}: key mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}"
            )
        return model
