"""dptrain.tracker: settings every tracker accepts; the JSON-lines file keeps them structured."""

from __future__ import annotations

import json

from dptrain.tracker import METRICS_FILE, JsonlTracker, log_with, tracker_config


def test_tracker_config_is_scalar_and_the_jsonl_file_structured(tmp_path):
    values = {
        "lr": 1e-3,
        "name": "run",
        "flag": True,
        "none": None,
        "gens": ["flux"],
        "m": {"a": 1},
    }
    flat = tracker_config(values)
    assert all(isinstance(v, bool | str | int | float | type(None)) for v in flat.values())
    tracker = log_with(("jsonl", "tensorboard"), tmp_path)
    assert isinstance(tracker[0], JsonlTracker) and tracker[1:] == ["tensorboard"]
    tracker[0].start()
    tracker[0].store_init_configuration(flat)
    tracker[0].log({"loss": 0.5}, step=1)
    tracker[0].finish()
    lines = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert lines == [{"config": values}, {"step": 1, "loss": 0.5}]
