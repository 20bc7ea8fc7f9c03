"""`dpeval`: argument parsing only. Each subcommand hands its arguments to its module."""

from __future__ import annotations

import argparse
import logging
import sys


def _add_probe_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="linear probe on frozen GAP features (paper Table 1)")
    p.set_defaults(func=_run_probe)


def _run_probe(args: argparse.Namespace) -> int:
    raise NotImplementedError


def _add_spectra_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spectra", help="radial power spectra of the four patch types (Fig. 3)")
    p.set_defaults(func=_run_spectra)


def _run_spectra(args: argparse.Namespace) -> int:
    raise NotImplementedError


def _add_tgif_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tgif", help="fine-tune a fusion localizer on TGIF and report F1 (Table 2)")
    p.set_defaults(func=_run_tgif)


def _run_tgif(args: argparse.Namespace) -> int:
    raise NotImplementedError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dpeval", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_probe_parser(sub)
    _add_spectra_parser(sub)
    _add_tgif_parser(sub)
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
