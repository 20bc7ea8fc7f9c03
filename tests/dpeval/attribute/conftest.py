"""A small synthetic `dpgen evalset` (the real schema) and a tiny DiffusionPrint for the runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict

from dpgen.schema import EVAL, eval_features
from dptrain.model import DiffusionPrint

PATCH = 16
#: (kind, source, label, held out, pixel noise, mean colour): each producer its own statistics.
PRODUCERS = [
    ("pristine", "real", "real", False, 3, (120, 120, 120)),
    ("latent-reconstructed", "tiny-sd21", "sd21", False, 5, (120, 120, 120)),
    ("generated", "tiny-sd21", "sd21", False, 25, (150, 110, 90)),
    ("generated", "tiny-sdxl", "sdxl", False, 12, (80, 130, 170)),
    ("generated", "tiny-flux", "flux", True, 40, (100, 100, 100)),
]


def make_evalset(path: Path, images: int = 6, per_image: int = 4, duplicate: bool = False) -> Path:
    """Write an evaluation set; with ``duplicate`` the first tiny-sd21 generated patch is also
    the first tiny-flux (held-out) patch: the same pixels under a known and an unseen label."""
    rng = np.random.default_rng(0)
    rows = {k: [] for k in eval_features(PATCH)}
    first_sd21 = None
    for kind, source, label, held, noise, colour in PRODUCERS:
        for img in range(images):
            image_id = f"real/photo{img}" if kind != "generated" else f"generated/{source}/{img}"
            for r in range(per_image):
                base = np.array(colour, float)[:, None, None]
                patch = np.clip(base + rng.normal(0, noise, (3, PATCH, PATCH)), 0, 255)
                patch = patch.astype(np.uint8)
                if (
                    duplicate
                    and kind == "generated"
                    and source == "tiny-sd21"
                    and first_sd21 is None
                ):
                    first_sd21 = patch
                if duplicate and source == "tiny-flux" and img == 0 and r == 0:
                    patch = first_sd21
                rows["patch_id"].append(f"{kind}/{source}/{image_id}/r{r}")
                rows["image_id"].append(image_id)
                rows["label"].append(int(kind == "generated"))
                rows["kind"].append(kind)
                rows["source"].append(source)
                rows["source_label"].append(label)
                rows["held_out"].append(held)
                rows["box"].append([0, 0, PATCH, PATCH])
                rows["patch"].append(patch)
    ds = Dataset.from_dict(rows, features=eval_features(PATCH))
    DatasetDict({EVAL: ds}).save_to_disk(str(path))
    return path


@pytest.fixture(scope="session")
def evalset(tmp_path_factory) -> Path:
    return make_evalset(tmp_path_factory.mktemp("attr") / "eval", duplicate=True)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = DiffusionPrint(out_channels=8, width=8, depth=3, embed_dim=8, proj_hidden=8)
    folder = tmp_path_factory.mktemp("attr") / "model"
    model.save_pretrained(folder)
    return folder
