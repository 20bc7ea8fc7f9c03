"""The images a fingerprint is trained on or scores: folders, files, or a dpgen build/evalset.

An input spec is one of:

- a folder of images (searched recursively, `dpgen.sources.list_images`), a Hub dataset
  (``hf://ORG/NAME[:SPLIT]``), or, for detection, a single image file;
- ``DATA@NAME``: the patches of one producer in a dpgen build or evalset folder DATA. In an
  evalset, the rows whose ``source`` is NAME (``@real``: the pristine patches; a generator
  name: its generated and latent-reconstructed patches). In a build, ``@real`` is the untouched
  patches of real images (view ``source``) and a generator name the patches it regenerated or
  inpainted (view NAME), from the ``pairs`` and ``negatives`` splits.

Every image is centre-cropped to ``size`` x ``size`` (never resized: resampling would erase the
traces the fingerprint looks for) and kept as uint8; models divide by 255. An image smaller than
``size`` is an error when training (`read_set`) and a per-image error record when detecting
(`iter_images`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import load_from_disk
from PIL import Image

from dpgen import sources
from dpgen.errors import InputError
from dpgen.schema import EVAL, NEGATIVES, PAIRS, REAL, SOURCE_REAL, SOURCE_VIEW, patch_array

logger = logging.getLogger(__name__)

SELECT = "@"


@dataclass
class ImageSet:
    """Centre-cropped images of one spec.

    Attributes:
        spec: where they came from.
        ids: one id per image (file id relative to the folder, or the patch id).
        pixels: (N, 3, S, S) uint8 RGB.
    """

    spec: str
    ids: list[str]
    pixels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, limit: int, seed: int) -> ImageSet:
        """At most ``limit`` images: the first of a seeded permutation, in listing order."""
        keep = _subsample(len(self), limit, seed)
        return ImageSet(self.spec, [self.ids[i] for i in keep], self.pixels[keep])


def centre_crop(image: np.ndarray, size: int, where: str) -> np.ndarray:
    """The central ``size`` x ``size`` window of an (H, W, 3) or (3, H, W) uint8 image, (3, S, S).

    Raises:
        InputError: when the image is smaller than ``size`` on a side.
    """
    chw = image if image.shape[0] == 3 and image.shape[-1] != 3 else image.transpose(2, 0, 1)
    height, width = chw.shape[1:]
    if height < size or width < size:
        raise InputError(f"{where}: {width}x{height} is smaller than --size {size}")
    top, left = (height - size) // 2, (width - size) // 2
    return np.ascontiguousarray(chw[:, top : top + size, left : left + size])


def dataset_selection(spec: str) -> tuple[Path, str] | None:
    """(folder, NAME) for ``DATA@NAME`` with DATA a saved dataset folder, else None."""
    folder, sep, name = spec.rpartition(SELECT)
    if sep and name and (Path(folder) / "dataset_dict.json").is_file():
        return Path(folder), name
    return None


def _dataset_table(folder: Path) -> tuple[str, pa.Table]:
    """("evalset" | "build", the Arrow table of its patch rows)."""
    splits = load_from_disk(str(folder))
    if EVAL in splits:
        return "evalset", splits[EVAL].data.table
    if PAIRS in splits:
        return "build", pa.concat_tables([splits[s].data.table for s in (PAIRS, NEGATIVES)])
    raise InputError(f"{folder}: neither a dpgen build nor an evalset (splits {list(splits)})")


def _producers(kind: str, table: pa.Table) -> list[str]:
    column = "source" if kind == "evalset" else "view"
    names = set(pc.unique(table[column]).to_pylist()) - {SOURCE_VIEW}
    return sorted(names | {REAL})


def _dataset_patches(folder: Path, name: str) -> tuple[list[str], np.ndarray]:
    """Patch ids and (N, 3, P, P) uint8 patches of producer ``name`` (module docstring)."""
    kind, table = _dataset_table(folder)
    if kind == "evalset":
        keep = pc.equal(table["source"], name)
    elif name == REAL:
        keep = pc.and_(
            pc.equal(table["view"], SOURCE_VIEW), pc.equal(table["source_set"], SOURCE_REAL)
        )
    else:
        keep = pc.equal(table["view"], name)
    rows = table.filter(keep)
    if rows.num_rows == 0:
        raise InputError(
            f"{folder}{SELECT}{name}: no patches of {name!r} in this {kind}; "
            f"producers: {', '.join(_producers(kind, table))}"
        )
    return rows["patch_id"].to_pylist(), patch_array(rows["patch"])


def _subsample(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Indices of the first ``limit`` of a seeded permutation, in listing order."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def _file_refs(spec: str) -> list[sources.SourceRef]:
    path = Path(spec)
    if path.is_file():
        return [sources.SourceRef(path.stem, str(path), SOURCE_REAL)]
    if not spec.startswith(sources.HF_PREFIX) and not path.exists():
        raise InputError(f"{spec}: no such file or folder")
    if (path / "dataset_dict.json").is_file():
        kind, table = _dataset_table(path)
        raise InputError(
            f"{spec}: a dpgen {kind}; select a producer with {spec}{SELECT}NAME, NAME one of "
            f"{', '.join(_producers(kind, table))}"
        )
    return sources.list_images(spec, SOURCE_REAL)


def _check_sizes(refs: list[sources.SourceRef], size: int) -> None:
    """Refuse local files smaller than ``size`` from their headers, before decoding any."""
    small = []
    for ref in refs:
        if ref.path.startswith(sources.HF_PREFIX):
            continue
        try:
            with Image.open(ref.path) as image:
                if min(image.size) < size:
                    small.append(f"{ref.path} ({image.size[0]}x{image.size[1]})")
        except OSError as err:
            raise InputError(f"{ref.path}: cannot read image: {err}") from None
    if len(small) == 1:
        raise InputError(f"{small[0]}: smaller than --size {size}")
    if small:
        others = ", ".join(small[1:3]) + (", ..." if len(small) > 3 else "")
        raise InputError(
            f"{small[0]}: smaller than --size {size}, and so are {len(small) - 1} other "
            f"image(s): {others}"
        )


def read_set(spec: str, size: int, limit: int | None = None, seed: int = 0) -> ImageSet:
    """Every image of ``spec``, centre-cropped to ``size`` (at most ``limit``, seeded).

    Raises:
        InputError: a missing or empty input, an undecodable image, or one smaller than
            ``size`` (checked from the file headers before any image is decoded).
    """
    selection = dataset_selection(spec)
    if selection is not None:
        ids, patches = _dataset_patches(*selection)
        if patches.shape[-1] < size:
            raise InputError(f"{spec}: patches of {patches.shape[-1]} px < --size {size}")
        keep = _subsample(len(ids), limit, seed)
        pixels = np.stack([centre_crop(patches[i], size, spec) for i in keep])
        return ImageSet(spec, [ids[i] for i in keep], pixels)
    refs = _file_refs(spec)
    refs = [refs[i] for i in _subsample(len(refs), limit, seed)]
    _check_sizes(refs, size)
    pixels = np.stack(
        [centre_crop(np.asarray(sources.load_image(r)[0]), size, r.path) for r in refs]
    )
    logger.info("%s: %d images, centre-cropped to %d px", spec, len(refs), size)
    return ImageSet(spec, [r.image_id for r in refs], pixels)


def iter_images(specs: list[str], size: int) -> Iterator[tuple[str, np.ndarray | None, str]]:
    """(image, (3, S, S) uint8 or None, error message or "") for every image of ``specs``.

    A spec that cannot be listed raises `InputError` before anything is yielded for it; an
    image that cannot be decoded or is too small yields its error and the iteration goes on.
    """
    for spec in specs:
        selection = dataset_selection(spec)
        if selection is not None:
            ids, patches = _dataset_patches(*selection)
            for image_id, patch in zip(ids, patches, strict=True):
                yield from _cropped(f"{spec}/{image_id}", lambda p=patch: p, size)
            continue
        for ref in _file_refs(spec):
            yield from _cropped(ref.path, lambda r=ref: np.asarray(sources.load_image(r)[0]), size)


def _cropped(where: str, load, size: int) -> Iterator[tuple[str, np.ndarray | None, str]]:
    try:
        yield where, centre_crop(load(), size, where), ""
    except InputError as err:
        yield where, None, str(err)


def describe(image_set: ImageSet) -> dict:
    """JSON-able summary: spec, count, first ids."""
    return {"spec": image_set.spec, "count": len(image_set), "first_ids": image_set.ids[:3]}
