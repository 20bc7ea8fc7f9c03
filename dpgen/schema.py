"""The on-disk contract of a dpgen build: the `datasets.Features` of every split.

A build directory is a `datasets.DatasetDict` saved in `save_to_disk` layout, so
`datasets.load_from_disk(DIR)` returns it whole however many shards or processes wrote it:

- ``pairs``: one row per patch that has positives. Rows sharing ``group_id`` are mutual
  positives (paper Sec. 3.1): a generated image's source patch and its inpainted patch at one
  inside-mask grid position (category ``inpainted``), or a real image's source patch and its K
  regenerated counterparts at one outside-mask position (category ``authentic``).
- ``negatives``: the hard-negative pool: inside-mask patches of real images, the source
  (``authentic``) and each generator's inpainting (``inpainted``). ``group_id`` is ``None``.
- ``images``: one record per source image: how it was cropped, its mask, the generation
  settings, and which grids were used.

dptrain and dpeval import this module (and nothing private of dpgen) to read a build.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from datasets import Array3D, ClassLabel, Features, Image, Sequence, Value

PAIRS = "pairs"
NEGATIVES = "negatives"
IMAGES = "images"
SPLITS = (PAIRS, NEGATIVES, IMAGES)

#: Category of a patch: was the pixel content painted by a generator?
CATEGORIES = ("authentic", "inpainted")
#: Generator label of authentic content. Generator ClassLabels always start with it.
REAL = "real"
#: The view name of an untouched source patch (other views are generator names).
SOURCE_VIEW = "source"
#: Source sets: where the source image came from.
SOURCE_REAL = "real"
SOURCE_GENERATED = "generated"


def generator_names(labels: list[str]) -> list[str]:
    """ClassLabel names for the ``generator`` column: ``real`` first, then labels in order.

    Args:
        labels: generator class labels of the build (e.g. ``["sd21", "sdxl", "flux"]``);
            duplicates are dropped, first occurrence wins.

    Returns:
        ``["real", *labels]`` without duplicates.
    """
    names = [REAL]
    for label in labels:
        if label not in names:
            names.append(label)
    return names


def patch_features(patch_size: int, generators: list[str]) -> Features:
    """Features of the ``pairs`` and ``negatives`` splits.

    Args:
        patch_size: side P of the square patches; stored as a lossless ``(3, P, P)`` uint8
            ``Array3D`` (never re-encoded). Channels first, the layout models consume: Arrow
            stores ``Array3D`` as nested lists with an offset per innermost row, so CHW costs
            13 KB a 64-px patch where HWC costs 29 KB (an offset per pixel).
        generators: names of the ``generator`` ClassLabel, from `generator_names`.
    """
    return Features(
        {
            # "<source_set>/<image_id>/<view>/<region>/r<row>c<col>": stable across reruns.
            "patch_id": Value("string"),
            "image_id": Value("string"),
            "source_set": Value("string"),  # SOURCE_REAL or SOURCE_GENERATED
            "view": Value("string"),  # SOURCE_VIEW or the generator name that painted it
            "generator": ClassLabel(names=generators),
            "category": ClassLabel(names=list(CATEGORIES)),
            "grid_row": Value("int16"),
            "grid_col": Value("int16"),
            "box": Sequence(Value("int32"), length=4),  # (x0, y0, x1, y1) in the prepared image
            "group_id": Value("string"),  # None for negatives
            "patch": patch_feature(patch_size),
        }
    )


def patch_feature(patch_size: int) -> Array3D:
    """The ``patch`` column: ``(3, P, P)`` uint8, RGB, channels first."""
    return Array3D(shape=(3, patch_size, patch_size), dtype="uint8")


def patch_array(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Zero-copy view of a ``patch`` column as ``(N, 3, P, P)`` uint8.

    ``datasets``' numpy/torch formatters return Array3D uint8 as int64 (8x the memory); readers
    on the hot path (dptrain's loader, dpeval's extractors) take the Arrow column instead, e.g.
    ``patch_array(ds.data.column("patch"))`` or ``patch_array(ds.data.fast_gather(idx)["patch"])``.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    storage = column.storage if isinstance(column, pa.ExtensionArray) else column
    n = len(storage)
    if n == 0:
        return np.zeros((0, 3, 0, 0), dtype=np.uint8)
    flat = storage.flatten().flatten().flatten()  # honours slice offsets at every level
    side = len(storage.flatten().flatten()) // (3 * n)
    return flat.to_numpy(zero_copy_only=False).reshape(n, 3, side, side)


IMAGE_FEATURES = Features(
    {
        "image_id": Value("string"),
        "source_set": Value("string"),
        "generator": Value("string"),  # generator that made a generated source; "" for real
        "path": Value("string"),  # the source file, or "" when made by text-to-image
        "original_size": Sequence(Value("int32"), length=2),  # (W, H) after EXIF transpose
        "scale": Value("float32"),  # resize factor applied before cropping
        "crop": Sequence(Value("int32"), length=4),  # (x0, y0, x1, y1) in the resized image
        "size": Sequence(Value("int32"), length=2),  # (W, H) of the prepared image
        "mask": Image(),  # 8-bit L, 0/255, PNG (lossless)
        "mask_policy": Value("string"),  # the policy applied to this image's source set
        "category": Value("string"),  # COCO category of a semantic mask, else ""
        "annotation_id": Value("int64"),  # COCO annotation of a semantic mask, else -1
        "caption_index": Value("int32"),  # the image's caption the prompt quotes (TGIF), else -1
        "source_model": Value("string"),  # per-sample model value (Dragon model.txt), else ""
        "prompt": Value("string"),
        "seed": Value("int64"),  # text-to-image seed of a made source; -1 otherwise
        "source_steps": Value("int32"),  # its text-to-image steps; -1 otherwise
        "source_guidance": Value("float32"),  # its text-to-image guidance; -1 otherwise
        "inpainted_by": Sequence(Value("string")),
        "steps": Sequence(Value("int32")),  # per entry of inpainted_by
        "guidance": Sequence(Value("float32")),  # per entry of inpainted_by
        "grid_inside": Sequence(Value("int32"), length=2),  # (rows, cols) used inside the mask
        "grid_outside": Sequence(Value("int32"), length=2),  # (rows, cols) used outside
        "n_inside": Value("int32"),  # patch positions inside the mask
        "n_outside": Value("int32"),  # patch positions outside the mask
    }
)

#: Features of a `dpgen evalset` (the linear probe's data, paper Sec. 4.1).
EVAL_KINDS = ("generated", "latent-reconstructed", "pristine")


def eval_features(patch_size: int) -> Features:
    """Features of an evaluation set: one split ``eval`` of labelled patches.

    ``label`` is 0 real / 1 generated; ``source`` names the producer (a generator name for
    generated and latent-reconstructed patches, ``real`` for pristine ones) and
    ``source_label`` its class label (the manifest's label, e.g. ``sd21`` for ``tiny-sd21``);
    ``kind`` is one of `EVAL_KINDS`; ``held_out`` marks producers set aside as unseen
    (``dpgen evalset --held-out``).
    """
    return Features(
        {
            "patch_id": Value("string"),
            "image_id": Value("string"),
            "label": ClassLabel(names=["real", "generated"]),
            "kind": Value("string"),
            "source": Value("string"),
            "source_label": Value("string"),
            "held_out": Value("bool"),
            "box": Sequence(Value("int32"), length=4),
            "patch": patch_feature(patch_size),
        }
    )


EVAL = "eval"
