"""Augmentations: flips on the device (the default), JPEG and high-pass only for Table 3.

The paper keeps geometric augmentation only: JPEG re-compression and high-pass filtering both
hurt pretraining (Table 3: geometric 86.35, +JPEG 83.40, +HP 64.10), since they erase the
high-frequency generator traces the extractor must learn. They exist here to reproduce that
ablation. Each view of a pair is augmented independently.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

#: JPEG settings of the Table 3 ablation.
JPEG_QUALITY = (70, 95)
JPEG_P = 0.5
#: High-pass cut-off, in normalised frequency (1 = Nyquist): lower frequencies are removed.
HIGH_PASS_CUTOFF = 0.1


def to_model_input(patches: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """uint8 patches on the device -> float pixel images, flipped per sample.

    Args:
        patches: (B, 3, P, P) uint8 (CHW, as stored by dpgen).
        flips: (B, 2) bool: horizontal, vertical.

    Returns:
        (B, 3, P, P) float32 in 0..255 (the model divides by its ``input_divisor``).
    """
    x = patches.float()
    x = torch.where(flips[:, 0, None, None, None], x.flip(3), x)
    return torch.where(flips[:, 1, None, None, None], x.flip(2), x)


def jpeg_compress(patches: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Re-encode each patch as JPEG with probability `JPEG_P`, quality uniform in `JPEG_QUALITY`.

    Args:
        patches: (n, 3, P, P) uint8 RGB.
        rng: the step's generator (decides which patches and their quality).

    Returns:
        A new (n, 3, P, P) uint8 array.
    """
    out = patches.copy()
    chosen = rng.random(len(patches)) < JPEG_P
    quality = rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, len(patches))
    for i in np.flatnonzero(chosen):
        bgr = np.ascontiguousarray(patches[i, ::-1].transpose(1, 2, 0))  # OpenCV's HWC BGR
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality[i])])
        if not ok:
            raise RuntimeError("OpenCV failed to JPEG-encode a patch")
        out[i] = cv2.imdecode(buf, cv2.IMREAD_COLOR).transpose(2, 0, 1)[::-1]
    return out


def high_pass(x: torch.Tensor, cutoff: float = HIGH_PASS_CUTOFF) -> torch.Tensor:
    """Remove every spatial frequency with normalised radius <= ``cutoff`` (1 = Nyquist).

    Args:
        x: (B, 3, H, W) float images.
        cutoff: normalised cut-off frequency.

    Returns:
        (B, 3, H, W) float32, zero-mean per channel (the DC term is removed).
    """
    h, w = x.shape[-2:]
    fy = torch.fft.fftfreq(h, device=x.device)[:, None] * 2  # cycles/pixel -> Nyquist units
    fx = torch.fft.fftfreq(w, device=x.device)[None, :] * 2
    keep = (fy**2 + fx**2).sqrt() > cutoff
    return torch.fft.ifft2(torch.fft.fft2(x.float()) * keep).real
