"""Every command of the three tools: every config field has a flag and every flag a field.

The flags are generated from each command's config dataclass (`dpgen.options`); this test is
the guard that no command grows a hand-written flag or a field without one, and that every
config loads from a YAML file with unknown keys rejected.
"""

from __future__ import annotations

import argparse

import pytest
import yaml

from dpeval.cli import TOOL as DPEVAL
from dpgen.cli import TOOL as DPGEN
from dpgen.options import CONFIG_FLAG, PRESET_FLAG, OptionError
from dptrain.config import TOOL as DPTRAIN

#: Arguments of the parser itself, not of a config.
NOT_FIELDS = {"help", "verbose", "command", CONFIG_FLAG, PRESET_FLAG}


def _commands():
    for tool in (DPGEN, DPEVAL):
        for name, command in tool.commands.items():
            yield f"{tool.prog} {name}", command, tool.subparsers()[name]
    yield "dptrain", DPTRAIN.single, DPTRAIN.build_parser()


COMMANDS = list(_commands())


@pytest.mark.parametrize(("name", "command", "parser"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_field_has_a_flag_and_every_flag_a_field(name, command, parser):
    dests = {a.dest for a in parser._actions if not isinstance(a, argparse._SubParsersAction)}
    fields = set(command.config_class().fields())
    assert dests - NOT_FIELDS == fields, name
    for action in parser._actions:
        if action.dest in fields:
            assert action.help, f"{name}: {action.dest} has no help text"


@pytest.mark.parametrize(("name", "command", "parser"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_config_files_load_into_the_same_dataclass(name, command, parser, tmp_path):
    cls = command.config_class()
    # every setting written out (defaults, required ones filled in), read back: the same config
    config = cls.from_values({n: "x" for n in cls.required()})
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(config.to_dict()))
    assert cls.load(good) == config
    # and the same as the command line gives
    argv = [
        a
        for n in cls.required()
        for a in ((cls.flag(n), "x") if not _positional(parser, n) else ("x",))
    ]
    assert command.parse(parser.parse_args(argv), parser) == config
    bad = tmp_path / "bad.yaml"
    bad.write_text("no_such_setting: 1\n")
    with pytest.raises(OptionError, match=r"bad\.yaml: unknown key\(s\) \['no_such_setting'\]"):
        cls.read_file(bad)


def _positional(parser: argparse.ArgumentParser, dest: str) -> bool:
    return any(a.dest == dest and not a.option_strings for a in parser._actions)
