"""`list_images`: the source images of one source set, from a folder or a dataset."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from dpgen.sources.folders import list_folder
from dpgen.sources.hub import HUB_ID, hub_ref, open_split, parse_location
from dpgen.sources.refs import (
    HF_PREFIX,
    IMAGE_EXTENSIONS,
    SourceError,
    SourceRef,
    bundled_photos_dir,
    check_source_set,
)
from dpgen.sources.webdataset import Sample, Shards, iter_samples, resolve_shards

logger = logging.getLogger(__name__)


def list_images(
    location: str | None,
    source_set: str,
    generator: str = "",
    num_images: int | None = None,
    seed: int = 0,
) -> list[SourceRef]:
    """List the source images of one source set.

    Args:
        location: a local folder (searched recursively for `IMAGE_EXTENSIONS`, sorted by
            relative path); a dataset ``hf://ORG/NAME[/CONFIG][:SPLIT]`` (``hf://`` may be left
            out when no local folder has that name; the split defaults to the only split, else
            ``train``; the first ``Image`` column is used, and a string ``prompt``/``caption``/
            ``text`` column fills `SourceRef.prompt`); ``hf:///abs/folder`` reads a local
            script-free dataset (parquet, ...) the same way; a WebDataset (``.tar`` shards, in
            a local snapshot or on the Hub, ``DATASET[/CONFIG][:SPLIT]``, see
            `dpgen.sources.webdataset`) is read in shard order and gives its first
            ``num_images`` samples; None lists the bundled demo photographs.
        source_set: `dpgen.schema.SOURCE_REAL` or `dpgen.schema.SOURCE_GENERATED`.
        generator: generator name recorded on every ref (generated sources).
        num_images: keep at most this many: the first N of a permutation drawn with ``seed``,
            returned in listing order. A larger N keeps every image of a smaller one.
        seed: seed of that permutation.

    Returns:
        The refs, in listing order.

    Raises:
        SourceError: missing or empty folder, unloadable dataset.
    """
    check_source_set(source_set)
    if num_images is not None and num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    if location is None:
        location = str(bundled_photos_dir())
    shards = resolve_shards(location)
    if shards is not None:
        refs = shard_refs(shards, source_set, generator, num_images)
    elif is_folder(location):
        refs = folder_refs(location, source_set, generator)
    else:
        refs = dataset_refs(location, source_set, generator)
    if num_images is not None and num_images < len(refs):
        keep = np.sort(np.random.default_rng(seed).permutation(len(refs))[:num_images])
        refs = [refs[i] for i in keep.tolist()]
    # Neutral wording: callers list fake images and images to localize as SOURCE_REAL too.
    logger.info(
        "%s: %d images listed%s", location, len(refs), f" for {generator}" if generator else ""
    )
    return refs


def is_folder(location: str) -> bool:
    """Is ``location`` read as a folder of image files (not ``hf://``, and an existing path or
    not spelled like a Hub id)?"""
    return not location.startswith(HF_PREFIX) and (
        os.path.exists(location) or not HUB_ID.fullmatch(location)
    )


def check_folder(location: str) -> Path:
    """``location`` as an existing folder.

    Raises:
        SourceError: ``PATH: no such folder``, or a file given where a folder is expected.
    """
    folder = Path(location)
    if folder.is_dir():
        return folder
    if not folder.exists():
        raise SourceError(f"{location}: no such folder")
    if location.lower().endswith(IMAGE_EXTENSIONS):
        raise SourceError(f"{location}: an image file, not a folder; give the folder that holds it")
    raise SourceError(f"{location}: a file, not a folder of images")


def folder_refs(location: str, source_set: str, generator: str) -> list[SourceRef]:
    """Every image under a local folder (see `list_images`).

    Raises:
        SourceError: missing folder, a file, or no image in it.
    """
    folder = check_folder(location)
    entries = list_folder(folder)
    if not entries:
        raise SourceError(f"{location}: no images ({', '.join(IMAGE_EXTENSIONS)}) in folder")
    return [SourceRef(i, p, source_set, generator) for i, p in entries]


def dataset_refs(
    location: str, source_set: str, generator: str, indices: list[int] | None = None
) -> list[SourceRef]:
    """Rows of a Hub (or local script-free) dataset split (see `list_images`).

    Args:
        location: ``[hf://]ORG/NAME[/CONFIG][:SPLIT]`` or ``hf:///abs/folder``.
        source_set: recorded on every ref.
        generator: recorded on every ref.
        indices: the rows to list (default: all).

    Raises:
        SourceError: unloadable dataset or empty split.
    """
    dataset, config, split = parse_location(location)
    rows, _, prompt_column, split = open_split(dataset, config, split)
    if len(rows) == 0:
        raise SourceError(f"{location}: dataset split {split!r} is empty")
    name = Path(dataset).name if os.path.isdir(dataset) else dataset
    prompts = rows[prompt_column] if prompt_column else [""] * len(rows)
    return [
        SourceRef(
            f"{name}:{i}", hub_ref(dataset, config, split, i), source_set, generator, prompts[i]
        )
        for i in (range(len(rows)) if indices is None else indices)
    ]


def shard_refs(
    shards: Shards, source_set: str, generator: str, num_images: int | None
) -> list[SourceRef]:
    """The first ``num_images`` samples with an image of a WebDataset, in shard order; later
    shards are not opened.

    Raises:
        SourceError: an unreadable shard, or no sample with an image.
    """
    refs: list[SourceRef] = []
    for index in range(len(shards.files)):
        for sample in iter_samples(shards.fetch(index), shards.location):
            if sample.image is not None:
                refs.append(sample_ref(shards, sample, source_set, generator))
            if num_images is not None and len(refs) >= num_images:
                return refs
    if not refs:
        raise SourceError(
            f"{shards.location}: no sample with an image in {len(shards.files)} shards"
        )
    return refs


#: Text fields of a WebDataset sample taken as its prompt, first present wins.
PROMPT_FIELDS = ("txt", "prompt.txt", "caption.txt")


def sample_ref(
    shards: Shards, sample: Sample, source_set: str, generator: str, model: str = ""
) -> SourceRef:
    """The ref of a WebDataset sample with an image: id ``<dataset>/<shard>/<key>``, path
    ``<shard.tar>#<member>`` and the image's byte span in the shard."""
    member, offset, size = sample.image
    prompt = next((sample.fields[f] for f in PROMPT_FIELDS if f in sample.fields), "")
    return SourceRef(
        image_id=f"{shards.name}/{sample.shard.stem}/{sample.key}",
        path=f"{sample.shard}#{member}",
        source_set=source_set,
        generator=generator,
        prompt=prompt,
        model=model,
        span=(offset, size),
    )
