"""The masks a LightVAE learns to reconstruct: a TGIF tree's crop masks, or any folder of masks.

- A **TGIF tree** (`dpeval.tgif.reader.read_tgif` pairs FR fakes with masks): the distinct crop
  masks of the fakes of one split, the masks the localizer is trained and tested on.
- **Any other folder** of 8-bit 0/255 mask images: the images under ``<folder>/<split>`` when
  the folder has split subfolders (``training``, ``validation``, ``testing``), else every image
  under it, whatever the split.

Masks are read with `dpgen.masks.load_mask` (which rejects anything but 0/255) and resized with
nearest neighbour to one square side, so they batch (DiffIML resizes its masks to 512 as well).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dpeval.tgif.reader import IMAGE_SUFFIXES, SPLITS, read_tgif
from dpgen.errors import InputError
from dpgen.masks import load_mask

logger = logging.getLogger(__name__)


def list_masks(root: str | Path, split: str) -> list[Path]:
    """The mask files of ``split`` under ``root`` (see the module docstring), sorted.

    Raises:
        InputError: ``root`` is not a folder, ``split`` is not TGIF's, or no mask was found.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: mask folder does not exist")
    if split not in SPLITS:
        raise InputError(f"split {split!r} is not one of {list(SPLITS)}")
    index = read_tgif(root)
    if index.samples:
        paths = sorted({s.mask for s in index.select(split)})
        where = f"TGIF tree, masks of the {split} FR fakes"
    else:
        folder = root / split if any((root / s).is_dir() for s in SPLITS) else root
        paths = sorted(
            p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        where = f"mask folder {folder}" + ("" if folder != root else " (no split subfolders)")
    if not paths:
        raise InputError(f"{root}: no masks found ({where})")
    logger.info("%d masks from %s: %s", len(paths), root, where)
    return paths


class MaskSet(Dataset):
    """Masks as (1, S, S) float tensors in {0, 1} (1 = inpainted), resized with nearest neighbour.

    Raises (on access):
        dpgen.masks.MaskError: an unreadable file or values other than 0/255, naming the file.
    """

    def __init__(self, paths: Sequence[Path], size: int) -> None:
        self.paths = list(paths)
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        mask = load_mask(self.paths[i])
        if mask.shape != (self.size, self.size):
            image = Image.fromarray(mask.astype(np.uint8) * 255)
            mask = np.asarray(image.resize((self.size, self.size), Image.NEAREST)) > 127
        return torch.from_numpy(mask).float()[None]
