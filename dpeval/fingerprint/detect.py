"""Label images with a trained fingerprint: ``dpeval fingerprint --detect F IMAGES...``.

Each image is centre-cropped to the fingerprint's size, its residual taken with the fingerprint's
own denoiser, and rho computed (`DeepImageFingerprint`); the label is the nearer class centre
(mu_real or mu_fake). One JSON record per image, in input order:
``{"image": ..., "rho": ..., "label": "real" | "generated"}``, or ``{"image": ..., "error": ...}``
for an image that cannot be read or is smaller than the crop (the run goes on).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dpgen.errors import InputError

from .data import iter_images
from .denoiser import load_residual
from .model import LABELS, DeepImageFingerprint


def default_device(device: str | None) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def load_fingerprint(folder: str | Path, device: str) -> tuple[DeepImageFingerprint, nn.Module]:
    """The fingerprint saved in ``folder`` and its residual, in eval mode on ``device``.

    Raises:
        InputError: naming the folder, when it holds no fingerprint.
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: not a fingerprint folder (no config.json); train one first")
    try:
        model = DeepImageFingerprint.from_pretrained(str(folder))
    except Exception as err:  # wrong files: one clear line
        raise InputError(f"{folder}: cannot load a fingerprint: {err}") from None
    residual = load_residual(model.denoiser, root=folder, device=device)
    return model.eval().requires_grad_(False).to(device), residual


@torch.no_grad()
def score(
    model: DeepImageFingerprint,
    residual: nn.Module,
    pixels: np.ndarray,
    batch_size: int,
    device: str,
) -> np.ndarray:
    """rho of every image: (N, 3, S, S) uint8 -> (N,) float64, in batches on ``device``."""
    out = []
    for start in range(0, len(pixels), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(pixels[start : start + batch_size]))
        out.append(model(residual(x.to(device).float() / 255.0)).double().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


def is_generated(model: DeepImageFingerprint, rhos: np.ndarray) -> np.ndarray:
    """(N,) bool: nearer mu_fake than mu_real (`DeepImageFingerprint.is_generated`)."""
    return model.is_generated(torch.from_numpy(rhos)).numpy()


def label_of(model: DeepImageFingerprint, rhos: np.ndarray) -> list[str]:
    """ "real" or "generated" per rho."""
    return [LABELS[int(g)] for g in is_generated(model, rhos)]


def detect(
    folder: str | Path, specs: list[str], batch_size: int = 64, device: str | None = None
) -> Iterator[dict]:
    """Records (module docstring) for every image of ``specs``.

    Raises:
        InputError: no IMAGES, a bad fingerprint folder, or an input that cannot be listed.
    """
    if not specs:
        raise InputError("--detect: give the IMAGES to label (files, folders or DATA@NAME)")
    device = default_device(device)
    model, residual = load_fingerprint(folder, device)
    pending: list[tuple[str, np.ndarray]] = []
    for where, pixels, error in iter_images(specs, model.size):
        if error:
            yield from _flush(model, residual, pending, batch_size, device)
            pending = []
            yield {"image": where, "error": error}
            continue
        pending.append((where, pixels))
        if len(pending) == batch_size:
            yield from _flush(model, residual, pending, batch_size, device)
            pending = []
    yield from _flush(model, residual, pending, batch_size, device)


def _flush(model, residual, pending, batch_size, device) -> Iterator[dict]:
    if not pending:
        return
    rhos = score(model, residual, np.stack([p for _, p in pending]), batch_size, device)
    for (where, _), value, label in zip(pending, rhos, label_of(model, rhos), strict=True):
        yield {"image": where, "rho": float(value), "label": label}
