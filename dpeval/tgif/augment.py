"""Training-time view of a TGIF fake: random resize, pad, crop, JPEG (paper Sec. 4.3).

As in TGIF's TruFor/MMFusion trainers, on the RGB image before any feature extraction: random
resize by 0.5-1.5 (p 0.5), padding to the crop size (RGB 127, mask -1 = ignored), a random
crop, and JPEG re-compression at quality 30-100 (p 0.5). The frozen extractor then sees the
augmented pixels, so the localizer learns from the maps a real re-compressed image would give.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Mask value of padded pixels; the loss ignores them.
IGNORE = -1
PAD_RGB = 127  # the frameworks pad with 127 (uint8; 127.5 is not representable before JPEG)
SCALE_RANGE = (0.5, 1.5)
JPEG_QUALITY = (30, 100)
P_RESIZE = 0.5
P_JPEG = 0.5


def augment(
    image: np.ndarray, mask: np.ndarray, crop_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One training view.

    Args:
        image: (H, W, 3) uint8 RGB.
        mask: (H, W) 0/1 uint8.
        crop_size: side of the output.
        rng: the randomness.

    Returns:
        (S, S, 3) uint8 RGB and (S, S) int64 mask in {-1, 0, 1} with S = ``crop_size``.
    """
    if rng.random() < P_RESIZE:
        scale = rng.uniform(*SCALE_RANGE)
        h, w = mask.shape
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    mask = mask.astype(np.int64)
    h, w = mask.shape
    pad_h, pad_w = max(0, crop_size - h), max(0, crop_size - w)
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=PAD_RGB)
        mask = np.pad(mask, ((0, pad_h), (0, pad_w)), constant_values=IGNORE)
    h, w = mask.shape
    y, x = rng.integers(0, h - crop_size + 1), rng.integers(0, w - crop_size + 1)
    image = np.ascontiguousarray(image[y : y + crop_size, x : x + crop_size])
    mask = np.ascontiguousarray(mask[y : y + crop_size, x : x + crop_size])
    if rng.random() < P_JPEG:
        quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
        ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError(f"OpenCV failed to JPEG-encode a {image.shape} crop")
        image = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return image, mask
