"""WebDataset shards: tar files of samples, in a local snapshot folder or a Hub dataset repo.

Dragon (``lesc-unifi/dragon``, the paper's generated images) is published this way: a dataset
card (``README.md``) whose YAML header declares configs (``ExtraSmall`` ... ``ExtraLarge``), each
mapping splits to shard patterns (``train/dragon_train_0??.tar``); a shard holds samples, each a
run of consecutive tar members sharing a key (``00042.png``, ``00042.model.txt``,
``00042.prompt.cls``). This module resolves a location to its shard files and reads samples in
shard order, one shard at a time, so a small build never opens (or downloads) the shards it does
not need.

One spelling for a local snapshot and the Hub: ``[hf://]DATASET[/CONFIG][:SPLIT]`` where DATASET
is a local folder or a Hub id ``ORG/NAME`` (e.g. ``/snap/dragon/ExtraSmall:train`` and
``lesc-unifi/dragon/ExtraSmall:train``). A Hub shard is fetched whole with
``huggingface_hub.hf_hub_download`` (cached, resumable, and found offline once cached).
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dpgen.sources.refs import HF_PREFIX, IMAGE_EXTENSIONS, SourceError

logger = logging.getLogger(__name__)

CARD = "README.md"
SHARD_SUFFIX = ".tar"
#: Largest non-image member read as a text field (model names, prompts, class ids).
MAX_FIELD_BYTES = 1 << 16
#: A WebDataset key: the member's path up to the first dot of its file name; the rest is the field.
MEMBER = re.compile(r"^((?:.*/)?[^./]+)\.([^/]+)$")
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


@dataclass(frozen=True)
class Shards:
    """The shard files of one split of a WebDataset.

    Attributes:
        location: the location as written (for messages).
        dataset: the local snapshot folder, or the Hub id.
        config: the card's config, or None when the card declares none.
        split: the split.
        files: shard paths relative to the dataset root, in reading order (sorted).
        local: True for a local snapshot, False for a Hub repo.
    """

    location: str
    dataset: str
    config: str | None
    split: str
    files: tuple[str, ...]
    local: bool

    @property
    def name(self) -> str:
        """Short name of the dataset, for image ids (``dragon``)."""
        return Path(self.dataset).name

    def fetch(self, index: int) -> Path:
        """Local path of shard ``index`` (a Hub shard is downloaded on first use, then cached).

        Raises:
            SourceError: the shard cannot be downloaded (or is not cached when offline).
        """
        relative = self.files[index]
        if self.local:
            return Path(self.dataset) / relative
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(self.dataset, relative, repo_type="dataset"))
        except Exception as err:  # offline and not cached, network, auth: one message
            raise SourceError(f"{self.location}: cannot fetch shard {relative}: {err}") from err


# --------------------------------------------------------------------------- the card


def card_configs(text: str, where: str) -> dict[str, dict[str, list[str]]]:
    """``configs`` of a dataset card's YAML header: config -> split -> data-file patterns.

    Follows the Hub's card format: ``data_files`` is a pattern, a list of patterns (split
    ``train``), or a list of ``{split, path}`` where ``path`` is a pattern or a list of them.

    Raises:
        SourceError: a malformed YAML header or ``configs`` entry.
    """
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.DOTALL)
    if not match:
        return {}
    try:
        header = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as err:
        raise SourceError(f"{where}: the card's YAML header does not parse ({err})") from err
    configs: dict[str, dict[str, list[str]]] = {}
    for entry in header.get("configs") or []:
        if not isinstance(entry, dict) or "config_name" not in entry:
            raise SourceError(f"{where}: a configs entry has no config_name: {entry!r}")
        files = entry.get("data_files")
        if isinstance(files, str) or (
            isinstance(files, list) and all(isinstance(f, str) for f in files)
        ):
            files = [{"split": "train", "path": files}]
        splits: dict[str, list[str]] = {}
        for item in files or []:
            paths = item["path"] if isinstance(item["path"], list) else [item["path"]]
            splits.setdefault(str(item["split"]), []).extend(str(p) for p in paths)
        configs[str(entry["config_name"])] = splits
    return configs


def matches(path: str, pattern: str) -> bool:
    """Does repo-relative ``path`` match a data-file ``pattern`` (``*``/``?`` within one path
    component, ``**`` across components, as the Hub's fsspec globs)?"""
    parts, pats = path.split("/"), pattern.split("/")

    def walk(i: int, j: int) -> bool:
        if j == len(pats):
            return i == len(parts)
        if pats[j] == "**":
            return any(walk(k, j + 1) for k in range(i, len(parts) + 1))
        return i < len(parts) and fnmatch.fnmatchcase(parts[i], pats[j]) and walk(i + 1, j + 1)

    return walk(0, 0)


# --------------------------------------------------------------------------- resolving


def split_location(location: str) -> tuple[str, str | None]:
    """``[hf://]SPEC[:SPLIT]`` -> (SPEC, SPLIT or None)."""
    spec = location.removeprefix(HF_PREFIX)
    head, sep, tail = spec.rpartition(":")
    if sep and tail and "/" not in tail:
        return head, tail
    return spec, None


def resolve_shards(location: str) -> Shards | None:
    """The shards a location names, or None when it is not a WebDataset.

    Args:
        location: ``[hf://]DATASET[/CONFIG][:SPLIT]``; DATASET is a local folder (a snapshot of
            a Hub dataset, or any folder of ``.tar`` shards) or a Hub id ``ORG/NAME``. Without
            CONFIG the card's only config is used; without SPLIT, ``train`` (or the only split).

    Returns:
        The split's shards; None when DATASET is neither a WebDataset folder nor a Hub dataset
        whose card names ``.tar`` shards (the caller then reads it with ``datasets``).

    Raises:
        SourceError: one line naming the location: an unknown config or split (listing the
            card's), several configs and none chosen, or no shard matching the card's patterns.
    """
    spec, split = split_location(location)
    dataset, config, local = _dataset_and_config(spec)
    if dataset is None:
        return None
    text = _card_text(dataset, local)
    if text is None and not local:
        return None
    configs = card_configs(text or "", f"{dataset}/{CARD}")
    files = list_files(dataset, local)
    if not configs:
        tars = sorted(f for f in files if f.endswith(SHARD_SUFFIX))
        if config is not None and tars:
            raise SourceError(f"{location}: no config {config!r}: {dataset} has no card configs")
        if not tars:
            return None
        return Shards(location, dataset, None, split or "train", tuple(tars), local)
    config = _choose(config, configs, location, "config")
    split = _choose(split, configs[config], location, "split", prefer="train")
    patterns = configs[config][split]
    if not all(p.endswith(SHARD_SUFFIX) for p in patterns):
        return None
    shards = sorted(f for f in files if any(matches(f, p) for p in patterns))
    if not shards:
        raise SourceError(
            f"{location}: no shard in {dataset} matches {patterns} (config {config}, split {split})"
        )
    return Shards(location, dataset, config, split, tuple(shards), local)


def _dataset_and_config(spec: str) -> tuple[str | None, str | None, bool]:
    """(dataset, config, is_local) of ``DATASET[/CONFIG]``; dataset None if neither local nor Hub.

    ``PARENT/LAST`` is read as a local snapshot's config only when LAST is not itself a local
    path and PARENT's card declares configs: a missing path or a file is not a WebDataset (the
    caller then says what it is), and nothing is listed to find that out.
    """
    if os.path.isdir(spec):
        return spec, None, True
    if os.path.exists(spec):  # a file: not a dataset
        return None, None, True
    parent, _, last = spec.rstrip("/").rpartition("/")
    if parent and os.path.isdir(parent):
        text = _card_text(parent, True)
        if text is not None and card_configs(text, f"{parent}/{CARD}"):
            return parent, last, True
        return None, None, True
    if spec.startswith(("/", ".")):  # a local path (a Hub id starts with a letter or digit)
        return None, None, True
    if HUB_ID.fullmatch(spec):
        return spec, None, False
    if parent and HUB_ID.fullmatch(parent):
        return parent, last, False
    return None, None, False


def _choose(
    name: str | None, options: dict, location: str, what: str, prefer: str | None = None
) -> str:
    if name is not None:
        if name not in options:
            raise SourceError(f"{location}: no {what} {name!r}; the card declares {list(options)}")
        return name
    if len(options) == 1:
        return next(iter(options))
    if prefer in options:
        return prefer
    raise SourceError(
        f"{location}: several {what}s {list(options)}; name one as DATASET/CONFIG:SPLIT"
    )


def _card_text(dataset: str, local: bool) -> str | None:
    if local:
        card = Path(dataset) / CARD
        return card.read_text(encoding="utf-8") if card.is_file() else None
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(dataset, CARD, repo_type="dataset")).read_text("utf-8")
    except Exception as err:  # not on the Hub, offline and not cached, ...: not ours to judge
        logger.debug("%s: no dataset card (%s)", dataset, err)
        return None


