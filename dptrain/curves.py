"""Training curves: a PNG of the scalars a run logged to its JSON-lines metrics file.

Every training loop of the toolkit logs through accelerate's trackers, one of which is always
`dptrain.tracker.JsonlTracker` (``metrics.jsonl``); at the end of a run `plot_curves` draws the
chosen scalars against the step, one panel per group, next to the saved model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: no backend or display involved

#: dptrain's panels: (title, metric names) as logged by `dptrain.loss.LossOutput.metrics`.
PRETRAINING_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("loss", ("loss", "infonce")),
    ("generator head", ("cls", "cls_acc")),
    ("similarity", ("pos_sim", "neg_sim")),
    ("top-1 (positive beats every negative)", ("top1",)),
    ("learning rate", ("lr",)),
)


def read_metrics(path: str | Path) -> dict[str, tuple[list[int], list[float]]]:
    """Scalar series of a metrics.jsonl: name -> (steps, values); non-scalars are skipped.

    A resumed run appends to the same file and replays steps after its checkpoint: the last
    value logged for a step wins.
    """
    by_name: dict[str, dict[int, float]] = {}
    for line in Path(path).read_text().splitlines():
        record = json.loads(line)
        step = record.get("step")
        if step is None:
            continue
        for name, value in record.items():
            if name != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                by_name.setdefault(name, {})[int(step)] = float(value)
    return {
        name: (sorted(series), [series[s] for s in sorted(series)])
        for name, series in by_name.items()
    }


def plot_curves(
    metrics_path: str | Path,
    out_png: str | Path,
    panels: Sequence[tuple[str, Sequence[str]]],
    title: str = "",
) -> Path:
    """Draw the ``panels`` (title, metric names) of a metrics file into ``out_png``.

    Panels whose metrics were never logged are left out.

    Returns:
        The PNG's path.
    """
    series = read_metrics(metrics_path)
    shown = [(t, [n for n in names if n in series]) for t, names in panels]
    shown = [(t, names) for t, names in shown if names]
    cols = min(3, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows))
    for i, (panel_title, names) in enumerate(shown):
        ax = fig.add_subplot(rows, cols, i + 1)
        for name in names:
            steps, values = series[name]
            ax.plot(steps, values, label=name, marker="." if len(steps) < 30 else None)
        ax.set_title(panel_title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=100)
    return out_png
