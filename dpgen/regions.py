"""Where a source image is repainted, and with what prompt: one decision per image.

`RegionChooser` applies the mask policy of the image's source set (`dpgen.masks.MaskPolicy`):
the training rectangle, TGIF's random rectangle, or a COCO object picked by a semantic rule
(`dpgen.semantic`). It also decides the prompt, as TGIF did: the caption prompt of the semantic
rule for semantic masks, an empty prompt for random masks of real images, and the source's own
prompt (a dataset caption, the text-to-image prompt) otherwise. The decisions come back in a
`Region`, whose `Region.record` fills the image's record in the build's ``images`` split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dpgen.errors import InputError
from dpgen.masks import (
    MaskPolicy,
    annotation_mask,
    check_mask,
    random_mask,
    training_mask,
    transform_mask,
)
from dpgen.schema import SOURCE_REAL
from dpgen.semantic import choose
from dpgen.sources import (
    Prepared,
    SourceRef,
    exif_orientation,
    load_coco_captions,
    load_coco_instances,
)


@dataclass(frozen=True)
class Region:
    """The mask of one source image and the decisions behind it.

    Attributes:
        mask: ``(H, W)`` bool, True where repainted, on the prepared image.
        policy: the mask policy applied (`dpgen.masks.MASK_POLICIES`), or ``none``.
        prompt: the inpainting prompt; None keeps the source's own.
        category: COCO category of a semantic mask, else "".
        annotation_id: id of the COCO annotation it was made from, else -1.
        caption_index: index of the image's caption the prompt quotes, else -1.
    """

    mask: np.ndarray
    policy: str
    prompt: str | None = None
    category: str = ""
    annotation_id: int = -1
    caption_index: int = -1

    def record(self) -> dict[str, Any]:
        """The image-record columns of this decision (`dpgen.schema.IMAGE_FEATURES`)."""
        return {
            "mask_policy": self.policy,
            "category": self.category,
            "annotation_id": self.annotation_id,
            "caption_index": self.caption_index,
        }


def no_region(height: int, width: int) -> Region:
    """The region of a VAE round trip: nothing repainted."""
    return Region(np.zeros((height, width), dtype=bool), "none")


class RegionChooser:
    """Chooses each image's `Region` under a build's mask settings.

    Args:
        policy: the policy per source set.
        grid: ``(rows, cols)`` of the patch grid (the training rectangle is sized for it).
        patch_size: patch side P.
        margin: the outside grid's clearance.
        annotations: COCO instances JSON; needed when a source set is ``semantic``.
        captions: COCO captions JSON; needed by the ``tgif`` rule.
        rule: the semantic rule (`dpgen.semantic.SEMANTIC_RULES`).

    Raises:
        InputError: a semantic policy without the files it needs, or an unreadable file (read
            here, before any pipeline loads).
    """

    def __init__(
        self,
        policy: MaskPolicy,
        grid: tuple[int, int],
        patch_size: int,
        margin: int,
        annotations: str | None = None,
        captions: str | None = None,
        rule: str = "tgif",
    ) -> None:
        self.policy, self.grid, self.patch_size, self.margin = policy, grid, patch_size, margin
        self.rule = rule
        self.instances: dict[str, list[dict]] = {}
        self.captions: dict[str, list[str]] = {}
        if policy.real == "semantic":
            if not annotations:
                raise InputError("--mask-policy semantic needs --annotations (COCO instances JSON)")
            if rule == "tgif" and not captions:
                raise InputError(
                    "--mask-policy semantic with --semantic-rule tgif needs --captions "
                    "(COCO captions JSON: TGIF's prompts quote each image's captions)"
                )
            self.instances = load_coco_instances(annotations)
            self.captions = load_coco_captions(captions) if rule == "tgif" else {}

    def check_real(self, refs: list[SourceRef]) -> None:
        """Refuse a semantic build whose annotations name none of the real images.

        Raises:
            InputError: no real image's file stem is in the annotations.
        """
        if self.policy.real != "semantic" or not refs:
            return
        if not any(Path(r.path).stem in self.instances for r in refs):
            raise InputError(
                f"--annotations names none of the {len(refs)} real images (e.g. "
                f"{Path(refs[0].path).name}); is it the instances file of --real?"
            )

    def choose(
        self,
        source_set: str,
        ref: SourceRef | None,
        prepared: Prepared,
        rng: np.random.Generator,
        where: str,
    ) -> Region:
        """The region of one image (draws from ``rng`` as its policy needs).

        Raises:
            MaskError: the image cannot get a mask under its policy (too small, no usable
                instance or caption, an empty or full mask): the build skips it.
        """
        x0, y0, x1, y1 = prepared.crop  # the prepared image is the crop (its pixels may
        width, height = x1 - x0, y1 - y0  # not exist yet: a text-to-image source to be made)
        rows, cols = self.grid
        policy = self.policy.of(source_set)
        real = source_set == SOURCE_REAL
        if policy == "train":
            mask = training_mask(width, height, rng, rows, cols, self.patch_size, self.margin)
            region = Region(mask, policy)
        elif policy == "random":
            region = Region(random_mask(width, height, rng), policy, "" if real else None)
        else:
            stem = Path(ref.path).stem if ref is not None else ""
            here = f"{where} ({stem!r})"
            choice = choose(
                self.rule, self.instances.get(stem, []), self.captions.get(stem, []), rng, here
            )
            orientation = exif_orientation(ref) if ref is not None else 1
            full = annotation_mask(choice.annotation, prepared.original_size, orientation, where)
            mask = transform_mask(full, prepared.scale, prepared.crop)
            ann_id = int(choice.annotation.get("id", -1))
            region = Region(
                mask, policy, choice.prompt, choice.category, ann_id, choice.caption_index
            )
        check_mask(region.mask, where)
        return region
