"""Small image folders for the fingerprint tests.

``pattern_sets``: smooth random "real" images and the same images with a fixed faint periodic
pattern added ("generated" by a known fingerprint), for fast tests of the training machinery.
Tests of detection and lineage on real diffusers decoders use `dpeval.fingerprint.demo_data`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SIZE = 32


def smooth_images(n: int, size: int, seed: int) -> np.ndarray:
    """(n, size, size, 3) uint8: coarse noise upsampled bilinearly, plus mild fine noise."""
    g = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = g.integers(40, 215, (size // 8, size // 8, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BILINEAR))
        out.append(np.clip(smooth + g.normal(0, 2, smooth.shape), 0, 255).astype(np.uint8))
    return np.stack(out)


def write_folder(folder: Path, images: np.ndarray, prefix: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(images):
        Image.fromarray(a).save(folder / f"{prefix}{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def pattern_sets(tmp_path_factory) -> dict[str, Path]:
    """real/ and fake/ training folders of 16 images each, plus held-out test_real/ and
    test_fake/ (8 each), 32 px."""
    root = tmp_path_factory.mktemp("pattern")
    tile = np.random.default_rng(99).choice([-8.0, 8.0], (4, 4, 3))
    pattern = np.tile(tile, (SIZE // 4, SIZE // 4, 1))
    folders = {}
    for part, n, seed in (("", 16, 0), ("test_", 8, 1)):
        real = smooth_images(n, SIZE, seed)
        fake = np.clip(smooth_images(n, SIZE, seed + 10) + pattern, 0, 255).astype(np.uint8)
        folders[f"{part}real"] = write_folder(root / f"{part}real", real, "r")
        folders[f"{part}fake"] = write_folder(root / f"{part}fake", fake, "f")
    return folders
