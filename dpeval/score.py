"""`dpeval score`: F1 under every published convention for a folder of predicted maps.

Maps (8- or 16-bit single-channel PNG, or ``.npy``; `dpeval.maps.read_map`) are paired with
ground-truth masks (0/255 or 0/1 single-channel images; `dpeval.maps.read_mask`) by their path
inside ``--pred`` / ``--masks`` without the suffix (``a/x.png`` pairs with ``a/x.png`` or
``a/x.npy``), or by an explicit ``--pairs`` CSV with columns ``pred`` and ``mask`` (paths relative
to ``--pred`` / ``--masks``, or absolute). Nothing is resized: a size mismatch is an error naming
both files, raised before any pixel is scored. A mask without a map is an error (the score would
silently cover a subset); a map without a mask is listed as a warning and left out.

Every metric of `dpeval.metrics` is computed per image at 0.5 and at the image's best threshold
(the same code `dpeval tgif` uses for its tables), then averaged over images (NaN skipped, with
the count of images each mean covers). Outputs in ``--out``: ``per_image.csv``, ``summary.md``
(printed) and ``summary.json`` (printed with ``--json``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from dpeval import maps, metrics
from dpgen.checkpoints import atomic_write
from dpgen.errors import InputError
from dpgen.options import Options, option

logger = logging.getLogger(__name__)

PER_IMAGE, SUMMARY_MD, SUMMARY_JSON = "per_image.csv", "summary.md", "summary.json"


@dataclass(kw_only=True)
class ScoreConfig(Options):
    """``dpeval score``: predicted maps, ground-truth masks, optional pairs CSV, output."""

    pred: str = option(help="folder of maps: 8/16-bit PNG or .npy in [0, 1] (localize's maps/)")
    masks: str = option(help="folder of ground-truth masks: single-channel 0/255 or 0/1 images")
    pairs: str | None = option(
        None, help="CSV with columns pred,mask (relative to --pred / --masks, or absolute)"
    )
    out: str = option("", help="output folder (default: <pred>-score beside --pred)")
    json: bool = option(False, help="print the summary as JSON instead of a markdown table")


@dataclass(frozen=True)
class Pair:
    """A predicted map and its ground-truth mask."""

    pred: Path
    mask: Path


def _keyed(folder: Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    """Files of ``folder`` (recursive, hidden skipped) by relative path without suffix."""
    found: dict[str, Path] = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not name.lower().endswith(suffixes):
                continue
            path = Path(root) / name
            key = path.relative_to(folder).with_suffix("").as_posix()
            if key in found:
                raise InputError(f"{path}: two {what} files for {key!r} ({found[key].name})")
            found[key] = path
    return found


def pair_by_stem(pred: Path, masks: Path) -> list[Pair]:
    """Pairs of maps and masks with the same relative path without suffix.

    Raises:
        InputError: a mask without a map, or no pair at all.
    """
    maps_by_key = _keyed(pred, maps.MAP_SUFFIXES, "map")
    masks_by_key = _keyed(masks, maps.MASK_SUFFIXES, "mask")
    lonely_masks = sorted(set(masks_by_key) - set(maps_by_key))
    if lonely_masks:
        raise InputError(
            f"{masks}: {len(lonely_masks)} mask(s) without a map in {pred}, e.g. "
            f"{masks_by_key[lonely_masks[0]].name}; give --pairs to score a subset"
        )
    lonely_maps = sorted(set(maps_by_key) - set(masks_by_key))
    if lonely_maps:
        logger.warning(
            "%d map(s) without a mask left out, e.g. %s", len(lonely_maps), lonely_maps[:3]
        )
    if not masks_by_key:
        raise InputError(f"{masks}: no mask ({', '.join(maps.MASK_SUFFIXES)}) in folder")
    return [Pair(maps_by_key[k], masks_by_key[k]) for k in sorted(masks_by_key)]


def read_pairs(csv_path: Path, pred: Path, masks: Path) -> list[Pair]:
    """Pairs listed in a CSV with columns ``pred`` and ``mask``.

    Raises:
        InputError: naming the CSV (and its line): unreadable, missing columns, a listed file
            that does not exist, or no row.
    """
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{csv_path}: cannot read pairs CSV ({err})") from None
    reader = csv.DictReader(io.StringIO(text))
    if not {"pred", "mask"} <= set(reader.fieldnames or ()):
        raise InputError(f"{csv_path}: needs columns 'pred' and 'mask', has {reader.fieldnames}")
    pairs = []
    for line, row in enumerate(reader, start=2):
        pair = Pair(pred / (row["pred"] or ""), masks / (row["mask"] or ""))
        for kind, path in (("pred", pair.pred), ("mask", pair.mask)):
            if not row[kind] or not path.is_file():
                raise InputError(f"{csv_path}:{line}: {kind} file {path} does not exist")
        pairs.append(pair)
    if not pairs:
        raise InputError(f"{csv_path}: no pair listed")
    return pairs


def check_sizes(pairs: list[Pair]) -> None:
    """Compare every map's size with its mask's, from the headers.

    Raises:
        InputError: naming both files of the first mismatch.
    """
    for p in pairs:
        a, b = maps.image_size(p.pred), maps.image_size(p.mask)
        if a != b:
            raise InputError(
                f"{p.pred}: map is {a[1]}x{a[0]} but its mask {p.mask} is {b[1]}x{b[0]}; "
                "nothing is resized"
            )


def score_pair(pair: Pair) -> dict:
    """One row of ``per_image.csv``: the files, the size, the mask's area, every metric."""
    prob, mask = maps.read_map(pair.pred), maps.read_mask(pair.mask)
    row = {"pred": str(pair.pred), "mask": str(pair.mask), "height": prob.shape[0],
           "width": prob.shape[1], "mask_fraction": float(mask.mean())}  # fmt: skip
    try:
        row.update(metrics.pixel_metrics(prob, mask))
    except ValueError as err:
        raise InputError(f"{pair.pred}: {err}") from None
    return row


