"""``python -m dptrain`` / ``dptrain`` / ``accelerate launch -m dptrain``: parse, then train."""

from __future__ import annotations

import logging

from .config import config_from_args
from .engine import train


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see ``dptrain --help`` and docs/dptrain.md)."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO
    )
    train(config_from_args(argv))


if __name__ == "__main__":
    main()