def list_files(dataset: str, local: bool) -> tuple[str, ...]:
    """Every file of the dataset, repo-relative ('/'-joined), sorted; hidden ones skipped.

    A Hub repo is listed with ``HfApi.list_repo_files``; offline, from its cached snapshot.
    """
    if not local:
        return _hub_files(dataset)
    root = Path(dataset)
    out = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(folder).relative_to(root)
        out += [(rel / n).as_posix() for n in names if not n.startswith(".")]
    return tuple(sorted(out))


def _hub_files(dataset: str) -> tuple[str, ...]:
    import huggingface_hub

    if not huggingface_hub.is_offline_mode():
        return _repo_files(dataset)
    # Offline, the repo's file list is what the cache holds of its snapshot.
    try:
        folder = huggingface_hub.snapshot_download(
            dataset, repo_type="dataset", local_files_only=True
        )
    except Exception as err:
        raise SourceError(f"{dataset}: offline and not in the Hub cache ({err})") from err
    return list_files(folder, True)


@functools.lru_cache(maxsize=8)
def _repo_files(dataset: str) -> tuple[str, ...]:
    """The Hub's file list of a dataset repo (one request per process)."""
    from huggingface_hub import HfApi

    return tuple(sorted(HfApi().list_repo_files(dataset, repo_type="dataset")))


