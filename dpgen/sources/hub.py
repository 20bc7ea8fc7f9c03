"""Images stored in a dataset: a Hub dataset id or a local script-free dataset folder.

A location ``[hf://]ORG/NAME[/CONFIG][:SPLIT]`` (or ``hf:///abs/folder``) names a split; a row
of it is referenced as ``hf://<dataset>[/<config>]:<split>:<index>`` (`hub_ref`).
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any

from dpgen.sources.refs import HF_PREFIX, SourceError

# ORG/NAME[/CONFIG][:SPLIT], and not an existing folder: read as a Hub dataset id.
HUB_ID = re.compile(r"(?![./])[\w.-]+/[\w.-]+(/[\w.-]+)?(:[\w.-]+)?")


def parse_location(location: str) -> tuple[str, str | None, str | None]:
    """Split ``[hf://]<dataset>[/<config>][:<split>]`` into (dataset, config, split).

    A dataset is an existing local folder (read by `datasets.load_dataset` as a script-free
    dataset, e.g. parquet files) or a Hub id ``ORG/NAME``; a third path component of a Hub id
    is its config.
    """
    spec = location.removeprefix(HF_PREFIX)
    split = None
    if ":" in spec:
        spec, split = spec.rsplit(":", 1)
    if os.path.isdir(spec):
        return spec, None, split
    parts = spec.split("/")
    if len(parts) == 3:
        return f"{parts[0]}/{parts[1]}", parts[2], split
    if len(parts) > 3 or not all(parts):
        raise SourceError(f"{location}: not a folder and not a Hub dataset id ORG/NAME[/CONFIG]")
    return spec, None, split


def hub_ref(dataset: str, config: str | None, split: str, index: int) -> str:
    name = f"{dataset}/{config}" if config else dataset
    return f"{HF_PREFIX}{name}:{split}:{index}"


def parse_hub_ref(ref: str) -> tuple[str, str | None, str, int]:
    spec, split, index = ref.removeprefix(HF_PREFIX).rsplit(":", 2)
    dataset, config, _ = parse_location(spec)
    return dataset, config, split, int(index)


@functools.lru_cache(maxsize=4)
def open_split(
    dataset: str, config: str | None, split: str | None
) -> tuple[Any, str, str | None, str]:
    """Load one split with images undecoded: (rows, image column, prompt column, split name).

    Cached so that `load_image` on consecutive rows does not reload the dataset.
    """
    import datasets  # heavy import, needed only for dataset sources

    where = HF_PREFIX + dataset + (f"/{config}" if config else "") + (f":{split}" if split else "")
    try:
        loaded = datasets.load_dataset(dataset, config, split=split)
    except Exception as err:  # datasets raises many types (FileNotFoundError, HfHubHTTPError..)
        raise SourceError(
            f"{where}: no such local folder, and cannot load it as a dataset: {err}"
        ) from err
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded)
        if len(names) == 1 or "train" in names:
            split = names[0] if len(names) == 1 else "train"
            loaded = loaded[split]
        else:
            raise SourceError(f"{where}: several splits {names}: name one as {where}:SPLIT")
    image_columns = [k for k, v in loaded.features.items() if isinstance(v, datasets.Image)]
    if not image_columns:
        raise SourceError(f"{where}: no Image column in {list(loaded.features)}")
    # Undecoded rows hand us the raw bytes, so files and rows go through one decoder.
    loaded = loaded.cast_column(image_columns[0], datasets.Image(decode=False))
    prompt_column = next(
        (
            k
            for k in ("prompt", "caption", "text")
            if isinstance(loaded.features.get(k), datasets.Value)
            and loaded.features[k].dtype in ("string", "large_string")
        ),
        None,
    )
    return loaded, image_columns[0], prompt_column, split
