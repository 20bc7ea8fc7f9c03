"""Each generator's generated images, from datasets that may mix many generators (Dragon).

Dragon (``lesc-unifi/dragon``) mixes 25 models in every shard and names each sample's model in a
per-sample field, ``model.txt``. A generator of the build takes only the samples whose field
value is one of its manifest's ``source_models``; samples of every other model are never used.
`list_generated` reads a location once for all the generators that share it, stops as soon as
each has its images (so a small build reads one shard, not the dataset), and reports how many
samples it saw of each value and how many each generator took.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dpgen.schema import SOURCE_GENERATED
from dpgen.sources.hub import open_split, parse_location
from dpgen.sources.listing import check_folder, dataset_refs, is_folder, list_images, sample_ref
from dpgen.sources.refs import SourceError, SourceRef
from dpgen.sources.webdataset import Shards, iter_samples, resolve_shards

logger = logging.getLogger(__name__)

#: Value counted for samples that lack the field.
MISSING = "<missing>"


@dataclass(frozen=True)
class GeneratedSource:
    """Where one generator's generated images come from.

    Attributes:
        name: the generator (manifest name), recorded on its refs.
        location: a folder, a WebDataset (`dpgen.sources.webdataset`) or a Hub dataset, as
            `list_images` reads them.
        field: the per-sample field naming each image's model (Dragon: ``model.txt``; a column
            of a Hub dataset); "" when every image of ``location`` is this generator's.
        models: the values of ``field`` that are this generator's.
        required: the field was asked for explicitly (``--generated-field``): a dataset without
            it is an error. A manifest's default field applies only where the dataset has it (a
            plain image folder has no per-sample field).
    """

    name: str
    location: str
    field: str = ""
    models: tuple[str, ...] = ()
    required: bool = False


@dataclass
class GeneratedListing:
    """`list_generated`'s result.

    Attributes:
        refs: generator name -> its source images, in reading order.
        report: one entry per location: samples read, shards read, count per field value, and
            per generator its values and the number of images it took (JSON-able).
    """

    refs: dict[str, list[SourceRef]] = field(default_factory=dict)
    report: list[dict[str, Any]] = field(default_factory=list)


def list_generated(sources: list[GeneratedSource], count: int, seed: int = 0) -> GeneratedListing:
    """List each generator's generated images.

    Args:
        sources: one per generator that reads its images from a dataset.
        count: images wanted per generator. A WebDataset gives the first ``count`` samples of
            each generator's models in shard order (later shards are not opened); a folder or a
            Hub dataset the seeded subset of `list_images`.
        seed: seed of that subset.

    Returns:
        The refs per generator and the per-location report.

    Raises:
        SourceError: one line naming the location: several generators share a location without
            a field; a generator names no model values; a value claimed by two generators; no
            sample of a generator's values (listing the values found); a missing column.
    """
    listing = GeneratedListing()
    groups: dict[str, list[GeneratedSource]] = {}
    for source in sources:
        groups.setdefault(source.location, []).append(source)
    for location, group in groups.items():
        field_name = _field_of(location, group)
        if not field_name:
            if len(group) > 1:
                raise SourceError(
                    f"{location}: given for {[g.name for g in group]} without a per-sample model "
                    "field; pass --generated-field (Dragon: model.txt) so each takes its own"
                )
            refs = list_images(location, SOURCE_GENERATED, group[0].name, count, seed)
            listing.refs[group[0].name] = refs
            listing.report.append(_entry(location, "", Counter(), group, {group[0].name: refs}))
            continue
        _check_claims(location, field_name, group)
        shards = resolve_shards(location)
        if shards is not None:
            refs, entry = _from_shards(shards, field_name, group, count)
        else:
            refs, entry = _from_rows(location, field_name, group, count, seed)
        _check_found(location, field_name, group, refs, entry["by_value"])
        listing.refs.update(refs)
        listing.report.append(entry)
    for entry in listing.report:
        logger.info("%s", describe(entry))
    return listing


def describe(entry: dict[str, Any]) -> str:
    """One line of a report entry, e.g. for the log and ``dpgen info``."""
    values = ", ".join(f"{v} {n}" for v, n in entry["by_value"].items())
    taken = ", ".join(f"{g} {e['taken']}" for g, e in entry["by_generator"].items())
    read = f"read {entry['samples_read']} samples"
    if entry.get("shards_total"):
        read += f" from {entry['shards_read']} of {entry['shards_total']} shards"
    if not entry["field"]:
        return f"{entry['location']}: taken: {taken}"
    return f"{entry['location']}: {read}; {entry['field']} values: {values}; taken: {taken}"


def _field_of(location: str, group: list[GeneratedSource]) -> str:
    """The per-sample model field the generators sharing ``location`` select by ("" for none).

    Raises:
        SourceError: they name different fields, or a required field the dataset lacks.
    """
    fields = {s.field for s in group}
    if len(fields) > 1:
        raise SourceError(
            f"{location}: its generators select by different fields "
            f"{ {s.name: s.field for s in group} }; pass --generated-field"
        )
    (field_name,) = fields
    if not field_name:
        return ""
    present = _fields_present(location)
    if field_name in present:
        return field_name
    if any(s.required for s in group):
        raise SourceError(
            f"{location}: no per-sample field {field_name!r}; fields: {sorted(present)}"
        )
    return ""


def _fields_present(location: str) -> set[str]:
    """The per-sample fields of a dataset: a WebDataset's first sample's, a Hub dataset's
    columns; none for a plain image folder."""
    shards = resolve_shards(location)
    if shards is not None:
        first = next(iter_samples(shards.fetch(0), location), None)
        return set(first.fields) if first is not None else set()
    if is_folder(location):
        check_folder(location)  # a missing folder says so, not "no per-sample field"
        return set()
    return set(open_split(*parse_location(location))[0].column_names)


def _check_claims(location: str, field_name: str, group: list[GeneratedSource]) -> None:
    owner: dict[str, str] = {}
    for source in group:
        if not source.models:
            raise SourceError(
                f"{location}: generator {source.name} names no source_models for {field_name} "
                f"(its manifest's source_models); values found: "
                f"{sorted(_first_values(location, field_name))}"
            )
        for value in source.models:
            if value in owner:
                raise SourceError(
                    f"{location}: {field_name} value {value!r} is claimed by {owner[value]} and "
                    f"{source.name}"
                )
            owner[value] = source.name


def _check_found(location, field_name, group, refs, by_value) -> None:
    for source in group:
        if not refs[source.name]:
            raise SourceError(
                f"{location}: no sample of {source.name} ({field_name} in {list(source.models)}); "
                f"{field_name} values found: {sorted(by_value)}"
            )


def _first_values(location: str, field_name: str) -> set[str]:
    """Field values of the first shard (or of the whole dataset), to name them in an error."""
    shards = resolve_shards(location)
    if shards is None:
        rows = open_split(*parse_location(location))[0]
        return {str(v) for v in rows[field_name]} if field_name in rows.column_names else set()
    samples = iter_samples(shards.fetch(0), location)
    return {s.fields.get(field_name, MISSING) for s in samples}


def _from_shards(
    shards: Shards, field_name: str, group: list[GeneratedSource], count: int
) -> tuple[dict[str, list[SourceRef]], dict[str, Any]]:
    """Read shards in order until every generator of ``group`` has ``count`` samples."""
    owner = {value: source.name for source in group for value in source.models}
    refs: dict[str, list[SourceRef]] = {source.name: [] for source in group}
    by_value: Counter[str] = Counter()
    read = 0
    for index in range(len(shards.files)):
        for sample in iter_samples(shards.fetch(index), shards.location):
            value = sample.fields.get(field_name, MISSING)
            by_value[value] += 1
            name = owner.get(value)
            if name is not None and sample.image is not None and len(refs[name]) < count:
                refs[name].append(sample_ref(shards, sample, SOURCE_GENERATED, name, value))
            if all(len(r) >= count for r in refs.values()):
                break
        read = index + 1
        if all(len(r) >= count for r in refs.values()):
            break
        if index == 0 and len(shards.files) > 1:
            _warn_absent(shards.location, field_name, group, refs, by_value)
    entry = _entry(shards.location, field_name, by_value, group, refs)
    entry.update(shards_read=read, shards_total=len(shards.files))
    return refs, entry


def _warn_absent(location, field_name, group, refs, by_value) -> None:
    for source in group:
        if not refs[source.name]:
            logger.warning(
                "%s: no %s sample in the first shard (%s in %s; values there: %s); reading on",
                location, source.name, field_name, list(source.models), sorted(by_value),
            )  # fmt: skip


def _from_rows(
    location: str, field_name: str, group: list[GeneratedSource], count: int, seed: int
) -> tuple[dict[str, list[SourceRef]], dict[str, Any]]:
    """A Hub (or local script-free) dataset: the field is a column; a seeded subset per generator."""
    dataset, config, split = parse_location(location)
    rows = open_split(dataset, config, split)[0]
    if field_name not in rows.column_names:
        raise SourceError(f"{location}: no column {field_name!r}; columns: {rows.column_names}")
    values = [str(v) for v in rows[field_name]]
    refs = {}
    for source in group:
        indices = [i for i, v in enumerate(values) if v in source.models]
        if len(indices) > count:
            keep = np.sort(np.random.default_rng(seed).permutation(len(indices))[:count])
            indices = [indices[i] for i in keep.tolist()]
        listed = dataset_refs(location, SOURCE_GENERATED, source.name, indices)
        refs[source.name] = [
            dataclasses.replace(r, model=values[i]) for r, i in zip(listed, indices, strict=True)
        ]
    entry = _entry(location, field_name, Counter(values), group, refs)
    return refs, entry


def _entry(location, field_name, by_value, group, refs) -> dict[str, Any]:
    return {
        "location": location,
        "field": field_name,
        "samples_read": sum(by_value.values()) if field_name else len(refs[group[0].name]),
        "by_value": dict(sorted(by_value.items())),
        "by_generator": {
            s.name: {"models": list(s.models), "taken": len(refs[s.name])} for s in group
        },
    }
