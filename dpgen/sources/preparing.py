"""`prepare`: bring a source to a size the generators accept, by a recorded rule."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from dpgen.sources.refs import SourceError


@dataclass(frozen=True)
class Prepared:
    """A source after `prepare`, with what was done to it (recorded in the build's ``images``).

    Attributes:
        image: the prepared RGB image.
        scale: resize factor applied first (1.0 when not resized).
        crop: ``(x0, y0, x1, y1)`` centre crop in the resized image.
        original_size: ``(W, H)`` of the source after EXIF transpose.
    """

    image: Image.Image
    scale: float
    crop: tuple[int, int, int, int]
    original_size: tuple[int, int]


def resized_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """``(W, H)`` after resizing by ``scale`` (rounded, at least 1); the rule `prepare` uses."""
    if scale == 1.0:
        return size
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def prepare(
    image: Image.Image, multiple: int, max_side: int, min_side: int, where: str
) -> Prepared:
    """Bring a source to a size the generators accept, by a recorded deterministic rule.

    1. If the longer side exceeds ``max_side``, resize (Lanczos) by ``max_side / longer`` so it
       equals ``max_side``; the other side is rounded (`resized_size`).
    2. Centre-crop each side down to a multiple of ``multiple`` (SD needs 8, Flux 16); an odd
       surplus leaves the extra pixel on the right/bottom.

    Args:
        image: RGB source from `load_image`.
        multiple: each prepared side is a multiple of this.
        max_side: longest side allowed before resizing.
        min_side: shortest prepared side allowed (room for the patch grid).
        where: the source's path or id, for error messages.

    Returns:
        The prepared image with its ``scale`` and ``crop`` (in the resized image).

    Raises:
        SourceError: the prepared shorter side is below ``min_side``.
    """
    width, height = image.size
    scale = 1.0
    if max(width, height) > max_side:
        scale = max_side / max(width, height)
        image = image.resize(resized_size((width, height), scale), Image.Resampling.LANCZOS)
    w, h = image.size
    cw, ch = w - w % multiple, h - h % multiple
    if min(cw, ch) < min_side:
        raise SourceError(
            f"{where}: image {width}x{height} is smaller than the grid: prepared size {cw}x{ch} "
            f"(multiple of {multiple}, longer side <= {max_side}) has a side below {min_side} px"
        )
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    crop = (x0, y0, x0 + cw, y0 + ch)
    if crop != (0, 0, w, h):
        image = image.crop(crop)
    return Prepared(image=image, scale=scale, crop=crop, original_size=(width, height))
