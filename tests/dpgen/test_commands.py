"""`dpgen.commands`: bad flags and bad ``--config`` files end in one line and exit status 2."""

from __future__ import annotations

import pytest

from dpgen.cli import TOOL


def _run(capsys, argv: list[str]) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as exit_info:
        TOOL.main(argv)
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()


def test_unknown_config_key_is_one_line_naming_the_file(tmp_path, capsys):
    config = tmp_path / "typo.yaml"
    config.write_text("num_imgaes: 3\n")
    code, lines = _run(capsys, ["build", "--config", str(config)])
    assert code == 2
    assert len(lines) == 1
    assert str(config) in lines[0] and "num_imgaes" in lines[0]


def test_unknown_flag_is_one_line(capsys):
    code, lines = _run(capsys, ["build", "--num-imgs", "3"])
    assert code == 2
    assert lines == ["dpgen: error: unrecognized arguments: --num-imgs 3 (see dpgen --help)"]


def test_bad_flag_value_is_one_line_naming_the_flag(capsys):
    code, lines = _run(capsys, ["build", "--num-images", "many"])
    assert code == 2
    assert len(lines) == 1 and "--num-images" in lines[0]