# --------------------------------------------------------------------------- reading


@dataclass
class Sample:
    """One WebDataset sample, its image left undecoded in the shard.

    Attributes:
        key: the sample's key (member path up to the first dot of its name).
        shard: local path of the shard.
        image: ``(member name, data offset, size)`` of its first image member, or None.
        fields: small non-image members by field (``"model.txt"``), as stripped text.
    """

    key: str
    shard: Path
    image: tuple[str, int, int] | None = None
    fields: dict[str, str] = field(default_factory=dict)


def iter_samples(shard: Path, where: str) -> Iterator[Sample]:
    """The samples of one shard, in member order, reading only headers and small text fields.

    Raises:
        SourceError: the shard is missing or not a readable tar file.
    """
    sample: Sample | None = None
    try:
        with tarfile.open(shard, mode="r:") as tar:
            for member in tar:
                parsed = MEMBER.match(member.name) if member.isfile() else None
                if parsed is None:
                    continue
                key, ext = parsed.groups()
                if sample is None or key != sample.key:
                    if sample is not None:
                        yield sample
                    sample = Sample(key, shard)
                if ("." + ext.lower()).endswith(IMAGE_EXTENSIONS):
                    if sample.image is None:
                        sample.image = (member.name, member.offset_data, member.size)
                elif member.size <= MAX_FIELD_BYTES:
                    data = tar.extractfile(member).read()
                    sample.fields[ext] = data.decode("utf-8", errors="replace").strip()
    except (OSError, tarfile.TarError) as err:
        raise SourceError(f"{where}: cannot read shard {shard} ({err})") from err
    if sample is not None:
        yield sample


def read_member(shard: str, offset: int, size: int) -> bytes:
    """The bytes of one tar member, read directly at its data offset.

    Raises:
        SourceError: the shard is missing or shorter than the member.
    """
    try:
        with open(shard, "rb") as f:
            f.seek(offset)
            data = f.read(size)
    except OSError as err:
        raise SourceError(f"{shard}: cannot read ({err})") from err
    if len(data) != size:
        raise SourceError(f"{shard}: truncated member at offset {offset} ({len(data)} of {size})")
    return data
