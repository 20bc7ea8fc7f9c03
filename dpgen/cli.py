"""`dpgen`: argument parsing only. Each subcommand hands a config to its module."""

from __future__ import annotations

import argparse
import logging
import sys


def _add_evalset_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evalset", help="build a linear-probe evaluation set (paper Sec. 4.1)")
    p.set_defaults(func=_run_evalset)


def _run_evalset(args: argparse.Namespace) -> int:
    raise NotImplementedError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dpgen", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_evalset_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
