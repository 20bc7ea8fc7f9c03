"""Residuals r(x) = x - D(x): what the fingerprint is correlated with (paper Sec. 3).

The authors' D is a DnCNN trained to predict the noise (residual learning), so r(x) is the
network's output. The toolkit offers four residuals, chosen by a spec string and recorded in
the fingerprint's config.json:

- ``highpass`` (the default): a fixed linear high-pass, r = x - box3(x), each channel minus the
  mean of its 3x3 neighbourhood (reflect padding at the border). No weights, no training; it
  keeps the near-Nyquist band where upsampling decoders leave their traces.
- ``train:DIR``: a DnCNN (17 layers, 64 channels, BN) trained by the toolkit as a blind
  Gaussian denoiser on the real images of DIR (`dpeval.fingerprint.train_denoiser`), saved with
  ``save_pretrained`` in the fingerprint's ``denoiser/`` folder, and recorded as
  ``dncnn:denoiser``.
- ``dncnn:PATH``: such a trained denoiser folder (e.g. another fingerprint's ``denoiser/``);
  a relative PATH recorded in a fingerprint is read relative to the fingerprint's folder.
- ``diffusionprint:SPEC`` / ``noiseprint++:FILE``: the frozen forensic map of a DiffusionPrint
  (a folder, Hub id or ``random[:SEED]``) or of Noiseprint++ (`dpeval.extractors`), C channels.

Every residual maps (B, 3, H, W) float images in [0, 1] to (B, C, H, W) float32 and is frozen.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dpeval import extractors
from dpgen.errors import InputError
from dptrain.hub import HubMixin
from dptrain.model import dncnn

HIGHPASS = "highpass"
TRAIN, DNCNN, DIFFUSIONPRINT, NOISEPRINT = "train", "dncnn", "diffusionprint", "noiseprint++"
#: Folder of a trained denoiser inside a fingerprint folder.
DENOISER_FOLDER = "denoiser"
SPEC_HELP = (
    "highpass (fixed 3x3 high-pass), train:DIR (train a DnCNN denoiser on the real images of "
    "DIR), dncnn:PATH (a trained denoiser folder), diffusionprint:SPEC (a DiffusionPrint folder, "
    "Hub id or random[:SEED]) or noiseprint++:FILE"
)


def parse_spec(spec: str) -> tuple[str, str]:
    """``"kind:arg"`` -> (kind, arg); ``highpass`` -> (``highpass``, "").

    Raises:
        InputError: an unknown kind or a missing argument.
    """
    if spec == HIGHPASS:
        return HIGHPASS, ""
    kind, sep, arg = spec.partition(":")
    if kind not in (TRAIN, DNCNN, DIFFUSIONPRINT, NOISEPRINT) or not (sep and arg):
        raise InputError(f"denoiser {spec!r}: expected {SPEC_HELP}")
    return kind, arg


class HighPassResidual(nn.Module):
    """r = x - box3(x) per channel (reflect padding): a fixed high-pass, no parameters."""

    out_channels = 3

    def __init__(self) -> None:
        super().__init__()
        kernel = -torch.full((3, 1, 3, 3), 1.0 / 9.0)
        kernel[:, :, 1, 1] += 1.0
        self.register_buffer("kernel", kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, 3, H, W)."""
        return F.conv2d(F.pad(x.float(), (1, 1, 1, 1), mode="reflect"), self.kernel, groups=3)


class DnCNNDenoiser(
    nn.Module,
    HubMixin,
    tags=["image-denoising", "deep-image-fingerprint"],
):
    """DnCNN (Zhang et al. 2017) that predicts the noise of an image: r(x) = DnCNN(x).

    Args:
        channels: image channels in and out.
        width: hidden channels.
        depth: conv layers (first without BN, last linear; `dptrain.model.dncnn`).
    """

    def __init__(self, channels: int = 3, width: int = 64, depth: int = 17) -> None:
        super().__init__()
        self.out_channels = channels
        self.net = dncnn(channels, channels, width, depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> the noise estimate (B, C, H, W); x - output is the denoised
        image."""
        return self.net(x.float())


class ExtractorResidual(nn.Module):
    """The forensic map of a frozen `dpeval.extractors.Extractor` as the residual (C channels)."""

    def __init__(self, extractor: extractors.Extractor) -> None:
        super().__init__()
        self.extractor = extractor
        self.out_channels = extractor.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, C, H, W); the extractor takes pixel units (x 255)."""
        return self.extractor.extract(x * 255.0).float()


def load_dncnn(path: str | Path) -> DnCNNDenoiser:
    """A denoiser folder written by ``DnCNNDenoiser.save_pretrained``.

    Raises:
        InputError: naming the folder, when it holds no such model.
    """
    try:
        return DnCNNDenoiser.from_pretrained(str(path))
    except Exception as err:  # a missing folder or wrong files: one clear line
        raise InputError(f"{path}: cannot load a DnCNN denoiser: {err}") from None


def load_residual(spec: str, root: str | Path | None = None, device: str = "cpu") -> nn.Module:
    """The frozen residual named by ``spec`` (module docstring), in eval mode on ``device``.

    Args:
        spec: any spec but ``train:DIR`` (train first, then load ``dncnn:PATH``).
        root: folder that a relative ``dncnn:PATH`` is read from (a fingerprint's folder).
        device: where it runs.

    Raises:
        InputError: a bad spec or a model that cannot be loaded.
    """
    kind, arg = parse_spec(spec)
    if kind == HIGHPASS:
        module: nn.Module = HighPassResidual()
    elif kind == DNCNN:
        path = Path(arg)
        module = load_dncnn(path if path.is_absolute() or root is None else Path(root) / path)
    elif kind == DIFFUSIONPRINT:
        module = ExtractorResidual(extractors.load_extractor(arg, device))
    elif kind == NOISEPRINT:
        module = ExtractorResidual(extractors.load_extractor(spec, device))
    else:
        raise InputError(f"denoiser {spec!r}: train the denoiser before loading it")
    return module.eval().requires_grad_(False).to(device)


@torch.no_grad()
def residuals_of(
    residual: nn.Module, pixels: torch.Tensor, batch_size: int, device: str | torch.device
) -> torch.Tensor:
    """Residuals of uint8 images (N, 3, H, W), in batches on ``device``, as (N, C, H, W)
    float32 on the CPU."""
    out = [
        residual(pixels[start : start + batch_size].to(device).float() / 255.0).float().cpu()
        for start in range(0, len(pixels), batch_size)
    ]
    return torch.cat(out)
