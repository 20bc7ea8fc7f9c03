"""A tiny TGIF-shaped tree made with dpgen's tiny inpainting pipelines, for tests and demos.

`make_tgif_fixture` writes the folders and file names of the real TGIF (see `dpeval.tgif.reader`):
originals, full-size and crop masks (bbox, segm, random), and FR fakes of the five TGIF
generators, each inpainted under its crop mask by a tiny random-weight pipeline through
`dpgen.pipelines.Generator` (sd2 -> tiny-sd21, sdxl -> tiny-sdxl, every Flux -> tiny-flux; the
three Flux generators differ only in seeds and steps). Crops keep TGIF's names (``_512``,
``_1024``) but are ``small`` / ``large`` pixels wide so that everything runs in seconds on a CPU.

What it exercises in the reader: the category level, one id under two categories, the random-mask
folders (``masks-sd2``, ``sd2-fr``, ...), and both spellings of SDXL's random fakes (the sdxl
random fakes use the README's ``_sd2-1024_``).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dpgen.manifest import resolve_generators
from dpgen.pipelines import Generator

logger = logging.getLogger(__name__)

#: TGIF generator -> the tiny dpgen generator that stands in for it.
TINY_STAND_INS = {
    "sd2": "tiny-sd21",
    "sdxl": "tiny-sdxl",
    "flux1schnell": "tiny-flux",
    "flux1dev": "tiny-flux",
    "flux1filldev": "tiny-flux",
}
#: Default content: split -> category -> COCO-like ids; id 102 repeats across two categories,
#: as 571 training ids do in TGIF.
DEFAULT_LAYOUT = {
    "training": {"dog": ["101", "102"], "cat": ["102"]},
    "validation": {"bird": ["201"]},
    "testing": {"car": ["301", "302"]},
}


def _original(
    rng: np.random.Generator, width: int, height: int
) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """A smooth random scene with one object; returns the image and the object's box (x0, y0, x1, y1)."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.uniform(40, 200, 3)
    slope = rng.uniform(-0.8, 0.8, (2, 3))
    img = (
        base
        + xx[..., None] * slope[0]
        + yy[..., None] * slope[1]
        + rng.normal(0, 6, (height, width, 3))
    )
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    w, h = int(rng.integers(width // 5, width // 3)), int(rng.integers(height // 5, height // 3))
    x0, y0 = (
        int(rng.integers(width // 4, width - w - width // 4)),
        int(rng.integers(height // 4, height - h - height // 4)),
    )
    ImageDraw.Draw(im).ellipse(
        [x0, y0, x0 + w, y0 + h], fill=tuple(int(v) for v in rng.integers(0, 255, 3))
    )
    return im, (x0, y0, x0 + w, y0 + h)


def _crop_box(
    box: tuple[int, int, int, int], size: int, width: int, height: int
) -> tuple[int, int, int, int]:
    """A size x size crop centred on the object box, clamped inside the image (TGIF's SD2 crop)."""
    cx, cy = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
    x0 = min(max(0, cx - size // 2), width - size)
    y0 = min(max(0, cy - size // 2), height - size)
    return x0, y0, x0 + size, y0 + size


def _masks(box: tuple[int, int, int, int], size: tuple[int, int]) -> dict[str, Image.Image]:
    """Full-size bbox, segm (the ellipse) and random masks, 0/255 L."""
    out = {}
    for kind in ("bbox", "segm"):
        m = Image.new("L", size, 0)
        (ImageDraw.Draw(m).rectangle if kind == "bbox" else ImageDraw.Draw(m).ellipse)(
            list(box), fill=255
        )
        out[kind] = m
    return out


def _random_mask(
    crop: tuple[int, int, int, int], size: tuple[int, int], rng: random.Random
) -> Image.Image:
    """TGIF's random mask: a rectangle inside the crop, sides in [min, 0.6 * crop side]."""
    cw, ch = crop[2] - crop[0], crop[3] - crop[1]
    low = max(8, cw // 8)  # TGIF: 64 px on 512+ crops, scaled to the fixture's small crops
    w, h = rng.randint(low, int(0.6 * cw)), rng.randint(low, int(0.6 * ch))
    x, y = crop[0] + rng.randint(0, cw - w), crop[1] + rng.randint(0, ch - h)
    m = Image.new("L", size, 0)
    ImageDraw.Draw(m).rectangle([x, y, x + w - 1, y + h - 1], fill=255)
    return m


def make_tgif_fixture(
    root: str | Path,
    layout: dict[str, dict[str, list[str]]] | None = None,
    small: int = 64,
    large: int = 80,
    variations: int = 1,
    seed: int = 0,
) -> Path:
    """Write a TGIF-shaped tree under ``root`` and return it.

    Args:
        root: output folder (created).
        layout: split -> category -> image ids (default `DEFAULT_LAYOUT`).
        small: pixel side of the crops named ``_512`` (SD2's); a multiple of 8.
        large: pixel side of the crops named ``_1024`` (SDXL's and Flux's); a multiple of 16.
        variations: fakes per (image, mask, generator), TGIF's ``_{var}`` (TGIF: 3).
        seed: seeds the images, masks and inpaintings.
    """
    if small % 8 or large % 16:
        raise ValueError(
            f"crop sides must be multiples of 8 (small={small}) and 16 (large={large})"
        )
    root = Path(root)
    layout = layout or DEFAULT_LAYOUT
    rng, prng = np.random.default_rng(seed), random.Random(seed)
    width, height = large + 32, large + 16  # originals are larger than every crop
    # (split, category, id, mask type, crop image, crop mask): what the generators inpaint
    jobs: list[tuple[str, str, str, str, Image.Image, Image.Image]] = []
    for split, categories in layout.items():
        for category, ids in categories.items():
            for image_id in ids:
                orig, box = _original(rng, width, height)
                full = _masks(box, (width, height))
                _save(orig, root / "original" / split / category / f"{image_id}_orig.png")
                for kind, m in full.items():
                    _save(m, root / "masks" / split / category / f"{image_id}_mask_{kind}.png")
                for crop_name, side, mask_dirs in (
                    (512, small, {"semantic": ["masks"], "random": ["masks-sd2"]}),
                    (
                        1024,
                        large,
                        {
                            "semantic": ["masks", "masks-flux"],
                            "random": ["masks-sdxl", "masks-flux"],
                        },
                    ),
                ):
                    crop = _crop_box(box, side, width, height)
                    _save(
                        orig.crop(crop),
                        root / "original" / split / category / f"{image_id}_orig_{crop_name}.png",
                    )
                    crop_masks = {k: m.crop(crop) for k, m in full.items()}
                    crop_masks["random"] = _random_mask(crop, (width, height), prng).crop(crop)
                    for kind, m in crop_masks.items():
                        group = "random" if kind == "random" else "semantic"
                        for folder in mask_dirs[group]:
                            _save(
                                m,
                                root
                                / folder
                                / split
                                / category
                                / f"{image_id}_mask_{kind}_{crop_name}.png",
                            )
                        jobs.append((split, category, image_id, kind, orig.crop(crop), m))
    generators: dict[str, Generator] = {}
    for offset, (tgif_name, tiny) in enumerate(TINY_STAND_INS.items()):
        if tiny not in generators:
            generators[tiny] = Generator(resolve_generators(tiny)[0])
        gen = generators[tiny]
        crop_name, side = (512, small) if tgif_name == "sd2" else (1024, large)
        todo = [j for j in jobs if j[4].size == (side, side)]
        for var in range(variations):
            prompts = [f"{j[1]}, a photo of a {j[1]}" if j[3] != "random" else "" for j in todo]
            seeds = [seed + 1000 * offset + 100 * var + i for i in range(len(todo))]
            steps = prng.randint(*gen.spec.steps)
            fakes = gen.inpaint(
                [j[4] for j in todo], [j[5] for j in todo], prompts, seeds, steps, 3.0
            )
            for (split, category, image_id, kind, _, _), fake in zip(todo, fakes, strict=True):
                if kind == "random":
                    folder = f"{tgif_name}-fr"
                    # the README's spelling of SDXL's random fakes says sd2 (the reader takes both)
                    token = "sd2" if tgif_name == "sdxl" else tgif_name
                else:
                    folder = {"sd2": "SD2-fr", "sdxl": "SDXL-fr"}.get(tgif_name, f"{tgif_name}-fr")
                    token = tgif_name
                name = f"{image_id}_mask_{kind}.png_{token}-{crop_name}_{var}.png"
                _save(fake, root / folder / split / category / name)
        logger.info("fixture: %s fakes by %s", tgif_name, tiny)
    for gen in generators.values():
        gen.unload()
    return root


def _save(im: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
