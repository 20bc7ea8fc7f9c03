"""Tiny imitations of the paper's published data, same layouts, for tests and the docs' demos.

- `make_dragon_fixture`: a local snapshot shaped like Dragon (``lesc-unifi/dragon``): its
  dataset card's five configs (``ExtraSmall`` ... ``ExtraLarge``, the real card's shard
  patterns), and WebDataset tar shards whose samples hold ``png``, ``model.txt`` and
  ``prompt.cls``, the models interleaved in every shard as in the real one.
- `make_coco_fixture`: a COCO val2017 root (``val2017/*.jpg``, ``annotations/instances_val2017
  .json`` and ``captions_val2017.json``) of three images with polygons, a compressed RLE, a
  crowd RLE and five captions each, built so that TGIF's semantic rule (`dpgen.semantic`) has
  one decision of each kind to make (see `COCO_EXPECTED`).

- `small_manifests`: the tiny generators' manifests at a smaller resolution and fewer steps.

The images are smooth random scenes, a few hundred pixels wide, so builds run in seconds.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

from dpgen.manifest import MANIFEST_DIR

#: The real card's configs (huggingface.co/datasets/lesc-unifi/dragon, README.md, b97271f).
DRAGON_CARD = """---
license: cc-by-sa-4.0
task_categories:
  - image-classification
pretty_name: DRAGON (dpgen's tiny imitation)
configs:
  - config_name: ExtraSmall
    data_files:
      - split: train
        path: train/xs/dragon_train_xs.tar
      - split: test
        path: test/dragon_test_00.tar
  - config_name: Small
    data_files:
      - split: train
        path: train/dragon_train_000.tar
      - split: test
        path: test/dragon_test_0?.tar
  - config_name: Regular
    data_files:
      - split: train
        path: train/dragon_train_00?.tar
      - split: test
        path: test/dragon_test_0?.tar
  - config_name: Large
    data_files:
      - split: train
        path: train/dragon_train_0??.tar
      - split: test
        path: test/dragon_test_??.tar
  - config_name: ExtraLarge
    data_files:
      - split: train
        path: train/dragon_train_???.tar
      - split: test
        path: test/dragon_test_??.tar
---
# A tiny imitation of DRAGON made by dpgen.fixtures (same card configs and shard layout).
"""
#: Three shards: ExtraSmall reads the first; Regular, Large and ExtraLarge the other two.
DRAGON_SHARDS = (
    "train/xs/dragon_train_xs.tar",
    "train/dragon_train_000.tar",
    "train/dragon_train_001.tar",
)
#: ``model.txt`` values of the imitation: those the shipped sd21, sdxl and flux manifests claim.
DRAGON_MODELS = (
    "stabilityai/stable-diffusion-2-1",
    "stabilityai/stable-diffusion-xl-base-1.0",
    "black-forest-labs/FLUX.1-schnell",
)


def _scene(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A smooth random RGB scene with mild noise."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.uniform(40, 200, 3)
    slope = rng.uniform(-0.5, 0.5, (2, 3))
    img = base + xx[..., None] * slope[0] + yy[..., None] * slope[1]
    img = img + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_dragon_fixture(
    root: str | Path,
    per_shard: int = 6,
    size: tuple[int, int] = (160, 128),
    models: tuple[str, ...] = DRAGON_MODELS,
    seed: int = 0,
) -> Path:
    """Write a Dragon-shaped local snapshot.

    Args:
        root: folder to create (the snapshot root, holding ``README.md`` and the shards).
        per_shard: samples per shard; sample ``i`` of a shard is by ``models[i % len(models)]``.
        size: ``(W, H)`` of every image.
        models: the ``model.txt`` values, interleaved.
        seed: seeds the images.

    Returns:
        ``root``. Read it as ``ROOT/ExtraSmall:train`` (one shard) or ``ROOT/Regular:train``
        (two shards).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text(DRAGON_CARD)
    rng = np.random.default_rng(seed)
    for s, relative in enumerate(DRAGON_SHARDS):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "w") as tar:
            for i in range(per_shard):
                key = f"{s:03d}{i:06d}"
                png = io.BytesIO()
                _scene(rng, *size).save(png, format="PNG")
                _add(tar, f"{key}.png", png.getvalue())
                _add(tar, f"{key}.model.txt", models[i % len(models)].encode())
                _add(tar, f"{key}.prompt.cls", str(int(rng.integers(1000))).encode())
    return root


# --------------------------------------------------------------------------- COCO

COCO_SIZE = (320, 240)
COCO_CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
    {"id": 6, "name": "bus", "supercategory": "vehicle"},
    {"id": 17, "name": "cat", "supercategory": "animal"},
    {"id": 18, "name": "dog", "supercategory": "animal"},
]
#: What TGIF's rule decides on each image: (category, annotation id, caption index).
#: 1: the crowd "person" RLE comes first and is never used; the dog polygon is, with the 3rd
#: caption (the first containing "dog"). 2: the cat is a compressed RLE and no caption says
#: "cat": the first caption. 3: the first car is too small (50x40 px), so car is passed over
#: (TGIF never looks at a category's second instance) and the bus is used, with caption 2.
COCO_EXPECTED = {
    "000000000001": ("dog", 102, 2),
    "000000000002": ("cat", 201, 0),
    "000000000003": ("bus", 303, 1),
}
COCO_CAPTIONS = {
    1: [
        "A crowd of people standing in a park.",
        "People gather on the grass on a sunny day.",
        "A brown dog runs in front of a crowd.",
        "A dog playing near many people.",
        "An outdoor scene with a large group.",
    ],
    2: [
        "A kitten sleeping on a blanket.",
        "A small pet curled up on a bed.",
        "A furry animal resting indoors.",
        "A sleepy kitten on soft fabric.",
        "A striped kitten taking a nap.",
    ],
    3: [
        "A street with traffic in the city.",
        "A red bus parked next to a small car.",
        "Vehicles on a road downtown.",
        "A bus and cars at an intersection.",
        "City traffic on a cloudy day.",
    ],
}


