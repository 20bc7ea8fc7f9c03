"""Inpainting masks: where a generator repaints a source image.

A mask is an ``(H, W)`` bool array, True where the image is inpainted; on disk it is an 8-bit L
PNG with 0/255 (TGIF's convention). Three policies (`MASK_POLICIES`):

- ``train``: `training_mask`, the default for building pretraining data: a rectangle sized so
  that both the inside grid and the outside grid (`dpgen.grid`) are as full as the image allows.
- ``random``: `random_mask`, TGIF's random-rectangle rule.
- ``semantic``: `semantic_mask`, a COCO object's segmentation or box (TGIF's semantic masks;
  which object, and the prompt, follow TGIF's rule in `dpgen.semantic`).

A policy may differ per source set (`parse_mask_policy`): ``real=semantic,generated=train``.
Generated images have no COCO annotations, so a plain ``semantic`` applies to real images and
generated ones get the training policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dpgen.errors import InputError
from dpgen.grid import axis_starts
from dpgen.schema import SOURCE_GENERATED, SOURCE_REAL
from dpgen.sources import resized_size

MASK_POLICIES = ("train", "random", "semantic")
#: Policy of generated sources when a command names one for real images only: they have no
#: annotations, and the training policy is the paper's.
GENERATED_DEFAULT = "train"
#: TGIF random masks: each side uniform in [MIN_SIDE, floor(MAX_FRACTION * image side)].
RANDOM_MIN_SIDE = 64
RANDOM_MAX_FRACTION = 0.6


class MaskError(InputError):
    """A mask is unusable; the message names the file or image and the problem."""


@dataclass(frozen=True)
class MaskPolicy:
    """The mask policy of each source set (`MASK_POLICIES`)."""

    real: str
    generated: str

    def of(self, source_set: str) -> str:
        """The policy of ``source_set`` (`dpgen.schema.SOURCE_REAL` or ``SOURCE_GENERATED``)."""
        return self.real if source_set == SOURCE_REAL else self.generated

    def __str__(self) -> str:
        return f"{SOURCE_REAL}={self.real},{SOURCE_GENERATED}={self.generated}"


def parse_mask_policy(text: str) -> MaskPolicy:
    """Read ``--mask-policy``: one policy, or one per source set.

    ``train`` / ``random`` apply to every source; ``semantic`` to real images, with generated
    ones on `GENERATED_DEFAULT` (they have no annotations); ``real=semantic,generated=random``
    names each (a source set left out: real ``train``, generated `GENERATED_DEFAULT`).

    Raises:
        ValueError: an unknown policy or source set, or ``generated=semantic``.
    """
    text = text.strip()
    if "=" not in text:
        _check_policy(text, text)
        return MaskPolicy(text, GENERATED_DEFAULT if text == "semantic" else text)
    chosen = {SOURCE_REAL: "train", SOURCE_GENERATED: GENERATED_DEFAULT}
    for part in filter(None, (p.strip() for p in text.split(","))):
        source_set, sep, policy = (x.strip() for x in part.partition("="))
        if not sep or source_set not in chosen:
            raise ValueError(
                f"{part!r}: expected SOURCE=POLICY with SOURCE {SOURCE_REAL} or {SOURCE_GENERATED}"
            )
        _check_policy(policy, part)
        chosen[source_set] = policy
    if chosen[SOURCE_GENERATED] == "semantic":
        raise ValueError(
            f"{SOURCE_GENERATED}=semantic: generated images have no COCO annotations; "
            f"use {SOURCE_GENERATED}=train or {SOURCE_GENERATED}=random"
        )
    return MaskPolicy(chosen[SOURCE_REAL], chosen[SOURCE_GENERATED])


def _check_policy(policy: str, where: str) -> None:
    if policy not in MASK_POLICIES:
        raise ValueError(f"{where!r}: unknown mask policy {policy!r}; one of {list(MASK_POLICIES)}")


def check_mask(mask: np.ndarray, where: str) -> None:
    """Reject masks no grid can use.

    Args:
        mask: the mask to check.
        where: file or image id, for the message.

    Raises:
        MaskError: not a 2-D bool array, empty (nothing inpainted), or full (nothing authentic).
    """
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.ndim != 2:
        raise MaskError(
            f"{where}: mask must be a (H, W) bool array, got {type(mask).__name__} "
            f"{getattr(mask, 'dtype', '')}{getattr(mask, 'shape', '')}"
        )
    if not mask.any():
        raise MaskError(f"{where}: mask is empty (no inpainted pixel)")
    if mask.all():
        raise MaskError(f"{where}: mask is full (no authentic pixel left)")


def check_mask_image(mask: Image.Image, where: str) -> np.ndarray:
    """Check an inpainting mask as pipelines receive it; return it as a (H, W) bool array.

    The toolkit's masks are 8-bit L images with 0 (keep) and 255 (repaint), as TGIF's. Other
    encodings are refused rather than guessed: a 0/1 mask, a float mask and an RGBA image whose
    alpha carries the mask all reach a pipeline as "repaint nothing" (or everything).

    Raises:
        MaskError: naming ``where``, for a mode other than L / 1, values other than 0 and 255,
            or an empty or full mask.
    """
    if not isinstance(mask, Image.Image):
        raise MaskError(
            f"{where}: mask must be a PIL image (mode L, 0/255), got {type(mask).__name__}"
        )
    if mask.mode not in ("L", "1"):
        raise MaskError(
            f"{where}: mask mode {mask.mode} (expected L with 0/255; an RGBA alpha or a float "
            "mask is not read as a mask)"
        )
    array = np.asarray(mask.convert("L"))
    stray = np.unique(array[(array != 0) & (array != 255)])
    if stray.size:
        hint = " (a 0/1 mask? multiply by 255)" if set(np.unique(array)) <= {0, 1} else ""
        raise MaskError(f"{where}: mask values must be 0 or 255, found {stray[:4].tolist()}{hint}")
    binary = array == 255
    check_mask(binary, where)
    return binary


def random_mask(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """TGIF's random rectangle (IDLabMedia/tgif-dataset, ``code/inpaint-loop.py``).

    Width uniform integer in [64, floor(0.6 w)], height in [64, floor(0.6 h)], top-left uniform
    over the positions where it fits. Draw order: width, height, x, y.

    Args:
        width: image width w.
        height: image height h.
        rng: the only source of randomness.

    Returns:
        ``(height, width)`` bool mask.

    Raises:
        MaskError: a side is too short for the rule (floor(0.6 side) < 64, i.e. side < 107).
    """
    max_w = int(RANDOM_MAX_FRACTION * width)
    max_h = int(RANDOM_MAX_FRACTION * height)
    if max_w < RANDOM_MIN_SIDE or max_h < RANDOM_MIN_SIDE:
        raise MaskError(
            f"image {width}x{height} is too small for a TGIF random mask: each side needs "
            f"0.6 * side >= {RANDOM_MIN_SIDE} px"
        )
    mw = int(rng.integers(RANDOM_MIN_SIDE, max_w, endpoint=True))
    mh = int(rng.integers(RANDOM_MIN_SIDE, max_h, endpoint=True))
    x0 = int(rng.integers(0, width - mw, endpoint=True))
    y0 = int(rng.integers(0, height - mh, endpoint=True))
    mask = np.zeros((height, width), dtype=bool)
    mask[y0 : y0 + mh, x0 : x0 + mw] = True
    return mask


def _least_blocking_start(
    side: int, extent: int, count: int, patch: int, margin: int, rng: np.random.Generator
) -> int:
    """Start of an ``extent``-long mask interval on an axis of length ``side``, drawn uniformly
    among the starts whose ``margin``-grown interval hits the fewest outside-grid patches."""
    patches = axis_starts(0, side, count, patch)
    starts = np.arange(side - extent + 1)
    hit = (patches[None, :] < (starts + extent + margin)[:, None]) & (
        (patches + patch)[None, :] > (starts - margin)[:, None]
    )
    blocked = hit.sum(axis=1)
    best = np.flatnonzero(blocked == blocked.min())
    return int(best[rng.integers(len(best))])


def training_mask(
    width: int,
    height: int,
    rng: np.random.Generator,
    rows: int = 4,
    cols: int = 4,
    patch: int = 64,
    margin: int = 8,
) -> np.ndarray:
    """The default mask for building pretraining data: full inside grid, fullest outside grid.

    Rule, per axis (side ``s``, grid count ``n``):

    - extent ``e = min(n * patch, s // 2)``: exactly the room a full ``n``-patch inside grid
      needs, but never more than half the side, so smaller images get a proportionally smaller
      rectangle and keep an outside ring (on 512x512: a 256x256 square; 16 inside patches);
    - start drawn uniformly among the positions whose interval, grown by ``margin``, overlaps
      the fewest patch columns (rows) of the whole-image outside grid. A rectangle blocks
      ``blocked_rows * blocked_cols`` outside cells, so minimising each axis maximises the
      outside grid (on 512x512: 12 of 16, the most any 256-px square allows).

    Draw order: x start, then y start.

    Args:
        width: image width.
        height: image height.
        rng: the only source of randomness.
        rows: grid rows (as passed to `dpgen.grid.inside_grid` / `outside_grid`).
        cols: grid columns.
        patch: patch side.
        margin: the outside grid's clearance.

    Returns:
        ``(height, width)`` bool mask, one rectangle.
    """
    mw = max(1, min(cols * patch, width // 2))
    mh = max(1, min(rows * patch, height // 2))
    x0 = _least_blocking_start(width, mw, cols, patch, margin, rng)
    y0 = _least_blocking_start(height, mh, rows, patch, margin, rng)
    mask = np.zeros((height, width), dtype=bool)
    mask[y0 : y0 + mh, x0 : x0 + mw] = True
    return mask


# --------------------------------------------------------------------------- COCO


def _decode_rle_string(counts: str) -> list[int]:
    """Decode COCO's compressed RLE string (cocoapi ``maskApi.c``, ``rleFrString``).

    Each count is a little-endian base-32 varint in chars 48..111 (5 data bits, bit 0x20 =
    more), sign-extended from bit 0x10 of its last char; from the third count on, a count is
    stored as the difference to the count two places before.
    """
    out: list[int] = []
    data = counts.encode("ascii")
    p = 0
    while p < len(data):
        x = k = 0
        more = True
        while more:
            c = data[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        out.append(x)
    return out


def _decode_rle(rle: dict, width: int, height: int, where: str) -> np.ndarray:
    size = rle.get("size")
    if list(size or []) != [height, width]:
        raise MaskError(f"{where}: RLE size {size} does not match the image {width}x{height}")
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    runs = _decode_rle_string(counts) if isinstance(counts, str) else [int(c) for c in counts]
    if any(r < 0 for r in runs) or sum(runs) != width * height:
        raise MaskError(f"{where}: RLE counts do not cover {width}x{height} pixels")
    # Runs alternate 0, 1, 0, ... starting with zeros, in column-major (Fortran) order.
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, runs)
    return flat.reshape(width, height).T.copy()


#: TGIF's object filter: an instance must cover more than 64x64 px.
MIN_INSTANCE_AREA = 64 * 64


def choose_instance(annotations: list[dict], rng: np.random.Generator, where: str) -> dict:
    """The COCO instance a semantic mask is made from: one drawn uniformly among the image's
    instances larger than `MIN_INSTANCE_AREA` (TGIF's source filter).

    Raises:
        MaskError: the image has no such instance.
    """
    candidates = [a for a in annotations if a.get("area", 0) > MIN_INSTANCE_AREA]
    if not candidates:
        raise MaskError(f"{where}: no COCO instance larger than 64x64 px")
    return candidates[int(rng.integers(len(candidates)))]


#: PIL's transpose for each EXIF orientation (as `PIL.ImageOps.exif_transpose` applies it).
EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def annotation_mask(
    annotation: dict, shown_size: tuple[int, int], orientation: int, where: str, kind: str = "segm"
) -> np.ndarray:
    """A COCO object's mask on the image as decoded (EXIF orientation applied).

    COCO coordinates refer to the image whose ``width`` x ``height`` the file's image entry
    states. That is the decoded image (orientation 1, or annotations made on the displayed
    photo), or the stored pixels of an EXIF-rotated photo, whose mask is then turned exactly as
    the pixels were; when both frames have the stated size (a flip, a half turn, a square
    image), the stored pixels are taken, which is what a COCO file describes.

    Args:
        annotation: a COCO annotation with the ``width`` / ``height`` of its image entry
            (`dpgen.sources.load_coco_instances`).
        shown_size: (W, H) of the decoded image.
        orientation: the file's EXIF orientation (1-8; 1 = none).
        where: the file, for messages.
        kind: ``segm`` or ``bbox`` (`semantic_mask`).

    Raises:
        MaskError: the annotations are for an image of another size (a resized copy, another
            file): the build skips the image and says why in ``report.json``.
    """
    w, h = shown_size
    stored = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    stated = (annotation.get("width"), annotation.get("height"))
    if None in stated:
        return semantic_mask(w, h, annotation, kind)
    if orientation in EXIF_TRANSPOSE and stated == stored:
        mask = semantic_mask(*stored, annotation, kind)
        return np.asarray(to_image(mask).transpose(EXIF_TRANSPOSE[orientation])) > 0
    if stated == (w, h):
        return semantic_mask(w, h, annotation, kind)
    raise MaskError(
        f"{where}: annotations are for a {stated[0]}x{stated[1]} image, the file is "
        f"{stored[0]}x{stored[1]} (shown {w}x{h}); not the annotated image"
    )


def semantic_mask(width: int, height: int, annotation: dict, kind: str = "segm") -> np.ndarray:
    """Mask of one COCO object (TGIF's ``segm`` and ``bbox`` masks).

    Args:
        width: width of the ORIGINAL image the annotation refers to (map the result to a
            prepared image with `transform_mask`).
        height: its height.
        annotation: a COCO instance annotation: ``segmentation`` as polygons
            (``[[x1, y1, x2, y2, ...], ...]``), uncompressed RLE (``{"counts": [int...],
            "size": [h, w]}``) or compressed RLE (``counts`` a string); and ``bbox``
            ``[x, y, w, h]``.
        kind: ``segm`` (the segmentation) or ``bbox`` (the box as TGIF drew it: coordinates
            truncated to int, both ends inclusive).

    Returns:
        ``(height, width)`` bool mask. Polygons are filled with PIL (boundary pixels included).

    Raises:
        MaskError: unknown kind, malformed annotation, or an empty result.
    """
    where = f"annotation {annotation.get('id', '?')}"
    mask: np.ndarray
    if kind == "bbox":
        if len(annotation.get("bbox") or []) != 4:
            raise MaskError(f"{where}: no [x, y, w, h] bbox")
        # TGIF's create_mask_from_bbox: int() the box, then PIL's inclusive rectangle.
        x, y, w, h = (int(float(v)) for v in annotation["bbox"])
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(width, x + w + 1), min(height, y + h + 1)
        mask = np.zeros((height, width), dtype=bool)
        mask[y0:y1, x0:x1] = True
    elif kind == "segm":
        segm = annotation.get("segmentation")
        if isinstance(segm, dict):
            mask = _decode_rle(segm, width, height, where)
        elif isinstance(segm, list) and segm:
            canvas = Image.new("L", (width, height), 0)
            draw = ImageDraw.Draw(canvas)
            for poly in segm:
                if len(poly) < 6 or len(poly) % 2:
                    raise MaskError(f"{where}: polygon with {len(poly)} coordinates")
                draw.polygon([float(v) for v in poly], fill=255, outline=255)
            mask = np.asarray(canvas) > 0
        else:
            raise MaskError(f"{where}: segmentation is neither polygons nor RLE")
    else:
        raise MaskError(f"{where}: unknown mask kind {kind!r} (segm or bbox)")
    if not mask.any():
        raise MaskError(f"{where}: {kind} mask is empty in a {width}x{height} image")
    return mask


# --------------------------------------------------------------------------- files


def to_image(mask: np.ndarray) -> Image.Image:
    """Bool mask -> 8-bit L image with 0/255 (TGIF's on-disk format)."""
    return Image.fromarray(mask.astype(np.uint8) * 255)


def load_mask(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an 8-bit L (or 1-bit) 0/255 mask image.

    Args:
        path: the mask file.
        size: expected ``(W, H)``, or None to accept any.

    Returns:
        ``(H, W)`` bool, True where the file is 255.

    Raises:
        MaskError: missing or undecodable file, wrong mode, values other than 0/255, or a
            size other than ``size``; the message starts with the path.
    """
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            array = np.asarray(image.convert("L")) if mode == "1" else np.asarray(image)
    except FileNotFoundError as err:
        raise MaskError(f"{path}: no such file") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise MaskError(f"{path}: cannot decode mask ({err})") from err
    if mode not in ("L", "1"):
        raise MaskError(f"{path}: mask must be an 8-bit L (or 1-bit) image, got mode {mode}")
    stray = array[(array != 0) & (array != 255)]
    if stray.size:
        raise MaskError(
            f"{path}: mask has values other than 0 and 255 (e.g. {int(stray[0])}); "
            "binary masks only (was it resized with interpolation or saved as JPEG?)"
        )
    if size is not None and (array.shape[1], array.shape[0]) != tuple(size):
        raise MaskError(
            f"{path}: mask is {array.shape[1]}x{array.shape[0]}, expected {size[0]}x{size[1]}"
        )
    return array == 255


def transform_mask(mask: np.ndarray, scale: float, crop: tuple[int, int, int, int]) -> np.ndarray:
    """Apply `dpgen.sources.prepare`'s resize and crop to a mask of the original image.

    Args:
        mask: ``(H, W)`` bool mask in original-image coordinates.
        scale: `Prepared.scale`; the mask is resized with nearest neighbour to
            `dpgen.sources.resized_size` (the size the image was resized to).
        crop: `Prepared.crop`, in the resized image.

    Returns:
        ``(y1 - y0, x1 - x0)`` bool mask aligned with the prepared image.
    """
    height, width = mask.shape
    new_w, new_h = resized_size((width, height), scale)
    if (new_w, new_h) != (width, height):
        mask = np.asarray(to_image(mask).resize((new_w, new_h), Image.Resampling.NEAREST)) > 0
    x0, y0, x1, y1 = crop
    if x0 < 0 or y0 < 0 or x1 > new_w or y1 > new_h:
        raise MaskError(f"crop {crop} lies outside the resized {new_w}x{new_h} mask")
    return np.ascontiguousarray(mask[y0:y1, x0:x1])
