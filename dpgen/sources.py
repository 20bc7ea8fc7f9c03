"""Source images: list them, decode them to RGB, and cut them to a size the generators accept.

A source is a local image file or a row of a Hugging Face dataset. Every function here turns bad
input into a `SourceError` whose message starts with the file (or ``hf://`` reference), so a
build over thousands of files says which one broke and why.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps

from dpgen.errors import InputError
from dpgen.schema import SOURCE_GENERATED, SOURCE_REAL

logger = logging.getLogger(__name__)

#: File suffixes listed as images (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
HF_PREFIX = "hf://"
# ORG/NAME[/CONFIG][:SPLIT], and not an existing folder: read as a Hub dataset id.
_HUB_ID = re.compile(r"(?![./])[\w.-]+/[\w.-]+(/[\w.-]+)?(:[\w.-]+)?")
_DATA_DIR = Path(__file__).parent / "data"


class SourceError(InputError):
    """A source image, folder, dataset or prompt file cannot be used; the message says why."""


@dataclass(frozen=True)
class SourceRef:
    """Where one source image comes from.

    Attributes:
        image_id: stable id: the file's path relative to the listed folder without its suffix
            ('/'-joined), or ``"<dataset>:<index>"`` for a dataset row.
        path: local file path, or ``"hf://<dataset>[/<config>]:<split>:<index>"``.
        source_set: `dpgen.schema.SOURCE_REAL` or `dpgen.schema.SOURCE_GENERATED`.
        generator: name of the generator that made a generated source, else "".
        prompt: prompt or caption that came with the source, else "".
    """

    image_id: str
    path: str
    source_set: str
    generator: str = ""
    prompt: str = ""


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


def bundled_photos_dir() -> Path:
    """Folder of the demo photographs shipped with dpgen (see ``dpgen/data/ATTRIBUTION.md``)."""
    return _DATA_DIR / "photos"


# --------------------------------------------------------------------------- listing


def _check_source_set(source_set: str) -> None:
    if source_set not in (SOURCE_REAL, SOURCE_GENERATED):
        raise ValueError(
            f"source_set must be {SOURCE_REAL!r} or {SOURCE_GENERATED!r}, got {source_set!r}"
        )


def _list_folder(folder: Path) -> list[tuple[str, str]]:
    """(image_id, path) of every image under ``folder``, sorted by relative path.

    Hidden files and folders (name starting with '.', e.g. macOS ``._x.jpg`` resource forks)
    are skipped.
    """
    found: dict[str, Path] = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            path = Path(root) / name
            image_id = path.relative_to(folder).with_suffix("").as_posix()
            if image_id in found:
                raise SourceError(
                    f"{folder}: {found[image_id].name} and {path.name} give the same image id "
                    f"{image_id!r}; rename one of them"
                )
            found[image_id] = path
    return [(image_id, str(found[image_id])) for image_id in sorted(found)]


def _parse_hub_location(location: str) -> tuple[str, str | None, str | None]:
    """Split ``[hf://]<dataset>[/<config>][:<split>]`` into (dataset, config, split).

    A dataset is an existing local folder (read by `datasets.load_dataset` as a script-free
    dataset, e.g. parquet files) or a Hub id ``ORG/NAME``; a third path component of a Hub id
    is its config.
    """
    spec = location.removeprefix(HF_PREFIX)
    split = None
    if ":" in spec:
        spec, split = spec.rsplit(":", 1)
    if os.path.isdir(spec):
        return spec, None, split
    parts = spec.split("/")
    if len(parts) == 3:
        return f"{parts[0]}/{parts[1]}", parts[2], split
    if len(parts) > 3 or not all(parts):
        raise SourceError(f"{location}: not a folder and not a Hub dataset id ORG/NAME[/CONFIG]")
    return spec, None, split


def _hub_ref(dataset: str, config: str | None, split: str, index: int) -> str:
    name = f"{dataset}/{config}" if config else dataset
    return f"{HF_PREFIX}{name}:{split}:{index}"


def _parse_hub_ref(ref: str) -> tuple[str, str | None, str, int]:
    spec, split, index = ref.removeprefix(HF_PREFIX).rsplit(":", 2)
    dataset, config, _ = _parse_hub_location(spec)
    return dataset, config, split, int(index)


@functools.lru_cache(maxsize=4)
def _hub_split(
    dataset: str, config: str | None, split: str | None
) -> tuple[Any, str, str | None, str]:
    """Load one split with images undecoded: (rows, image column, prompt column, split name).

    Cached so that `load_image` on consecutive rows does not reload the dataset.
    """
    import datasets  # heavy import, needed only for dataset sources

    where = HF_PREFIX + dataset + (f"/{config}" if config else "") + (f":{split}" if split else "")
    try:
        loaded = datasets.load_dataset(dataset, config, split=split)
    except Exception as err:  # datasets raises many types (FileNotFoundError, HfHubHTTPError..)
        raise SourceError(
            f"{where}: no such local folder, and cannot load it as a dataset: {err}"
        ) from err
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded)
        if len(names) == 1 or "train" in names:
            split = names[0] if len(names) == 1 else "train"
            loaded = loaded[split]
        else:
            raise SourceError(f"{where}: several splits {names}: name one as {where}:SPLIT")
    image_columns = [k for k, v in loaded.features.items() if isinstance(v, datasets.Image)]
    if not image_columns:
        raise SourceError(f"{where}: no Image column in {list(loaded.features)}")
    # Undecoded rows hand us the raw bytes, so files and rows go through one decoder.
    loaded = loaded.cast_column(image_columns[0], datasets.Image(decode=False))
    prompt_column = next(
        (
            k
            for k in ("prompt", "caption", "text")
            if isinstance(loaded.features.get(k), datasets.Value)
            and loaded.features[k].dtype in ("string", "large_string")
        ),
        None,
    )
    return loaded, image_columns[0], prompt_column, split


def list_images(
    location: str | None,
    source_set: str,
    generator: str = "",
    num_images: int | None = None,
    seed: int = 0,
) -> list[SourceRef]:
    """List the source images of one source set.

    Args:
        location: a local folder (searched recursively for `IMAGE_EXTENSIONS`, sorted by
            relative path); a dataset ``hf://ORG/NAME[/CONFIG][:SPLIT]`` (``hf://`` may be left
            out when no local folder has that name; the split defaults to the only split, else
            ``train``; the first ``Image`` column is used, and a string ``prompt``/``caption``/
            ``text`` column fills `SourceRef.prompt`); ``hf:///abs/folder`` reads a local
            script-free dataset (parquet, ...) the same way; None lists the bundled demo
            photographs.
        source_set: `dpgen.schema.SOURCE_REAL` or `dpgen.schema.SOURCE_GENERATED`.
        generator: generator name recorded on every ref (generated sources).
        num_images: keep at most this many: the first N of a permutation drawn with ``seed``,
            returned in listing order. A larger N keeps every image of a smaller one.
        seed: seed of that permutation.

    Returns:
        The refs, in listing order.

    Raises:
        SourceError: missing or empty folder, unloadable dataset.
    """
    _check_source_set(source_set)
    if num_images is not None and num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if location is None:
        location = str(bundled_photos_dir())
    if not location.startswith(HF_PREFIX) and (
        os.path.isdir(location) or not _HUB_ID.fullmatch(location)
    ):
        folder = Path(location)
        if not folder.is_dir():
            raise SourceError(f"{location}: no such folder")
        entries = _list_folder(folder)
        if not entries:
            raise SourceError(f"{location}: no images ({', '.join(IMAGE_EXTENSIONS)}) in folder")
        refs = [SourceRef(i, p, source_set, generator) for i, p in entries]
    else:
        dataset, config, split = _parse_hub_location(location)
        rows, _, prompt_column, split = _hub_split(dataset, config, split)
        if len(rows) == 0:
            raise SourceError(f"{location}: dataset split {split!r} is empty")
        name = Path(dataset).name if os.path.isdir(dataset) else dataset
        prompts = rows[prompt_column] if prompt_column else [""] * len(rows)
        refs = [
            SourceRef(
                f"{name}:{i}",
                _hub_ref(dataset, config, split, i),
                source_set,
                generator,
                prompts[i],
            )
            for i in range(len(rows))
        ]
    if num_images is not None and num_images < len(refs):
        keep = np.sort(np.random.default_rng(seed).permutation(len(refs))[:num_images])
        refs = [refs[i] for i in keep.tolist()]
    logger.info("%s: %d %s source images", location, len(refs), source_set)
    return refs


# --------------------------------------------------------------------------- decoding


def _to_rgb(image: Image.Image) -> Image.Image:
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


def _decode(raw: str | io.BytesIO, where: str) -> tuple[Image.Image, tuple[int, int]]:
    # A library elsewhere in the process may have set LOAD_TRUNCATED_IMAGES, which makes PIL
    # pad a truncated file with grey instead of failing: force the strict behaviour here.
    lenient = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with Image.open(raw) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            rgb = _to_rgb(image)
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
        ``(image, (W, H))``: the EXIF-transposed image in mode RGB (see `_to_rgb` for how
        grayscale, CMYK, 16-bit, float and transparent images are converted) and its size.

    Raises:
        SourceError: missing, corrupt, truncated or unreadable file; the message starts with
            ``ref.path``.
    """
    if not ref.path.startswith(HF_PREFIX):
        return _decode(ref.path, ref.path)
    dataset, config, split, index = _parse_hub_ref(ref.path)
    rows, column, _, _ = _hub_split(dataset, config, split)
    if not 0 <= index < len(rows):
        raise SourceError(f"{ref.path}: row {index} out of range (split has {len(rows)} rows)")
    cell = rows[index][column]
    if cell is None:
        raise SourceError(f"{ref.path}: image is missing (null)")
    if cell.get("bytes") is not None:
        return _decode(io.BytesIO(cell["bytes"]), ref.path)
    return _decode(cell["path"], ref.path)


