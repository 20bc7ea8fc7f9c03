"""A small synthetic dpgen build (the real schema, random patches) for the dptrain tests."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from dpgen import schema

PATCH = 32
LABELS = ["sd21", "sdxl", "flux"]
K = len(LABELS)


def make_build(
    path: Path, patch: int = PATCH, groups: int = 12, negatives: int = 96, seed: int = 0
) -> Path:
    """Write a dpgen-format build: per category ``groups`` positive groups and a negative pool.

    Authentic groups: a real image's source patch and its K regenerated views (K + 1 = 4 rows,
    generator ``real``). Inpainted groups: a generated image's source patch and one inpainting
    (2 rows, labelled with the generator). The pool holds both categories.
    """
    rng = np.random.default_rng(seed)
    names = schema.generator_names(LABELS)
    features = schema.patch_features(patch, names)
    rows: dict[str, list] = {k: [] for k in features}

    def add(out, image, view, gen, cat, group, source_set):
        pid = f"{source_set}/{image}/{view}/{'outside' if cat == 0 else 'inside'}/r0c{len(out['patch_id'])}"
        out["patch_id"].append(pid)
        out["image_id"].append(image)
        out["source_set"].append(source_set)
        out["view"].append(view)
        out["generator"].append(names.index(gen))
        out["category"].append(cat)
        out["grid_row"].append(0)
        out["grid_col"].append(len(out["patch_id"]) % 4)
        out["box"].append([0, 0, patch, patch])
        out["group_id"].append(group)
        out["patch"].append(rng.integers(0, 256, (3, patch, patch), dtype=np.uint8))

    for g in range(groups):
        image = f"real{g:03d}"
        add(rows, image, schema.SOURCE_VIEW, schema.REAL, 0, f"a{g}", schema.SOURCE_REAL)
        for label in LABELS:
            add(rows, image, label, schema.REAL, 0, f"a{g}", schema.SOURCE_REAL)
    for g in range(groups):
        label = LABELS[g % K]
        image = f"gen{g:03d}"
        add(rows, image, schema.SOURCE_VIEW, label, 1, f"i{g}", schema.SOURCE_GENERATED)
        add(rows, image, label, label, 1, f"i{g}", schema.SOURCE_GENERATED)
    neg: dict[str, list] = {k: [] for k in features}
    for n in range(negatives):
        label = LABELS[n % K]
        if n % 2 == 0:
            add(neg, f"real{n:03d}", schema.SOURCE_VIEW, schema.REAL, 0, None, schema.SOURCE_REAL)
        else:
            add(neg, f"real{n:03d}", label, label, 1, None, schema.SOURCE_REAL)
    # One record: the trainer never reads ``images``, but an empty split does not reload.
    images = {
        "image_id": ["real000"],
        "source_set": [schema.SOURCE_REAL],
        "generator": [""],
        "path": [""],
        "original_size": [[patch * 4, patch * 4]],
        "scale": [1.0],
        "crop": [[0, 0, patch * 4, patch * 4]],
        "size": [[patch * 4, patch * 4]],
        "mask": [Image.fromarray(np.zeros((patch * 4, patch * 4), np.uint8))],
        "mask_policy": ["random"],
        "category": [""],
        "annotation_id": [-1],
        "caption_index": [-1],
        "source_model": [""],
        "prompt": [""],
        "seed": [0],
        "source_steps": [-1],
        "source_guidance": [-1.0],
        "inpainted_by": [LABELS],
        "steps": [[2] * K],
        "guidance": [[1.0] * K],
        "grid_inside": [[1, 1]],
        "grid_outside": [[4, 4]],
        "n_inside": [1],
        "n_outside": [15],
    }
    build = datasets.DatasetDict(
        {
            schema.PAIRS: datasets.Dataset.from_dict(rows, features=features),
            schema.NEGATIVES: datasets.Dataset.from_dict(neg, features=features),
            schema.IMAGES: datasets.Dataset.from_dict(images, features=schema.IMAGE_FEATURES),
        }
    )
    build.save_to_disk(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default synthetic build (P = 32), shared by the session."""
    return make_build(tmp_path_factory.mktemp("dpgen") / "build")
