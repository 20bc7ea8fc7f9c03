"""Edge bands against a direct transcription of IMDL-BenCo's EdgeMaskGenerator (SciPy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation

from dpeval.tgif.decoders.edges import edge_map


def cross(width: int) -> np.ndarray:
    footprint = np.zeros((width, width), bool)
    footprint[width // 2, :] = footprint[:, width // 2] = True
    return footprint


def transcription(mask: np.ndarray, width: int) -> np.ndarray:
    """IMDL-BenCo: dilate(mask) and dilate(1 - mask) with a cross kernel, zero padding; edge where both."""
    grown = binary_dilation(mask, cross(width), border_value=0)
    grown_out = binary_dilation(~mask, cross(width), border_value=0)
    return grown & grown_out


@pytest.mark.parametrize("width", [1, 3, 7])
def test_edge_map_matches_the_morphological_definition(width):
    rng = np.random.default_rng(width)
    masks = rng.random((3, 40, 36)) < 0.3
    masks[0] = False
    masks[1, 5:30, 8:20] = True  # a solid block too
    got = edge_map(torch.from_numpy(masks)[:, None], width)[:, 0].numpy()
    for m, g in zip(masks, got, strict=True):
        np.testing.assert_array_equal(g.astype(bool), transcription(m, width))


def test_width_seven_is_a_band_of_three_pixels_each_side():
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    row = edge_map(mask, 7)[0, 0, 16]  # a row through the middle of the square
    assert row[5:11].tolist() == [1.0] * 6 and row[4] == 0 and row[11] == 0
    assert edge_map(torch.zeros(1, 1, 16, 16)).sum() == 0
    assert edge_map(torch.ones(1, 1, 16, 16)).sum() == 0  # the image border is not an edge


def test_bad_width_or_shape_raise():
    with pytest.raises(ValueError, match="odd"):
        edge_map(torch.zeros(1, 1, 8, 8), 6)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        edge_map(torch.zeros(1, 8, 8), 7)