# --------------------------------------------------------------------------- preparing


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


# --------------------------------------------------------------------------- annotations


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as err:
        raise SourceError(f"{path}: no such file") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SourceError(f"{path}: not valid JSON ({err})") from err


def load_prompts(path: str | None) -> list[str]:
    """Prompts for text-to-image sources.

    Args:
        path: a ``.json`` COCO captions file (``captions_val2017.json`` layout: every
            ``annotations[i]["caption"]``, in file order), or a text file with one prompt per
            line (blank lines skipped); None reads the bundled ``dpgen/data/prompts.txt``.

    Returns:
        The prompts, stripped, in file order.

    Raises:
        SourceError: missing file, malformed JSON, or no prompt at all.
    """
    path = str(_DATA_DIR / "prompts.txt") if path is None else str(path)
    if path.lower().endswith(".json"):
        data = _read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
            raise SourceError(f"{path}: not a COCO captions file (no 'annotations' list)")
        try:
            prompts = [str(a["caption"]).strip() for a in data["annotations"]]
        except (KeyError, TypeError) as err:
            raise SourceError(f"{path}: an annotation has no 'caption'") from err
    else:
        try:
            with open(path, encoding="utf-8") as f:
                prompts = [line.strip() for line in f]
        except FileNotFoundError as err:
            raise SourceError(f"{path}: no such file") from err
        except UnicodeDecodeError as err:
            raise SourceError(f"{path}: not a UTF-8 text file ({err})") from err
    prompts = [p for p in prompts if p]
    if not prompts:
        raise SourceError(f"{path}: no prompts")
    return prompts


