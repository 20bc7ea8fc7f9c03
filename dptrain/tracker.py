"""A JSON-lines experiment tracker for accelerate: ``accelerator.log`` writes one line per call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from accelerate.tracking import GeneralTracker

#: The JSON-lines metrics file every run writes beside its outputs (the curves come from it).
METRICS_FILE = "metrics.jsonl"


def log_with(report_to: tuple[str, ...] | list[str], output_dir: str | Path) -> list:
    """accelerate's ``log_with`` for a run writing to ``output_dir``: always a `JsonlTracker`
    on `METRICS_FILE`, plus every other tracker named in ``--report-to`` (tensorboard, wandb,
    any accelerate tracker name)."""
    others = [name for name in report_to if name != JsonlTracker.name]
    return [JsonlTracker(Path(output_dir) / METRICS_FILE), *others]


def tracker_config(values: dict[str, Any]) -> dict[str, Any]:
    """A run's settings as every accelerate tracker accepts them: TensorBoard's hparams take
    only bool, str, int, float and None, so lists and mappings become their JSON text."""
    plain = (bool, str, int, float, type(None))
    return {k: v if isinstance(v, plain) else json.dumps(v) for k, v in values.items()}


class JsonlTracker(GeneralTracker):
    """Appends ``{"step": s, **values}`` lines to a file; the run config goes in the first line.

    Appending (not truncating) keeps the history of a resumed run in one file.

    Args:
        path: the ``.jsonl`` file; its folder is created on start.
    """

    name = "jsonl"
    requires_logging_directory = False

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._file = None

    @property
    def tracker(self) -> Any:
        return self._file

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def store_init_configuration(self, values: dict[str, Any]) -> None:
        # `tracker_config` turned lists and mappings into JSON text for TensorBoard; a JSON
        # file keeps them structured.
        self._write({"config": {k: _structured(v) for k, v in values.items()}})

    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        self._write({"step": step, **values})

    def _write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def finish(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _structured(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