def rle_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE counts of a bool mask: column-major runs, starting with zeros."""
    flat = mask.T.ravel().astype(np.uint8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    return [0, *counts] if flat.size and flat[0] else counts


def encode_rle(mask: np.ndarray) -> str:
    """COCO's compressed RLE string of a bool mask: `rle_string` of its `rle_counts`."""
    return rle_string(rle_counts(mask))


def rle_string(counts: list[int]) -> str:
    """COCO's compressed RLE string of uncompressed counts (cocoapi maskApi.c ``rleToString``,
    the inverse of ``rleFrString``): each count (from the fourth on, minus the count two places
    before) as a little-endian base-32 varint of chars 48..111."""
    out = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr((c | 0x20 if more else c) + 48))
    return "".join(out)


def _polygon(x: float, y: float, w: float, h: float) -> list[float]:
    """A box with one corner cut: a polygon, not a plain rectangle."""
    return [x, y, x + w, y, x + w, y + h - 12, x + w - 12, y + h, x, y + h]


def _annotations(width: int, height: int) -> list[dict]:
    crowd = np.zeros((height, width), dtype=bool)
    crowd[20:220, 10:150] = True
    cat = np.zeros((height, width), dtype=bool)
    cat[60:170, 90:220] = True
    cat[60:80, 90:110] = False
    boxes = {102: (170, 60, 110, 100), 302: (20, 30, 50, 40), 304: (20, 120, 120, 80),
             303: (160, 50, 130, 110)}  # fmt: skip

    def poly(ann_id, image_id, cat_id):
        x, y, w, h = boxes[ann_id]
        return {"id": ann_id, "image_id": image_id, "category_id": cat_id, "iscrowd": 0,
                "segmentation": [_polygon(x, y, w, h)], "bbox": [x, y, w, h],
                "area": float(w * h - 72)}  # fmt: skip

    return [
        {
            "id": 101,
            "image_id": 1,
            "category_id": 1,
            "iscrowd": 1,
            "segmentation": {"size": [height, width], "counts": rle_counts(crowd)},
            "bbox": [10, 20, 140, 200],
            "area": float(crowd.sum()),
        },  # fmt: skip
        poly(102, 1, 18),
        {
            "id": 201,
            "image_id": 2,
            "category_id": 17,
            "iscrowd": 0,
            "segmentation": {"size": [height, width], "counts": encode_rle(cat)},
            "bbox": [90, 60, 130, 110],
            "area": float(cat.sum()),
        },  # fmt: skip
        poly(302, 3, 3),
        poly(303, 3, 6),
        poly(304, 3, 3),
    ]


def make_coco_fixture(root: str | Path, seed: int = 0) -> Path:
    """Write a three-image COCO val2017 root (see the module docstring and `COCO_EXPECTED`).

    Returns:
        ``root``: images in ``root/val2017``, annotation files in ``root/annotations``.
    """
    root = Path(root)
    (root / "val2017").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    width, height = COCO_SIZE
    rng = np.random.default_rng(seed)
    images = []
    for image_id in (1, 2, 3):
        name = f"{image_id:012d}.jpg"
        scene = _scene(rng, width, height)
        ImageDraw.Draw(scene).ellipse((200, 80, 260, 140), fill=(90, 60, 40))
        scene.save(root / "val2017" / name, quality=95)
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
    instances = {
        "images": images,
        "annotations": _annotations(width, height),
        "categories": COCO_CATEGORIES,
    }
    captions = {
        "images": images,
        "annotations": [
            {"id": 1000 * i + k, "image_id": i, "caption": c}
            for i, caps in COCO_CAPTIONS.items()
            for k, c in enumerate(caps)
        ],
    }
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(instances))
    (root / "annotations" / "captions_val2017.json").write_text(json.dumps(captions))
    return root


def small_manifests(
    folder: str | Path,
    names: tuple[str, ...] = ("tiny-sd21", "tiny-sdxl", "tiny-flux"),
    resolution: int = 256,
    steps: tuple[int, int] | None = (2, 2),
) -> list[str]:
    """Copies of shipped manifests at ``resolution`` (and ``steps``), written into ``folder``.

    The tiny generators ship at 512 px; tests, benchmarks and scripts use them smaller.

    Returns:
        The YAML paths, in ``names`` order (what ``--generators`` takes).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        data = yaml.safe_load((MANIFEST_DIR / f"{name}.yaml").read_text())
        data["resolution"] = resolution
        if steps is not None:
            data["steps"] = list(steps)
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(data))
        paths.append(str(folder / f"{name}.yaml"))
    return paths