def summarize(rows: list[dict]) -> dict:
    """Per column: the mean over images (NaN skipped) and how many images it covers."""
    out = {}
    for column in metrics.metric_columns():
        mean, n = metrics.mean_over_images(r[column] for r in rows)
        out[column] = {"mean": None if math.isnan(mean) else mean, "n": n}
    return out


def summary_markdown(summary: dict, n_images: int) -> str:
    """A table with one line per convention: its value at 0.5, at the best threshold, and
    how many images each mean covers."""
    lines = [
        f"**Pixel metrics, mean per image over {n_images} image(s); % (NaN images skipped)**",
        "",
        "| convention | @0.5 | @best | images @0.5 / @best | definition |",
        "|---|---|---|---|---|",
    ]
    for key in [*metrics.F1_CONVENTIONS, *metrics.OTHER_METRICS]:
        fixed, best = summary[key + metrics.AT_FIXED], summary[key + metrics.AT_BEST]
        lines.append(
            f"| {key} | {_pct(fixed['mean'])} | {_pct(best['mean'])} | "
            f"{fixed['n']} / {best['n']} | {metrics.describe(key)} |"
        )
    auc = summary[metrics.AUC]
    lines.append(f"| auc | {_pct(auc['mean'])} | – | {auc['n']} | {metrics.AUC_DESCRIPTION} |")
    return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def run_score(config: ScoreConfig) -> tuple[dict, str]:
    """Pair, check, score, write; returns the summary (JSON-able) and its markdown.

    Raises:
        InputError: a bad folder, CSV, pair or file, before any output is written.
    """
    pred, masks = Path(config.pred), Path(config.masks)
    for flag, folder in (("--pred", pred), ("--masks", masks)):
        if not folder.is_dir():
            raise InputError(f"{folder}: {flag} is not a folder")
    pairs = (
        read_pairs(Path(config.pairs), pred, masks) if config.pairs else pair_by_stem(pred, masks)
    )
    check_sizes(pairs)
    rows = [score_pair(p) for p in tqdm(pairs, desc="score", unit="image")]
    summary = {"pred": str(pred), "masks": str(masks), "n_images": len(rows),
               "metrics": summarize(rows),
               "definitions": {c: metrics.describe(c) for c in metrics.metric_columns()}}  # fmt: skip
    table = summary_markdown(summary["metrics"], len(rows))
    out = Path(config.out) if config.out else pred.resolve().parent / f"{pred.resolve().name}-score"
    _write(out, rows, summary, table)
    return summary, table


def _write(out: Path, rows: list[dict], summary: dict, table: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / PER_IMAGE, buf.getvalue())
    atomic_write(out / SUMMARY_MD, table)
    atomic_write(out / SUMMARY_JSON, json.dumps(summary, indent=1))
    logger.info("wrote %s, %s and %s in %s", PER_IMAGE, SUMMARY_MD, SUMMARY_JSON, out)
