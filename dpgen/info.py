"""Counts of a build per split x category x generator, checked against the pairing formulas."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import DatasetDict, load_from_disk

from dpgen.errors import InputError
from dpgen.options import Options, option
from dpgen.presets import PAPER_COUNTS, matching_preset
from dpgen.schema import (
    CATEGORIES,
    IMAGES,
    NEGATIVES,
    PAIRS,
    SOURCE_GENERATED,
    SOURCE_REAL,
    patch_array,
)
from dpgen.sources.generated import describe


@dataclass(kw_only=True)
class InfoConfig(Options):
    """``dpgen info``: counts of a build, checked against the pairing formulas."""

    dir: Path = option(help="a finished dpgen build folder", positional=True)
    json: bool = option(False, help="print the counts as JSON")
    digest: bool = option(
        False, help="also print the SHA-256 of every row (reads every patch: slow on big builds)"
    )


def load_build(out: str | Path) -> DatasetDict:
    """Open a finished build directory as one `DatasetDict` (pairs, negatives, images).

    Raises:
        InputError: naming the directory, when it is not a finished build.
    """
    out = Path(out)
    if not out.exists():
        raise InputError(f"{out}: no such folder")
    if not (out / "dataset_dict.json").exists():
        raise InputError(
            f"{out}: not a finished dpgen build (no dataset_dict.json); rerun the build command"
        )
    return load_from_disk(str(out))


def expected_rows(images) -> dict[str, int]:
    """Rows the pairing formulas predict from the image records (paper Sec. 3.1).

    Generated image: ``2 n_in`` pairs. Real image inpainted by K generators: ``(K+1) n_out``
    pairs and ``(K+1) n_in`` negatives (a VAE round trip has ``n_in = 0``).
    """
    table = images.data
    source_set = np.asarray(table.column("source_set").to_pylist())
    n_in = table.column("n_inside").to_numpy()
    n_out = table.column("n_outside").to_numpy()
    k = np.array([len(v) for v in table.column("inpainted_by").to_pylist()], dtype=np.int64)
    gen = source_set == SOURCE_GENERATED
    real = source_set == SOURCE_REAL
    return {
        PAIRS: int((2 * n_in[gen]).sum() + ((k + 1) * n_out)[real].sum()),
        NEGATIVES: int(((k + 1) * n_in)[real].sum()),
    }


def build_counts(out: str | Path) -> dict[str, Any]:
    """Counts of a build, as plain data (``dpgen info --json``)."""
    dd = load_build(out)
    counts: dict[str, Any] = {}
    for split in (PAIRS, NEGATIVES):
        ds = dd[split]
        cat_names = ds.features["category"].names
        gen_names = ds.features["generator"].names
        cats = ds.data.column("category").to_numpy()
        gens = ds.data.column("generator").to_numpy()
        table: dict[str, dict[str, int]] = {c: {} for c in cat_names}
        for (c, g), n in sorted(Counter(zip(cats.tolist(), gens.tolist(), strict=True)).items()):
            table[cat_names[c]][gen_names[g]] = n
        groups = ds.data.column("group_id").drop_null()
        counts[split] = {
            "rows": len(ds),
            "groups": len(set(groups.to_pylist())),
            "by_category": table,
        }
    images = dd[IMAGES]
    kinds = Counter(
        f"{s}:{g}" if g else s
        for s, g in zip(images["source_set"], images["generator"], strict=True)
    )
    grids = Counter(f"{r}x{c}" for r, c in images["grid_inside"])
    counts[IMAGES] = {
        "rows": len(images),
        "by_source": dict(sorted(kinds.items())),
        "grid_inside": dict(sorted(grids.items())),
        "grid_outside": dict(
            sorted(Counter(f"{r}x{c}" for r, c in images["grid_outside"]).items())
        ),
        "generator_labels": dd[PAIRS].features["generator"].names,
    }
    expected = expected_rows(images)
    counts["expected"] = expected
    counts["formulas_hold"] = all(counts[s]["rows"] == expected[s] for s in expected)
    source_sets = Counter(dd[PAIRS].data.column("source_set").to_pylist())
    counts["patches"] = {
        "generated_pairs": source_sets.get(SOURCE_GENERATED, 0),
        "real_views": source_sets.get(SOURCE_REAL, 0),
        "negatives": counts[NEGATIVES]["rows"],
        "total": counts[PAIRS]["rows"] + counts[NEGATIVES]["rows"],
    }
    provenance = Path(out) / "provenance.json"
    counts["weights"] = (
        json.loads(provenance.read_text()).get("weights", "pretrained")
        if provenance.exists()
        else "pretrained"
    )
    report_path = Path(out) / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    counts["skipped"] = report.get("skipped", [])
    counts["generated_sources"] = report.get("generated_sources", [])
    config = _build_config(out)
    counts["missing"] = missing_categories(counts, config)
    counts["preset"] = matching_preset(config)
    return counts


def _build_config(out: str | Path) -> dict[str, Any]:
    path = Path(out) / "provenance.json"
    return json.loads(path.read_text()).get("config", {}) if path.exists() else {}


def missing_categories(counts: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """What the command asked for and the ``pairs`` lack: ``authentic`` (pairs of real
    images), and ``inpainted/<label>`` for each generator whose generated images were asked for
    (an inpainting build with ``num_generated`` not 0) but gave no pair.

    Args:
        counts: `build_counts`' counts of the build.
        config: the build's settings (``provenance.json`` ``config``).
    """
    by_category = counts[PAIRS]["by_category"]
    authentic, inpainted = CATEGORIES
    missing = [] if by_category.get(authentic) else [authentic]
    if config.get("mode") == "inpaint" and config.get("num_generated") != 0:
        labels = counts[IMAGES]["generator_labels"][1:]
        missing += [f"{inpainted}/{g}" for g in labels if not by_category[inpainted].get(g)]
    return missing


def _patch_line(title: str, n: dict[str, int]) -> str:
    return (
        f"{title}: {n['total']:,} patches = {n['generated_pairs']:,} generated pairs + "
        f"{n['real_views']:,} real views + {n['negatives']:,} hard negatives"
    )


def format_counts(counts: dict[str, Any]) -> str:
    """A plain-text table of `build_counts`."""
    lines = []
    if counts.get("weights") == "random":
        lines.append("RANDOM WEIGHTS: built with --random-weights; not real data")
    lines.append(f"{'split':<10} {'category':<10} {'generator':<12} {'rows':>9}")
    for split in (PAIRS, NEGATIVES):
        for cat, by_gen in counts[split]["by_category"].items():
            for gen, n in by_gen.items():
                lines.append(f"{split:<10} {cat:<10} {gen:<12} {n:>9,}")
        lines.append(
            f"{split:<10} {'total':<10} {'':<12} {counts[split]['rows']:>9,}"
            f"   (expected {counts['expected'][split]:,}; {counts[split]['groups']:,} groups)"
        )
    img = counts[IMAGES]
    lines.append(f"images: {img['rows']} {img['by_source']}")
    lines.append(f"grids inside: {img['grid_inside']}  outside: {img['grid_outside']}")
    lines.append(f"pairing formulas hold: {counts['formulas_hold']}")
    lines.append(_patch_line("patches", counts["patches"]))
    if counts.get("preset") == "paper":
        lines.append(_patch_line("paper (Sec. 3.1) at full scale", PAPER_COUNTS))
    for entry in counts.get("generated_sources", []):
        lines.append(f"generated source: {describe(entry)}")
    if counts.get("missing"):
        lines.append(
            "WARNING: the pairs lack what the command asked for: " + ", ".join(counts["missing"])
        )
    if "digest" in counts:
        lines.append(f"digest: {counts['digest']}")
    if counts["skipped"]:
        lines.append(f"skipped sources: {len(counts['skipped'])}")
        lines += [f"  {s['path'] or s['key']}: {s['reason']}" for s in counts["skipped"]]
    return "\n".join(lines)


def content_digest(out: str | Path) -> str:
    """SHA-256 of a build's rows, split by split, in row order (every column, patches as bytes).

    Two builds have the same digest exactly when ``load_from_disk`` gives the same rows in the
    same order, however their Arrow files were chunked or sharded.
    """
    digest = hashlib.sha256()
    dd = load_build(out)
    for split in (PAIRS, NEGATIVES, IMAGES):
        table = dd[split].data.table
        digest.update(f"{split}:{table.num_rows}:{','.join(table.column_names)}".encode())
        for batch in table.to_batches(max_chunksize=4096):
            for name in batch.schema.names:
                column = batch.column(name)
                if name == "patch":
                    digest.update(patch_array(column).tobytes())
                else:
                    digest.update(json.dumps(column.to_pylist(), default=_bytes_of).encode())
    return digest.hexdigest()


def _bytes_of(value: Any) -> str:
    if isinstance(value, bytes):
        return hashlib.sha256(value).hexdigest()
    raise TypeError(f"cannot digest {type(value).__name__}")
