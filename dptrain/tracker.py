"""A JSON-lines experiment tracker for accelerate: ``accelerator.log`` writes one line per call."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from accelerate.tracking import GeneralTracker


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
        self._write({"config": values})

    def log(self, values: dict[str, Any], step: int | None = None, **kwargs: Any) -> None:
        self._write({"step": step, **values})

    def _write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def finish(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
