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
            script-free dataset (parquet, ...) the same way; None lists the bundled demo
            photographs.
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
    if not location.startswith(HF_PREFIX) and (
        os.path.isdir(location) or not HUB_ID.fullmatch(location)
    ):
        folder = Path(location)
        if not folder.is_dir():
            raise SourceError(f"{location}: no such folder")
        entries = list_folder(folder)
        if not entries:
            raise SourceError(f"{location}: no images ({', '.join(IMAGE_EXTENSIONS)}) in folder")
        refs = [SourceRef(i, p, source_set, generator) for i, p in entries]
    else:
        dataset, config, split = parse_location(location)
        rows, _, prompt_column, split = open_split(dataset, config, split)
        if len(rows) == 0:
            raise SourceError(f"{location}: dataset split {split!r} is empty")
        name = Path(dataset).name if os.path.isdir(dataset) else dataset
        prompts = rows[prompt_column] if prompt_column else [""] * len(rows)
        refs = [
            SourceRef(
                f"{name}:{i}",
                hub_ref(dataset, config, split, i),
                source_set,
                generator,
                prompts[i],
            )
            for i in range(len(rows))
        ]
    if num_images is not None and num_images < len(refs):
        keep = np.sort(np.random.default_rng(seed).permutation(len(refs))[:num_images])
        refs = [refs[i] for i in keep.tolist()]
    logger.info("%s: %d %s source images", location, len(refs), source_set)
    return refs
