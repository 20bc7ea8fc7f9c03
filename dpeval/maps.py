"""Localization maps and masks on disk, and the heat-map overlay people look at.

A map is (H, W) float in [0, 1], the probability that each pixel was inpainted.

- `write_map` stores it as a 16-bit grayscale PNG, pixel value ``round(p * 65535)`` (so
  0..65535 means 0..1, a step of 1.5e-5); `read_map` reads that, an 8-bit grayscale PNG
  (``value / 255``) or a ``.npy`` array (float in [0, 1], uint8 /255, uint16 /65535, bool).
- `write_mask` stores ``map > threshold`` as an 8-bit 0/255 PNG (TGIF's mask format);
  `read_mask` reads a 0/255 or a 0/1 single-channel image.
- `overlay` blends a colour map of the probabilities over the image, in proportion to them.

Every reader raises `dpgen.errors.InputError` naming the file; nothing is resized.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from dpgen.checkpoints import atomic_write
from dpgen.errors import InputError

MAP_SUFFIXES = (".png", ".npy")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
#: Colour map of the overlay and how opaque it gets where the map is 1.
OVERLAY_CMAP = "turbo"
OVERLAY_ALPHA = 0.6
_PNG_8BIT, _PNG_16BIT = ("L",), ("I;16", "I;16B", "I;16L", "I")


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def write_map(path: str | Path, prob: np.ndarray) -> Path:
    """Save a (H, W) map in [0, 1] as a 16-bit PNG (written whole or not at all)."""
    values = np.rint(np.clip(prob, 0.0, 1.0) * 65535).astype(np.uint16)
    return atomic_write(path, _png_bytes(Image.fromarray(values)))


def write_mask(path: str | Path, prob: np.ndarray, threshold: float) -> Path:
    """Save ``prob > threshold`` as an 8-bit 0/255 PNG."""
    return atomic_write(
        path, _png_bytes(Image.fromarray((prob > threshold).astype(np.uint8) * 255))
    )


def overlay(image: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 image with the map's colours blended in with opacity 0.6 x p."""
    from matplotlib import colormaps

    colours = colormaps[OVERLAY_CMAP](prob)[..., :3] * 255.0
    alpha = (OVERLAY_ALPHA * prob)[..., None]
    return np.rint((1 - alpha) * image + alpha * colours).astype(np.uint8)


def write_overlay(path: str | Path, image: np.ndarray, prob: np.ndarray) -> Path:
    """Save `overlay` as an RGB PNG."""
    return atomic_write(path, _png_bytes(Image.fromarray(overlay(image, prob))))


def _open_png(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(f"{path}: cannot decode ({type(err).__name__}: {err})") from None
    return image


def image_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of a map or mask file, from its header.

    Raises:
        InputError: unreadable file.
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            return tuple(np.load(path, mmap_mode="r").shape[:2])
        with Image.open(path) as image:
            return image.size[::-1]
    except (OSError, ValueError, SyntaxError) as err:
        raise InputError(f"{path}: cannot read ({type(err).__name__}: {err})") from None


def read_map(path: str | Path) -> np.ndarray:
    """A map file as (H, W) float64 in [0, 1] (see the module docstring for the formats).

    Raises:
        InputError: naming the file: unreadable, not single-channel, or values outside [0, 1].
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return _map_from_array(path, _load_npy(path))
    image = _open_png(path)
    if image.mode in _PNG_16BIT:
        values = np.asarray(image, dtype=np.float64)
        if values.max(initial=0) > 65535:
            raise InputError(f"{path}: 32-bit integer image; maps are 8- or 16-bit")
        return values / 65535.0
    if image.mode in _PNG_8BIT:
        return np.asarray(image, dtype=np.float64) / 255.0
    raise InputError(f"{path}: a map must be a single-channel 8- or 16-bit image, got {image.mode}")


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read .npy ({err})") from None


def _map_from_array(path: Path, array: np.ndarray) -> np.ndarray:
    if array.ndim != 2:
        raise InputError(f"{path}: a map must be (H, W), got shape {array.shape}")
    if array.dtype == np.bool_:
        return array.astype(np.float64)
    if array.dtype in (np.uint8, np.uint16):
        return array / float(np.iinfo(array.dtype).max)
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{path}: map dtype {array.dtype}; use float in [0, 1], uint8 or uint16")
    if not np.isfinite(array).all() or array.min(initial=0) < 0 or array.max(initial=0) > 1:
        raise InputError(
            f"{path}: map values must be finite and in [0, 1] (got [{np.nanmin(array)}, "
            f"{np.nanmax(array)}]); apply the sigmoid to logits first"
        )
    return array.astype(np.float64)


def read_mask(path: str | Path) -> np.ndarray:
    """A ground-truth mask as (H, W) bool: 0/255 or 0/1 values in one channel.

    Raises:
        InputError: naming the file: unreadable, several channels, or other values.
    """
    path = Path(path)
    image = _open_png(path)
    if image.mode not in ("L", "1"):
        raise InputError(f"{path}: a mask must be a single-channel 8-bit image, got {image.mode}")
    values = np.asarray(image.convert("L"))
    present = set(np.unique(values).tolist())
    if present <= {0, 255}:
        return values == 255
    if present <= {0, 1}:
        return values == 1
    raise InputError(
        f"{path}: mask values {sorted(present)[:5]} are neither 0/255 nor 0/1 (resized with "
        "interpolation, or saved as JPEG?)"
    )
