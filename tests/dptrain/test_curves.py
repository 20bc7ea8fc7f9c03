"""dptrain.curves: series read from a metrics file (resume replays win), the PNG written."""

from __future__ import annotations

import json

from PIL import Image

from dptrain.curves import plot_curves, read_metrics


def test_read_metrics_keeps_the_last_value_of_a_replayed_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"config": {"a": 1}}, {"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0},
             {"step": 2, "loss": 2.5, "top1": 0.5, "queue": [1, 2]}, {"step": 3, "loss": 1.0}]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    series = read_metrics(path)
    assert series["loss"] == ([1, 2, 3], [3.0, 2.5, 1.0])
    assert series["top1"] == ([2], [0.5]) and "queue" not in series
    png = plot_curves(path, tmp_path / "c.png", [("loss", ["loss"]), ("never", ["nope"])], "t")
    with Image.open(png) as im:
        assert im.format == "PNG"
