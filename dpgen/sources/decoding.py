"""Decode a source to 8-bit RGB: EXIF orientation applied, every PIL mode converted."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFile, ImageOps

from dpgen.sources.hub import open_split, parse_hub_ref
from dpgen.sources.refs import HF_PREFIX, SourceError, SourceRef
from dpgen.sources.webdataset import read_member


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB.

    16-bit and 32-bit integer modes (``I;16*``, ``I``) are taken as 16-bit data and scaled by
    255/65535 with rounding; ``F`` is taken as [0, 1] and scaled by 255 (clipped). Transparent
    images (alpha, or a palette/RGB/L ``transparency`` entry) are composited on black: transparent
    pixels carry no camera content, and black is what premultiplied alpha stores there.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        data = np.asarray(image)
        if mode == "F":
            scaled = np.clip(data, 0.0, 1.0) * 255.0
        else:
            scaled = np.clip(data.astype(np.float64), 0, 65535) * (255.0 / 65535.0)
        gray = Image.fromarray(np.rint(scaled).astype(np.uint8))
        return gray.convert("RGB")
    if "A" in mode or "a" in mode or "transparency" in image.info:
        rgba = image.convert("RGBA")
        black = Image.new("RGB", rgba.size, (0, 0, 0))
        black.paste(rgba, mask=rgba.getchannel("A"))
        return black
    return image.convert("RGB")


def decode(raw: str | io.BytesIO, where: str) -> tuple[Image.Image, tuple[int, int]]:
    # A library elsewhere in the process may have set LOAD_TRUNCATED_IMAGES, which makes PIL
    # pad a truncated file with grey instead of failing: force the strict behaviour here.
    lenient = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(raw) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            rgb = to_rgb(image)
            rgb.load()
    except FileNotFoundError as err:
        raise SourceError(f"{where}: no such file") from err
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        # UnidentifiedImageError is an OSError; truncation raises OSError("image file is
        # truncated ..."); broken PNG chunks raise SyntaxError/ValueError.
        raise SourceError(f"{where}: cannot decode image ({type(err).__name__}: {err})") from err
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = lenient
    return rgb, rgb.size


def load_image(ref: SourceRef) -> tuple[Image.Image, tuple[int, int]]:
    """Decode a source to RGB.

    Args:
        ref: from `list_images`.

    Returns:
        ``(image, (W, H))``: the EXIF-transposed image in mode RGB (see `to_rgb` for how
        grayscale, CMYK, 16-bit, float and transparent images are converted) and its size.

    Raises:
        SourceError: missing, corrupt, truncated or unreadable file; the message starts with
            ``ref.path``.
    """
    if ref.span is not None:
        shard = ref.path.rpartition("#")[0]
        return decode(io.BytesIO(read_member(shard, *ref.span)), ref.path)
    if not ref.path.startswith(HF_PREFIX):
        return decode(ref.path, ref.path)
    dataset, config, split, index = parse_hub_ref(ref.path)
    rows, column, _, _ = open_split(dataset, config, split)
    if not 0 <= index < len(rows):
        raise SourceError(f"{ref.path}: row {index} out of range (split has {len(rows)} rows)")
    cell = rows[index][column]
    if cell is None:
        raise SourceError(f"{ref.path}: image is missing (null)")
    if cell.get("bytes") is not None:
        return decode(io.BytesIO(cell["bytes"]), ref.path)
    return decode(cell["path"], ref.path)


def exif_orientation(ref: SourceRef) -> int:
    """The EXIF orientation of a source file (1-8; 1 when it has none), from its header only.

    Dataset rows (``hf://``) are read as decoded: 1.
    """
    if ref.path.startswith(HF_PREFIX):
        return 1
    try:
        with Image.open(ref.path) as opened:
            value = opened.getexif().get(0x0112, 1)
    except (OSError, SyntaxError, ValueError) as err:
        raise SourceError(f"{ref.path}: cannot read the image header ({err})") from err
    return int(value) if value in range(1, 9) else 1
