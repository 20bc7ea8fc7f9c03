"""TGIF's semantic rule: which COCO object of a real image is repainted, and with what prompt.

TGIF (IDLabMedia/tgif-dataset, ``code/inpaint-loop.py``, ``do_inpainting_loop``) works one
category at a time. For each image of the category it takes the category's FIRST non-crowd
instance (``coco.getAnnIds(imgIds=..., catIds=..., iscrowd=False)``, ``annotation_i = 0``) and
keeps the image only if that instance's bbox is under 512 px on each side and its bbox area
``w * h`` exceeds 64 x 64 px; the prompt is ``"{category}, {caption}"`` where caption is the
image's first COCO caption containing the category word (a case-sensitive substring test,
``find_caption_with_word``), else its first caption. Random masks get an empty prompt.

dpgen visits each real image once, so it applies that rule to the image's categories in COCO's
category order (ascending id) and uses the first category whose first non-crowd instance passes
the filter; an image where none passes is skipped (listed in the build's ``report.json``). The
filter applies to the annotation's coordinates, i.e. the COCO file's own pixels (TGIF measured
on the 1024-px Flickr originals it re-downloaded).

Rules (`SEMANTIC_RULES`): ``tgif`` (above) and ``uniform`` (dpgen's earlier rule: one instance
drawn uniformly among the image's non-crowd instances larger than 64 x 64 px by area, and the
source's own prompt).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dpgen.masks import MaskError, choose_instance

SEMANTIC_RULES = ("tgif", "uniform")
#: TGIF's object filter: the instance's bbox must be under this many px on each side ...
MAX_BBOX_SIDE = 512
#: ... and its bbox area ``w * h`` above this (TGIF's MIN_MASK_SIZE).
MIN_BBOX_AREA = 64 * 64


@dataclass(frozen=True)
class SemanticChoice:
    """The object a semantic mask is made from, and the decisions behind it.

    Attributes:
        annotation: the COCO instance annotation (with ``category_name``, see
            `dpgen.sources.load_coco_instances`).
        category: its category name.
        prompt: the inpainting prompt; None keeps the source's own prompt.
        caption_index: index, in the image's captions (file order), of the caption the prompt
            quotes; -1 when no caption is quoted.
    """

    annotation: dict
    category: str
    prompt: str | None
    caption_index: int = -1


def non_crowd(annotations: list[dict]) -> list[dict]:
    """The annotations with ``iscrowd`` 0 (COCO's crowd regions are not objects), in order."""
    return [a for a in annotations if not a.get("iscrowd", 0)]


def passes_filter(annotation: dict) -> bool:
    """TGIF's object filter: bbox under `MAX_BBOX_SIDE` px per side, bbox area > `MIN_BBOX_AREA`."""
    _, _, w, h = (float(v) for v in annotation["bbox"])
    return w < MAX_BBOX_SIDE and h < MAX_BBOX_SIDE and w * h > MIN_BBOX_AREA


def tgif_prompt(category: str, captions: list[str]) -> tuple[str, int]:
    """TGIF's semantic prompt and the index of the caption it quotes.

    Returns:
        ``("{category}, {caption}", index)``: the first caption containing ``category`` (a
        case-sensitive substring, as TGIF's ``word in caption``), else the first caption.

    Raises:
        MaskError: the image has no caption.
    """
    if not captions:
        raise MaskError(f"no COCO caption for a {category!r} prompt")
    index = next((i for i, c in enumerate(captions) if category in c), 0)
    return f"{category}, {captions[index]}", index


def tgif_choice(annotations: list[dict], captions: list[str], where: str) -> SemanticChoice:
    """TGIF's rule on one image (see the module docstring).

    Args:
        annotations: the image's instance annotations, in file order.
        captions: the image's captions, in file order.
        where: the image, for messages.

    Raises:
        MaskError: no category's first non-crowd instance passes the filter (the message lists
            each category's instance and why it failed), or the image has no caption.
    """
    first: dict[int, dict] = {}
    for ann in non_crowd(annotations):
        first.setdefault(int(ann.get("category_id", -1)), ann)
    if not first:
        raise MaskError(f"{where}: no non-crowd COCO instance")
    for category_id in sorted(first):
        ann = first[category_id]
        if passes_filter(ann):
            category = ann.get("category_name") or str(category_id)
            prompt, index = tgif_prompt(category, captions)
            return SemanticChoice(ann, category, prompt, index)
    failed = ", ".join(
        f"{first[c].get('category_name', c)} (ann {first[c].get('id')}, bbox "
        f"{float(first[c]['bbox'][2]):.0f}x{float(first[c]['bbox'][3]):.0f})"
        for c in sorted(first)
    )
    raise MaskError(
        f"{where}: no category's first non-crowd instance has a bbox under {MAX_BBOX_SIDE} px "
        f"per side and over 64x64 px: {failed}"
    )


def uniform_choice(annotations: list[dict], rng: np.random.Generator, where: str) -> SemanticChoice:
    """dpgen's earlier rule: a non-crowd instance larger than 64 x 64 px by area, drawn
    uniformly (one draw from ``rng``); the source's prompt is kept.

    Raises:
        MaskError: no such instance.
    """
    ann = choose_instance(non_crowd(annotations), rng, where)
    return SemanticChoice(ann, ann.get("category_name", ""), None)


def choose(
    rule: str,
    annotations: list[dict],
    captions: list[str],
    rng: np.random.Generator,
    where: str,
) -> SemanticChoice:
    """Apply semantic rule ``rule`` (one of `SEMANTIC_RULES`) to one image.

    Raises:
        MaskError: the image has no usable instance (or, for ``tgif``, no caption).
        ValueError: an unknown rule.
    """
    if rule == "tgif":
        return tgif_choice(annotations, captions, where)
    if rule == "uniform":
        return uniform_choice(annotations, rng, where)
    raise ValueError(f"unknown semantic rule {rule!r}; one of {list(SEMANTIC_RULES)}")
