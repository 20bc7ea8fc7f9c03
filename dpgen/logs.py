"""Logging for the command-line tools: the toolkit's own progress first, library noise filtered.

`setup_logging` sends the toolkit's records to stderr with a timestamp, keeps third-party
libraries at WARNING (INFO with ``--verbose``), and drops, by exact message, the warnings that
libraries emit needlessly for what the toolkit does on purpose (`NEEDLESS_WARNINGS`). Warnings
whose cause is the toolkit's own are fixed at their cause instead (see dpgen.tiny).
"""

from __future__ import annotations

import logging

#: Third-party loggers kept at WARNING unless --verbose.
LIBRARIES = ("diffusers", "transformers", "accelerate", "datasets", "huggingface_hub", "PIL")

#: (logger, message prefix) of library warnings about things the toolkit does on purpose.
NEEDLESS_WARNINGS: tuple[tuple[str, str], ...] = ()

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _DropMessages(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.prefixes)


def setup_logging(verbose: bool = False) -> None:
    """Configure the root logger once per process (idempotent)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)
    by_logger: dict[str, list[str]] = {}
    for name, prefix in NEEDLESS_WARNINGS:
        by_logger.setdefault(name, []).append(prefix)
    for name, prefixes in by_logger.items():
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in target.filters):
            target.addFilter(_DropMessages(tuple(prefixes)))
