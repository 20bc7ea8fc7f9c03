"""The one function that turns patches into features, for every input, known or unseen.

`embed` takes pixels and nothing else: no label, no producer name, no held-out flag reaches an
embedder, so a patch gets the same features whether it is used to fit, to evaluate known
classes, or as an unseen generator's (Proto-LeakNet's public open-set script processed known
and unseen inputs differently and fed pixels to a latent-trained backbone; both are impossible
here: the attributor records its feature spec and `attribute score` rebuilds the same embedder).

Feature specs (``--features``):

- ``gap``: global average pool of the frozen DiffusionPrint map, (N, 1, C) (paper Sec. 4.1);
- ``projector``: the pretraining projector's L2-normalised output, (N, 1, embed_dim);
- ``latent:GENERATOR``: the signal-leak path (`dpeval.attribute.latent`), (N, T, c h w).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from dpgen.errors import InputError
from dpgen.options import OptionError
from dptrain.model import DiffusionPrint

GAP, PROJECTOR, LATENT_PREFIX = "gap", "projector", "latent:"
BACKBONE_FEATURES = (GAP, PROJECTOR)

#: An embedder: (B, 3, P, P) uint8 pixels on the CPU -> (B, T, D) float32.
Embedder = Callable[[torch.Tensor], torch.Tensor]


def check_features(spec: str) -> str:
    """``spec`` if it is ``gap``, ``projector`` or ``latent:GENERATOR``; else OptionError."""
    if spec in BACKBONE_FEATURES or (spec.startswith(LATENT_PREFIX) and spec[len(LATENT_PREFIX) :]):
        return spec
    raise OptionError(f"features: {spec!r} is not gap, projector or latent:GENERATOR")


class BackboneEmbedder:
    """GAP of the frozen DiffusionPrint map or its projector output, T = 1.

    The model runs in eval mode (BN statistics frozen) without gradients.

    Args:
        model: a DiffusionPrint.
        kind: ``gap`` or ``projector``.
        device: where it runs.
    """

    def __init__(self, model: DiffusionPrint, kind: str, device: str | torch.device) -> None:
        if kind not in BACKBONE_FEATURES:
            raise ValueError(f"kind must be one of {BACKBONE_FEATURES}, got {kind!r}")
        self.model = model.eval().requires_grad_(False).to(device)
        self.kind = kind
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.to(self.device)
        h = self.model.pool(x) if self.kind == GAP else self.model(x)
        return h.float().unsqueeze(1).cpu()


def embed(
    embedder: Embedder, patches: np.ndarray, batch_size: int = 512, progress: bool = False
) -> np.ndarray:
    """Features of every patch, in batches; the same function for every input.

    Args:
        embedder: a `BackboneEmbedder` or `dpeval.attribute.latent.LatentEmbedder`.
        patches: (N, 3, P, P) uint8 (e.g. `dpeval.probe.Evalset.patches`).
        batch_size: patches per call.
        progress: show a tqdm bar on stderr.

    Returns:
        (N, T, D) float32.
    """
    if patches.ndim != 4 or patches.shape[1] != 3 or patches.dtype != np.uint8:
        raise InputError(
            f"expected (N, 3, P, P) uint8 patches, got {patches.shape} {patches.dtype}"
        )
    chunks = []
    starts = range(0, len(patches), batch_size)
    for start in tqdm(starts, desc="features", unit="batch", disable=not progress):
        batch = torch.from_numpy(np.array(patches[start : start + batch_size]))  # writable copy
        chunks.append(embedder(batch).numpy())
    return np.concatenate(chunks).astype(np.float32, copy=False)
