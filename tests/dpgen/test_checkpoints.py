"""dpgen.checkpoints: complete-only checkpoints, latest = newest complete, pruning after."""

from __future__ import annotations

import json
import logging

import pytest

from dpgen.checkpoints import (
    MARKER,
    CheckpointError,
    atomic_write,
    check_settings,
    incomplete_checkpoints,
    latest_checkpoint,
    list_checkpoints,
    resolve_checkpoint,
    resolve_run,
    save_checkpoint,
)


def _write(payload: str):
    def write(folder):
        (folder / "state.txt").write_text(payload)

    return write


def test_save_writes_a_marked_folder_and_latest_finds_it(tmp_path):
    path = save_checkpoint(tmp_path, 10, _write("ten"), extra={"note": 1})
    assert path.name == "checkpoint-10" and (path / "state.txt").read_text() == "ten"
    marker = json.loads((path / MARKER).read_text())
    assert marker["step"] == 10 and marker["files"] == ["state.txt"] and marker["note"] == 1
    save_checkpoint(tmp_path, 20, _write("twenty"))
    assert latest_checkpoint(tmp_path).name == "checkpoint-20"
    assert not list((tmp_path).glob(".checkpoint-*"))


def test_a_save_killed_midway_leaves_the_previous_checkpoint(tmp_path, caplog):
    save_checkpoint(tmp_path, 10, _write("ten"))

    def dies(folder):
        (folder / "half.bin").write_bytes(b"x")
        raise KeyboardInterrupt  # stands in for SIGKILL: nothing after this line runs

    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 20, dies, total_limit=1)
    # an older version of the toolkit (or a kill) may also leave an unmarked checkpoint-30
    (tmp_path / "checkpoint-30").mkdir()
    (tmp_path / "checkpoint-30" / "pytorch_model.bin").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        latest = latest_checkpoint(tmp_path)
    assert latest.name == "checkpoint-10"  # total_limit=1 did not delete it first
    assert "checkpoint-30" in caplog.text and ".checkpoint-20.tmp" in caplog.text
    assert {p.name for p in incomplete_checkpoints(tmp_path)} == {
        "checkpoint-30",
        ".checkpoint-20.tmp",
    }
    # the next save of step 20 replaces the leftover temporary folder
    save_checkpoint(tmp_path, 20, _write("twenty"), total_limit=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-20"]


def test_total_limit_keeps_the_newest(tmp_path):
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, _write(str(step)), total_limit=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-3", "checkpoint-4"]


def test_resolve(tmp_path):
    assert resolve_checkpoint("latest", tmp_path) is None
    assert resolve_checkpoint("", tmp_path) is None
    good = save_checkpoint(tmp_path, 5, _write("5"))
    assert resolve_checkpoint(str(good), tmp_path) == good
    (tmp_path / "checkpoint-7").mkdir()
    with pytest.raises(CheckpointError, match="checkpoint-7: incomplete checkpoint"):
        resolve_checkpoint(str(tmp_path / "checkpoint-7"), tmp_path)
    with pytest.raises(CheckpointError, match="nope: no such checkpoint folder"):
        resolve_checkpoint(str(tmp_path / "nope"), tmp_path)
    (tmp_path / "other").mkdir()
    with pytest.raises(CheckpointError, match="other: not a checkpoint folder"):
        resolve_checkpoint(str(tmp_path / "other"), tmp_path)


def test_resolve_run_refuses_a_new_run_over_checkpoints(tmp_path):
    assert resolve_run("", tmp_path / "fresh") is None
    save_checkpoint(tmp_path, 5, _write("5"))
    with pytest.raises(CheckpointError, match="holds checkpoint-5 of an earlier run"):
        resolve_run("", tmp_path)
    assert resolve_run("latest", tmp_path) == tmp_path / "checkpoint-5"


def test_check_settings_names_the_changed_one(tmp_path):
    saved = {"lr": 0.1, "epochs": 5}
    good = save_checkpoint(tmp_path, 5, _write("5"), extra={"settings": saved})
    check_settings(good, {"lr": 0.1, "epochs": 9}, frozenset({"epochs"}))
    check_settings(good, {"lr": 0.1, "new_option": 1})  # unknown to the checkpoint: unchecked
    with pytest.raises(CheckpointError, match=r"saved with --lr 0.1, not 0.2.*may change: epochs"):
        check_settings(good, {"lr": 0.2, "epochs": 5}, frozenset({"epochs"}))


def test_atomic_write_replaces_whole_files(tmp_path):
    path = atomic_write(tmp_path / "a.json", "1")
    atomic_write(path, b"22")
    assert path.read_bytes() == b"22" and [p.name for p in tmp_path.iterdir()] == ["a.json"]