def load_coco_instances(path: str) -> dict[str, list[dict]]:
    """Object annotations of a COCO instances file, for semantic masks.

    Args:
        path: ``instances_val2017.json`` layout (``images``, ``annotations``, ``categories``).

    Returns:
        ``file_name`` stem -> the image's annotations in file order; each annotation dict is
        the file's, plus ``category_name`` (from ``categories``) and ``width``/``height`` of the
        annotated image. Images without annotations are absent.

    Raises:
        SourceError: missing file, malformed JSON, or an annotation naming an unknown image.
    """
    data = _read_json(path)
    if not isinstance(data, dict) or not {"images", "annotations"} <= data.keys():
        raise SourceError(f"{path}: not a COCO instances file (needs 'images' and 'annotations')")
    categories = {c["id"]: c["name"] for c in data.get("categories", [])}
    images = {im["id"]: im for im in data["images"]}
    out: dict[str, list[dict]] = {}
    for ann in data["annotations"]:
        image = images.get(ann.get("image_id"))
        if image is None:
            raise SourceError(f"{path}: annotation {ann.get('id')} names unknown image id")
        entry = dict(ann, width=image.get("width"), height=image.get("height"))
        entry["category_name"] = categories.get(ann.get("category_id"), "")
        out.setdefault(Path(image["file_name"]).stem, []).append(entry)
    return out
