"""Results of a TGIF run: the Table 2-shaped markdown, the delta to a baseline, the JSON, a figure.

The table has one row per run, naming its decoder (``mlp`` or ``diffiml``) and its number of
seeds, and like the paper's Table 2 one column per generator under semantic masks and again
under random masks, plus their means; F1 in percent. One table per convention, TGIF's first
(the headline). A run of several seeds (`dpeval.tgif.seeds`) shows mean ± std over seeds in
each cell. With a baseline run, its row and the delta row (this run minus the baseline, in
points; means for several seeds) are added: with the other decoder as the baseline, the delta
between decoders.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dpeval.tgif.evaluate import load_mask, load_rgb
from dpeval.tgif.reader import GENERATORS, MASK_GROUPS, TGIFSample
from dpeval.tgif.seeds import sample_std
from dpgen.errors import InputError

#: The conventions with a table, headline first (every convention is in ``results.json``).
TABLE_CONVENTIONS = ("tgif", "trufor_tgif")
CONVENTION_TITLES = {
    "tgif": "TGIF convention (headline): F1 of map > 0.5 over all pixels, 1 when mask and "
    "prediction are both empty",
    "trufor_tgif": "TruFor convention as TGIF's code computes it: mask border excluded (15-px "
    "erosion / 11-px dilation), max of F1(map) and F1(1 - map), 0 when undefined",
}


def _row_values(f1: dict, convention: str) -> list[float]:
    """Cells in column order: per group, each generator then the mean over generators."""
    values = []
    for group in MASK_GROUPS:
        cells = [f1[convention][g][group] for g in GENERATORS]
        finite = [c for c in cells if c is not None and not math.isnan(c)]
        values += cells + [float(np.mean(finite)) if finite else math.nan]
    return [math.nan if v is None else v for v in values]


def _fmt(value: float, signed: bool = False) -> str:
    if math.isnan(value):
        return "–"
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def decoder_of(results: dict) -> str:
    """The run's decoder; results written before ``--decoder`` existed are the MLP's."""
    return results.get("decoder", "mlp")


def _row(results: dict, convention: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The run's row (mean over seeds) and its std over seeds (None for a single run)."""
    runs = [r["f1"] for r in results.get("per_seed", [])] or [results["f1"]]
    values = np.array([_row_values(f1, convention) for f1 in runs])
    if len(runs) == 1:
        return values[0], None
    return values.mean(axis=0), np.array([sample_std(col) for col in values.T])


def _cells(mean: np.ndarray, std: np.ndarray | None) -> list[str]:
    if std is None:
        return [_fmt(v) for v in mean]
    return [
        _fmt(m) if math.isnan(m) else f"{_fmt(m)} ± {_fmt(s)}"
        for m, s in zip(mean, std, strict=True)
    ]


def markdown_table(results: dict, baseline: dict | None = None) -> str:
    """One table per `TABLE_CONVENTIONS` entry for ``results`` (and ``baseline``), as markdown.

    Args:
        results: a run's results (`results_json`'s structure), one seed or several.
        baseline: another run's results, for its row and the delta row.
    """
    header = ["run", "decoder", "seeds"] + [
        f"{group} {title}" for group in MASK_GROUPS for title in [*GENERATORS.values(), "mean"]
    ]
    named = [(results["name"], results)]
    if baseline is not None:
        named.append((f"{baseline['name']} (baseline)", baseline))
    lines = []
    for conv in TABLE_CONVENTIONS:
        lines += [f"**F1@0.5 (%), {CONVENTION_TITLES[conv]}; fake images, mean per image**", ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        rows = [(name, run, *_row(run, conv)) for name, run in named]
        for name, run, mean, std in rows:
            seeds = str(len(run.get("seeds", [])) or 1)
            cells = [name, decoder_of(run), seeds, *_cells(mean, std)]
            lines.append("| " + " | ".join(cells) + " |")
        if baseline is not None:
            delta = rows[0][2] - rows[1][2]
            cells = ["Δ vs baseline", f"{decoder_of(results)} − {decoder_of(baseline)}", ""]
            lines.append("| " + " | ".join(cells + [_fmt(v, signed=True) for v in delta]) + " |")
        lines.append("")
    return "\n".join(lines)


def _jsonable(value):
    """NaN -> None recursively (strict JSON)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def results_json(results: dict) -> str:
    """Strict JSON of a results dict (NaN written as null)."""
    return json.dumps(_jsonable(results), indent=2)


def load_results(path: str | Path) -> dict:
    """A results JSON written by `dpeval tgif` (for ``--baseline``).

    Raises:
        ValueError: naming the file when it is not such a results file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: cannot read results JSON: {err}") from None
    f1 = data.get("f1") if isinstance(data, dict) else None
    if not isinstance(f1, dict) or not set(TABLE_CONVENTIONS) <= set(f1):
        raise InputError(
            f"{path}: not a dpeval tgif results file of this version (needs 'f1' with "
            f"{', '.join(TABLE_CONVENTIONS)})"
        )
    return data


def qualitative_figure(
    samples: Sequence[TGIFSample], maps: Sequence[np.ndarray], path: str | Path, title: str
) -> Path:
    """Save a figure: per sample, the input with its mask outlined, and the predicted map.

    Args:
        samples: test fakes.
        maps: their (H, W) probability maps, in order.
        path: output image (PNG).
        title: figure title (the run's name).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(samples)
    fig, axes = plt.subplots(rows, 2, figsize=(5, 2.4 * rows), squeeze=False)
    for ax_row, sample, prob in zip(axes, samples, maps, strict=True):
        ax_row[0].imshow(load_rgb(sample.image))
        ax_row[0].contour(load_mask(sample.mask), levels=[0.5], colors="red", linewidths=1)
        ax_row[0].set_title(
            f"{GENERATORS[sample.generator]}, {sample.mask_type}, {sample.image_id}", fontsize=7
        )
        ax_row[1].imshow(prob, vmin=0, vmax=1, cmap="RdBu_r")
        ax_row[1].set_title("map (> 0.5 = inpainted)", fontsize=7)
        for ax in ax_row:
            ax.axis("off")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / rows))  # room for the title
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
