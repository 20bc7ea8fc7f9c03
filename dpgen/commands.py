"""Command-line wiring shared by ``dpgen``, ``dptrain`` and ``dpeval``.

A tool is a table of `Command` entries; each names its config class (an `dpgen.options.Options`
dataclass, which generates the subcommand's flags) and its run function, both by import path, so
that ``dpgen info`` never imports diffusers and ``dpgen --help`` starts in a fraction of a second:
only the chosen subcommand's module is imported.

`main` parses, sets up logging (`dpgen.logs.setup_logging`), runs, and turns bad input
(`dpgen.errors.InputError`, `FileNotFoundError`) into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from dpgen.errors import InputError
from dpgen.logs import setup_logging

#: Exit status of a run stopped by bad input (argparse uses the same for bad flags).
EXIT_INPUT_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose errors are one line (exit status 2), not a usage block.

    A typo'd flag or a bad ``--config`` key then reads like every other bad input of the
    toolkit: ``dpgen build: error: <file>: unknown key(s) [...] (see dpgen build --help)``.
    Subparsers inherit the class.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(
            EXIT_INPUT_ERROR,
            f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n",
        )


def _resolve(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Command:
    """One subcommand.

    Attributes:
        config: ``"module:Class"`` of its `dpgen.options.Options` dataclass.
        run: ``"module:function"`` taking the config and returning the exit status.
        help: one line for the tool's ``--help``.
        description: the subcommand's own ``--help`` text (default: ``help``).
        presets: ``"module:NAME"`` of a mapping of named presets, if the command has any.
    """

    config: str
    run: str
    help: str
    description: str = ""
    presets: str | None = None

    def config_class(self) -> type:
        return _resolve(self.config)

    def preset_table(self) -> Mapping[str, Mapping] | None:
        return _resolve(self.presets) if self.presets else None

    def add_to(self, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Add this command's flags (generated from its config class) to ``parser``."""
        return self.config_class().add_arguments(parser, self.preset_table())

    def parse(self, args: argparse.Namespace, parser: argparse.ArgumentParser) -> Any:
        return self.config_class().from_namespace(args, parser, self.preset_table())

    def __call__(self, config: Any) -> int:
        result = _resolve(self.run)(config)
        return result if isinstance(result, int) else 0  # functions may return their output


@dataclass
class Tool:
    """A command-line tool: a name, a description and its subcommands (or a single command).

    A command named with a space (``"attribute fit"``) is a subcommand of a group
    (``dpeval attribute fit``); the group gets its own ``--help``.
    """

    prog: str
    description: str
    commands: dict[str, Command] = field(default_factory=dict)
    single: Command | None = None  # a tool without subcommands (dptrain)
    groups: dict[str, str] = field(default_factory=dict)  # group name -> its help line

    def build_parser(self, only: str | None = None) -> argparse.ArgumentParser:
        """The tool's parser; with ``only``, the other subcommands get no flags (not imported)."""
        parser = OneLineParser(prog=self.prog, description=self.description)
        parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
        if self.single is not None:
            self.single.add_to(parser)
            return parser
        sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
        nested: dict[str, argparse._SubParsersAction] = {}
        for name, command in self.commands.items():
            group, _, leaf = name.rpartition(" ")
            target = sub
            if group:
                if group not in nested:
                    g = sub.add_parser(group, help=self.groups.get(group, f"{group} commands"))
                    nested[group] = g.add_subparsers(
                        dest="subcommand", required=True, metavar="COMMAND"
                    )
                target = nested[group]
            p = target.add_parser(
                leaf, help=command.help, description=command.description or command.help
            )
            if only in (None, name):
                command.add_to(p)
        return parser

    def subparsers(self) -> dict[str, argparse.ArgumentParser]:
        """Every command's full parser by its name (``"attribute fit"`` for a nested one)."""
        parser = self.build_parser()
        return {name: _subparser(parser, name) for name in self.commands}

    def _chosen(self, argv: Sequence[str]) -> str | None:
        words = [a for a in argv if not a.startswith("-")]
        for name in self.commands:
            if words[: len(name.split())] == name.split():
                return name
        return None

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Parse ``argv``, run the command, map bad input to one line and exit status 2."""
        argv = list(sys.argv[1:] if argv is None else argv)
        parser = self.build_parser(only=None if self.single else self._chosen(argv))
        args = parser.parse_args(argv)
        setup_logging(verbose=args.verbose)
        if self.single is not None:
            command, sub = self.single, parser
        else:
            name = " ".join(filter(None, (args.command, getattr(args, "subcommand", None))))
            command, sub = self.commands[name], _subparser(parser, name)
        config = command.parse(args, sub)
        try:
            return command(config)
        except (InputError, FileNotFoundError) as err:
            logging.getLogger(self.prog).error("%s", _one_line(err))
            return EXIT_INPUT_ERROR


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The parser of command ``name`` (words separated by spaces) inside ``parser``."""
    for word in name.split():
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = actions[0].choices[word]
    return parser


def _one_line(err: BaseException) -> str:
    text = (
        str(err)
        if not isinstance(err, FileNotFoundError) or not err.filename
        else (f"{err.filename}: {err.strerror or 'no such file or directory'}")
    )
    return " ".join(text.split())
