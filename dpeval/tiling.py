"""Overlapping tiles of a large image and a seamless blend of the maps predicted on them.

An image side longer than the tile is covered by ``n`` tiles of exactly ``tile`` pixels whose
starts are spread evenly from 0 to ``side - tile``, with ``n`` the smallest count that makes
neighbours overlap by at least ``overlap`` pixels; a side that fits is one tile of its own
length. So every tile of an image has the same shape (they batch together).

The blend (`Blender`) is a weighted mean: each tile's map is weighted by a separable window
that ramps linearly from ~0 at the tile's edges to 1 at ``overlap`` pixels inside. Where tiles
overlap the weights cross-fade, so the result is continuous across tile borders (no seam) even
when the model's output near a tile's edge differs from its output in the middle; where only
one tile covers a pixel its value is kept exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    """A tile's box in the image: rows ``y .. y + h - 1``, columns ``x .. x + w - 1``."""

    y: int
    x: int
    h: int
    w: int

    def crop(self, array: np.ndarray) -> np.ndarray:
        """The tile's part of an (H, W, ...) array (a view)."""
        return array[self.y : self.y + self.h, self.x : self.x + self.w]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of the tiles along one side of ``length`` pixels (see the module docstring).

    Raises:
        ValueError: ``overlap`` not in [0, tile / 2].
    """
    if not 0 <= overlap <= tile // 2:
        raise ValueError(f"overlap must be in [0, {tile // 2}] for {tile}-px tiles, got {overlap}")
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def tiles(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Every tile of an image, row by row."""
    h, w = min(height, tile), min(width, tile)
    return [
        Tile(y, x, h, w)
        for y in tile_starts(height, tile, overlap)
        for x in tile_starts(width, tile, overlap)
    ]


def ramp(length: int, overlap: int) -> np.ndarray:
    """1-D window: ``min(1, (i + 0.5) / overlap, (length - i - 0.5) / overlap)``, > 0 everywhere."""
    if overlap == 0:
        return np.ones(length, np.float32)
    i = np.arange(length, dtype=np.float32) + 0.5
    return np.minimum(1.0, np.minimum(i, length - i) / overlap).astype(np.float32)


class Blender:
    """Accumulates tile maps into one (H, W) map.

    Args:
        height, width: the image's size.
        overlap: the overlap the tiles were made with (the window's ramp length).
    """

    def __init__(self, height: int, width: int, overlap: int) -> None:
        self.overlap = overlap
        self.total = np.zeros((height, width), np.float32)
        self.weight = np.zeros((height, width), np.float32)

    def add(self, tile: Tile, values: np.ndarray) -> None:
        """Add a tile's (h, w) map."""
        window = np.outer(ramp(tile.h, self.overlap), ramp(tile.w, self.overlap))
        tile.crop(self.total)[...] += window * values
        tile.crop(self.weight)[...] += window

    def result(self) -> np.ndarray:
        """The blended (H, W) float32 map.

        Raises:
            ValueError: when some pixel was covered by no tile.
        """
        if not (self.weight > 0).all():
            raise ValueError("some pixels were covered by no tile")
        return self.total / self.weight
