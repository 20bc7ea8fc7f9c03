"""Frozen feature extractors: DiffusionPrint (folder or Hub id), Noiseprint++, random init.

One interface for every evaluation (the linear probe, TGIF localization): an `Extractor` holds
the DnCNN backbone in eval mode with gradients off, on the chosen device, and turns uint8
patches or images into the forensic map (`Extractor.extract`) or its global average
(`Extractor.pool`, the linear probe's input, paper Sec. 4.1). The projector is never used.

Specs understood by `load_extractor`:

- ``PATH`` or ``owner/name``: a DiffusionPrint saved by dptrain, via ``from_pretrained`` (a
  local folder is checked first, `dpeval.modelfolder`);
- ``noiseprint++:PATH``: Noiseprint++ weights (TruFor's ``.th`` or MMFusion's ``.pth``),
  the baseline;
- ``random`` or ``random:SEED``: a DiffusionPrint at its initialisation (C = 64), the floor a
  trained extractor must beat.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from dpeval import modelfolder
from dpgen.errors import InputError
from dptrain.model import DiffusionPrint

logger = logging.getLogger(__name__)

NOISEPRINT_PREFIX = "noiseprint++:"
RANDOM_SPEC = "random"


class Extractor:
    """A frozen backbone that maps uint8 RGB pixels to features.

    Inputs may be ``(N, 3, H, W)`` (channels first, as dpgen stores patches) or ``(N, H, W, 3)``,
    uint8 numpy arrays or tensors in pixel units; the model's own input scaling applies
    (1/255 DiffusionPrint, 1/256 Noiseprint++).

    Args:
        model: the network; only its backbone runs.
        device: where it runs.
        name: the spec it was loaded from (for reports).
    """

    def __init__(self, model: DiffusionPrint, device: str | torch.device, name: str) -> None:
        self.model = model.eval().requires_grad_(False).to(device)
        self.device = torch.device(device)
        self.name = name

    @property
    def out_channels(self) -> int:
        """C, the channels of the map and the size of pooled features."""
        return self.model.out_channels

    def _to_nchw(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        if isinstance(x, np.ndarray) and not x.flags.writeable:  # e.g. a memory-mapped Arrow view
            x = x.copy()
        x = torch.as_tensor(x)
        if x.ndim != 4 or 3 not in (x.shape[1], x.shape[-1]):
            raise InputError(f"expected (N, 3, H, W) or (N, H, W, 3) pixels, got {tuple(x.shape)}")
        if x.shape[1] != 3:  # channels last
            x = x.permute(0, 3, 1, 2)
        return x.to(self.device, non_blocking=True)

    @torch.no_grad()
    def extract(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The forensic map: (N, 3, H, W) or (N, H, W, 3) pixels -> (N, C, H, W) float32.

        Runs under ``no_grad`` (not ``inference_mode``), so the map can feed a trainable head.
        """
        return self.model.extract(self._to_nchw(x))

    @torch.no_grad()
    def pool(self, x: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Global-average-pooled features: pixels -> (N, C) float32 on the device."""
        return self.model.pool(self._to_nchw(x))

    def pool_all(
        self, patches: np.ndarray, batch_size: int = 1024, progress: bool = True
    ) -> np.ndarray:
        """`pool` over a large array in batches, with a progress bar.

        Args:
            patches: (N, 3, P, P) or (N, P, P, 3) uint8, e.g. ``schema.patch_array(column)``.
            batch_size: patches per forward pass.
            progress: show a tqdm bar (on stderr).

        Returns:
            (N, C) float32 on the CPU.
        """
        out = np.empty((len(patches), self.out_channels), dtype=np.float32)
        for start, stop in tqdm(
            list(_batches(len(patches), batch_size)),
            desc=f"features ({self.name})",
            unit="batch",
            disable=not progress,
        ):
            out[start:stop] = self.pool(np.ascontiguousarray(patches[start:stop])).float().cpu()
        return out

    def fingerprint(self) -> str:
        """SHA-256 of every parameter and buffer (BN statistics included).

        Evaluation asserts it is unchanged afterwards: a frozen extractor must stay frozen.
        """
        digest = hashlib.sha256()
        for key, value in sorted(self.model.state_dict().items()):
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


def _batches(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(start + size, n)


def check_spec(spec: str) -> None:
    """Check ``spec`` without loading any weights: a local folder must hold a DiffusionPrint
    (`dpeval.modelfolder.check_folder`), a Noiseprint++ file must exist, a random seed must be
    an integer. A Hub id is left to `load_extractor`.

    Raises:
        InputError: naming ``spec`` and what is wrong with it.
    """
    if spec.startswith(NOISEPRINT_PREFIX):
        path = Path(spec[len(NOISEPRINT_PREFIX) :])
        if not path.is_file():
            raise InputError(f"{path}: no such Noiseprint++ weights file ({spec})")
    elif spec == RANDOM_SPEC or spec.startswith(RANDOM_SPEC + ":"):
        seed = spec.partition(":")[2]
        if seed and not seed.isdigit():
            raise InputError(f"{spec}: expected random or random:SEED with an integer seed")
    else:
        modelfolder.check_folder(spec, modelfolder.DIFFUSIONPRINT)


def load_extractor(spec: str, device: str | torch.device = "cpu") -> Extractor:
    """Load a frozen extractor from a spec (see the module docstring), checked first
    (`check_spec`) so that a folder that is not a DiffusionPrint gets one clear line.

    Raises:
        InputError: for a spec that names no loadable model (the message names it).
    """
    check_spec(spec)
    if spec.startswith(NOISEPRINT_PREFIX):
        model = DiffusionPrint.from_noiseprint(spec[len(NOISEPRINT_PREFIX) :])
    elif spec == RANDOM_SPEC or spec.startswith(RANDOM_SPEC + ":"):
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG alone
            torch.manual_seed(int(spec.partition(":")[2] or 0))
            model = DiffusionPrint()
    else:
        try:
            model = DiffusionPrint.from_pretrained(spec)  # its stdout line goes to the log
        except Exception as err:  # offline Hub, corrupt weights: one clear message
            reason = " ".join(str(err).split())
            where = "not a local folder, and " if modelfolder.is_hub_id(spec) else ""
            raise InputError(
                f"{spec}: {where}cannot load a DiffusionPrint model: {reason}"
            ) from None
    logger.info("extractor %s: C=%d on %s", spec, model.out_channels, device)
    return Extractor(model, device, spec)
