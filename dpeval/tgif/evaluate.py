"""Score a localizer on TGIF fakes: per-image metrics at 0.5, F1 averaged per cell.

A cell is a generator x mask type (bbox, segm, random), plus ``semantic`` = bbox and segm
together, the paper's Table 2 grouping. Every convention of `dpeval.metrics` is computed per
image at threshold 0.5 (the same code as `dpeval score`); cells hold means over fake images
(NaN images skipped, which only TruFor's original convention produces).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from dpeval.metrics import AT_FIXED, F1_CONVENTIONS, mean_over_images, pixel_metrics
from dpeval.tgif.lite_baseline import LiteBaseline
from dpeval.tgif.reader import GENERATORS, MASK_GROUPS, MASK_TYPES, TGIFSample
from dpgen import masks
from dpgen.errors import InputError

logger = logging.getLogger(__name__)


def load_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file."""
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))  # a writable copy (torch.from_numpy)


def load_mask(path: Path) -> np.ndarray:
    """(H, W) 0/1 uint8 of a TGIF mask (8-bit, 0/255), as the trainer and metrics take it.

    Raises:
        dpgen.masks.MaskError: naming the file, for an undecodable file or values other than
            0 and 255.
    """
    return masks.load_mask(path).astype(np.uint8)


def image_generator(seed: int, index: int) -> torch.Generator:
    """The CPU generator of a diffusion decoder's sampling for image ``index`` of a split."""
    state = np.random.SeedSequence([seed, index]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


@torch.no_grad()
def predict(
    model: LiteBaseline,
    image: np.ndarray,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """Probability map of one full image. ``image``: (H, W, 3) uint8 -> (H, W) float32 in [0, 1].

    ``model.probabilities``: sigmoid of the MLP decoder's logits, or DiffIML's sampled map
    (seeded by ``generator``)."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].to(device)
    return model.probabilities(x, generator)[0, 0].float().cpu().numpy()


def score_samples(
    model: LiteBaseline,
    samples: Sequence[TGIFSample],
    device: torch.device,
    progress: bool = True,
    seed: int = 0,
) -> list[dict]:
    """Per-image rows: the sample's keys and every metric at 0.5 (``"tgif@0.5"``, ...).

    A diffusion decoder samples image i's map with `image_generator` (``seed``, i), so the
    scores do not depend on what ran before."""
    model.eval()
    rows = []
    for i, s in enumerate(tqdm(samples, desc="scoring", unit="image", disable=not progress)):
        prob = predict(model, load_rgb(s.image), device, image_generator(seed, i))
        mask = load_mask(s.mask)
        if prob.shape != mask.shape:
            raise InputError(
                f"{s.image}: map {prob.shape} and mask {s.mask} {mask.shape} differ in size"
            )
        row = {
            "split": s.split,
            "category": s.category,
            "image_id": s.image_id,
            "generator": s.generator,
            "mask_type": s.mask_type,
            "variation": s.variation,
            "image": str(s.image),
        }
        row.update(pixel_metrics(prob, mask, best=False, auc=False))
        rows.append(row)
    return rows


def aggregate(rows: Sequence[dict]) -> tuple[dict, dict]:
    """Mean F1 at 0.5 per convention x generator x cell, and the number of images per cell.

    Conventions are the keys of `dpeval.metrics.F1_CONVENTIONS`. Cells are the mask types and
    the groups of `MASK_GROUPS` (``semantic``, ``random``); a cell without images is NaN
    (``null`` in JSON) with count 0.

    Returns:
        ``(f1, n)`` with ``f1[convention][generator][cell]`` and ``n[generator][cell]``.
    """
    cells = {**{t: (t,) for t in MASK_TYPES}, **MASK_GROUPS}
    f1: dict = {conv: {g: {} for g in GENERATORS} for conv in F1_CONVENTIONS}
    n: dict = {g: {} for g in GENERATORS}
    for gen in GENERATORS:
        for cell, types in cells.items():
            picked = [r for r in rows if r["generator"] == gen and r["mask_type"] in types]
            n[gen][cell] = len(picked)
            for conv in F1_CONVENTIONS:
                f1[conv][gen][cell] = mean_over_images(r[conv + AT_FIXED] for r in picked)[0]
    return f1, n
