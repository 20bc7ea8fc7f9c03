"""dpgen.options: flags generated from a config dataclass, files, precedence, errors."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from dpgen.options import OptionError, Options, changed_settings, option


def _grid(text: str) -> tuple[int, int]:
    rows, _, cols = text.partition("x")
    return int(rows), int(cols)


@dataclass(kw_only=True)
class Example(Options):
    out: Path = option(help="output folder")
    inputs: list[str] = option([], help="input files", positional=True)
    size: int = option(64, help="patch size")
    scale: float = option(1.5, help="a factor")
    mode: str = option("a", help="a choice", choices=("a", "b"))
    names: tuple[str, ...] = option(("x", "y"), help="names")
    band: tuple[float, float] = option((0.2, 0.5), help="two floats")
    grid: tuple[int, int] = option((4, 4), help="ROWSxCOLS", parse=_grid)
    paths: dict[str, str] = option({}, help="NAME=PATH")
    cap: int | None = option(None, help="optional")
    fast: bool = option(False, help="a switch")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.size < 1:
            raise OptionError(f"size must be >= 1, got {self.size}")


PRESETS = {"big": {"size": 128, "mode": "b"}}


def parse(argv: list[str], presets=None) -> Example:
    parser = argparse.ArgumentParser()
    Example.add_arguments(parser, presets)
    return Example.from_namespace(parser.parse_args(argv), parser, presets)


def test_every_field_has_a_flag_and_every_flag_a_field():
    parser = Example.add_arguments(argparse.ArgumentParser(), PRESETS)
    dests = {a.dest for a in parser._actions} - {"help", "config", "preset"}
    assert dests == set(Example.fields())


def test_defaults_and_types_from_the_command_line():
    assert parse(["--out", "o", "--names", "a,b", "--names", "c"]).names == ("a", "b", "c")
    c = parse(["--out", "o", "f1", "f2", "--size", "8", "--names", "p,q", "--band", "0.1", "0.3",
               "--grid", "2x3", "--paths", "a=1", "--paths", "b=2", "--cap", "5", "--fast"])  # fmt: skip
    assert c.out == Path("o") and c.inputs == ["f1", "f2"] and c.size == 8
    assert c.names == ("p", "q") and c.band == (0.1, 0.3) and c.grid == (2, 3)
    assert c.paths == {"a": "1", "b": "2"} and c.cap == 5 and c.fast is True
    d = parse(["--out", "o"])
    assert (d.size, d.scale, d.mode, d.names, d.grid, d.paths, d.cap, d.fast) == (
        64, 1.5, "a", ("x", "y"), (4, 4), {}, None, False)  # fmt: skip


def test_precedence_defaults_preset_file_flags(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("size: 32\nnames: [u, v, w]\ngrid: 3x3\npaths: {sd21: /data}\n")
    c = parse(["--out", "o", "--preset", "big", "--config", str(path), "--grid", "1x2"], PRESETS)
    assert c.mode == "b"  # preset
    assert c.size == 32 and c.names == ("u", "v", "w") and c.paths == {"sd21": "/data"}  # file
    assert c.grid == (1, 2)  # flag


def test_json_file_and_round_trip(tmp_path):
    c = parse(["--out", "o", "--names", "p", "--band", "0.1", "0.2"])
    path = tmp_path / "c.json"
    path.write_text(c.to_json())
    assert json.loads(path.read_text())["out"] == "o"
    assert Example.load(path) == c


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("sise: 3\n", r"bad\.yaml: unknown key\(s\) \['sise'\]"),
        ("size: abc\n", r"bad\.yaml: size: .*abc"),
        ("size: 1.5\n", r"bad\.yaml: size: not an integer"),
        ("fast: maybe\n", r"bad\.yaml: fast: not a boolean"),
        ("band: [1]\n", r"bad\.yaml: band: expected a list of 2"),
        ("- a\n- b\n", r"bad\.yaml: expected a mapping"),
        ("size: [\n", r"bad\.yaml: cannot read config file"),
    ],
)
def test_bad_files_name_the_file_and_key(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(OptionError, match=match):
        Example.read_file(path)


def test_bad_values_exit_2_with_one_line(capsys, tmp_path):
    for argv in (["--out", "o", "--mode", "c"], ["--out", "o", "--size", "0"], [],
                 ["--out", "o", "--config", str(tmp_path / "missing.yaml")],
                 ["--out", "o", "--paths", "novalue"]):  # fmt: skip
        with pytest.raises(SystemExit) as info:
            parse(argv)
        assert info.value.code == 2
    err = capsys.readouterr().err
    assert "size must be >= 1" in err and "required: --out" in err
    assert "missing.yaml: cannot read config file" in err and "expected NAME=VALUE" in err


def test_choices_are_checked_on_direct_construction():
    with pytest.raises(OptionError, match="mode: 'z' is not one of"):
        Example(out=Path("o"), mode="z")
    with pytest.raises(ValueError):  # OptionError is a ValueError for Python callers
        Example(out=Path("o"), size=0)


def test_nested_commands_parse_and_run(tmp_path, capsys):
    from dpgen.commands import Command, Tool

    tool = Tool(
        "t",
        "a tool",
        {
            "group fit": Command(config=f"{__name__}:Example", run=f"{__name__}:_run", help="fit"),
            "plain": Command(config=f"{__name__}:Example", run=f"{__name__}:_run", help="plain"),
        },
        groups={"group": "the group"},
    )
    assert tool.main(["group", "fit", "--out", "o", "--size", "3"]) == 0
    assert tool.main(["plain", "--out", "p"]) == 0
    assert capsys.readouterr().out.split() == ["o:3", "p:64"]
    assert set(tool.subparsers()) == {"group fit", "plain"}
    assert tool.main(["plain", "--out", str(tmp_path / "missing-input")]) == 2  # InputError -> 2


def _run(config: Example) -> int:
    if config.out.name == "missing-input":
        raise OptionError(f"{config.out}: no such input")
    print(f"{config.out}:{config.size}")
    return 0


def test_changed_settings_names_only_the_differing_keys() -> None:
    old = {"patch_size": 64, "grid": [4, 4], "generated": {"sd": "/a"}, "seed": 0, "jobs": 4}
    new = {"patch_size": 32, "grid": (4, 4), "generated": {"sd": "/b", "fl": "/c"}, "seed": 0,
           "jobs": 4, "extra": None}  # fmt: skip
    assert changed_settings(old, new) == (
        'patch_size 64 -> 32, generated.sd "/a" -> "/b", generated.fl (none) -> "/c", '
        "extra (none) -> null"
    )
    assert changed_settings(old, old) == "(none)"
    long = changed_settings({"p": "x" * 200}, {"p": "y"}, limit=20)
    assert long == 'p "xxxxxxxxxxxxxxxxxx… -> "y"'
