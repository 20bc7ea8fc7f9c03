"""COCO annotation files: captions and object instances (``annotations/*_val2017.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dpgen.sources.refs import SourceError


def read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as err:
        raise SourceError(f"{path}: no such file") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SourceError(f"{path}: not valid JSON ({err})") from err


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
    data = read_json(path)
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


def load_coco_captions(path: str) -> dict[str, list[str]]:
    """Captions of each image of a COCO captions file, for TGIF's semantic prompts.

    Args:
        path: ``captions_val2017.json`` layout (``images`` with ``file_name``, ``annotations``
            with ``image_id`` and ``caption``).

    Returns:
        ``file_name`` stem -> its captions as written, in file order (COCO has ~5 per image).

    Raises:
        SourceError: missing file, malformed JSON, or a caption naming an unknown image.
    """
    data = read_json(path)
    if not isinstance(data, dict) or not {"images", "annotations"} <= data.keys():
        raise SourceError(f"{path}: not a COCO captions file (needs 'images' and 'annotations')")
    stems = {im["id"]: Path(im["file_name"]).stem for im in data["images"]}
    out: dict[str, list[str]] = {}
    for ann in data["annotations"]:
        stem = stems.get(ann.get("image_id"))
        if stem is None or "caption" not in ann:
            raise SourceError(f"{path}: caption {ann.get('id')} has no caption or an unknown image")
        out.setdefault(stem, []).append(str(ann["caption"]))  # as in the file, as TGIF used it
    return out
