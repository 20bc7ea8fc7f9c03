"""``python -m dptrain`` / ``dptrain`` / ``accelerate launch -m dptrain``: parse, then train."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from .config import TOOL


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (see ``dptrain --help`` and docs/dptrain.md)."""
    return TOOL.main(argv)


if __name__ == "__main__":
    sys.exit(main())
