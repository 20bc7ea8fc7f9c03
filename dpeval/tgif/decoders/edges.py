"""Edge maps of a ground-truth mask: the band where the mask meets the background.

DiffIML diffuses the latent of an edge map beside the mask's latent and weights its loss 0.8
(DiffIML Sec. 3; IMDL-BenCo's ``EdgeMaskGenerator`` with ``edge_width=7``). The band is a
morphological one: a pixel is an edge pixel when both the mask and its complement reach it
under a plus-shaped (cross) structuring element of side ``width``. With ``width`` = 7 that is
the pixels within 3 px, along a row or a column, of a pixel of the other class, so the band is
6 px wide, 3 on each side of the boundary. Pixels outside the image belong to neither class, so
the image border itself is not an edge.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: DiffIML's edge width (IMDL-BenCo ``edge_width``), in pixels.
EDGE_WIDTH = 7


def dilate_cross(x: torch.Tensor, width: int) -> torch.Tensor:
    """Binary dilation by a centred cross of side ``width`` (odd): the max of a row and a column pass.

    Args:
        x: (B, 1, H, W) float map in {0, 1}.
        width: side of the cross; odd, >= 1.

    Returns:
        (B, 1, H, W) float map in {0, 1}; outside the image counts as 0.
    """
    r = width // 2
    rows = F.max_pool2d(x, (1, width), stride=1, padding=(0, r))
    cols = F.max_pool2d(x, (width, 1), stride=1, padding=(r, 0))
    return torch.maximum(rows, cols)


def edge_map(mask: torch.Tensor, width: int = EDGE_WIDTH) -> torch.Tensor:
    """The boundary band of ``mask``: dilate(mask) AND dilate(not mask), cross of side ``width``.

    Args:
        mask: (B, 1, H, W) ground truth, 1 (or True) = inpainted, 0 = authentic.
        width: odd side of the cross (DiffIML: 7).

    Returns:
        (B, 1, H, W) float map in {0, 1}, 1 on the band. All zeros for an empty or a full mask.

    Raises:
        ValueError: for an even or non-positive ``width``, or a mask that is not (B, 1, H, W).
    """
    if width < 1 or width % 2 == 0:
        raise ValueError(f"edge width must be odd and positive, got {width}")
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be (B, 1, H, W), got {tuple(mask.shape)}")
    inside = (mask.float() > 0.5).float()
    return dilate_cross(inside, width) * dilate_cross(1.0 - inside, width)
