"""Complete-only checkpoints, shared by every resumable loop of the toolkit.

A kill at any moment must never leave a state that a resume trusts but cannot load. Two rules:

1. **Write, then rename.** A file is written under a temporary name in its folder and renamed
   into place (`atomic_write`); a checkpoint folder is written as ``.checkpoint-<step>.tmp``,
   gets its marker ``checkpoint.json`` last, and is then renamed to ``checkpoint-<step>``
   (`save_checkpoint`). A rename within one file system is atomic, so a checkpoint either is
   complete or does not exist under its name.
2. **Delete only after the new one is complete.** ``total_limit`` prunes the oldest complete
   checkpoints after the rename, so a kill during a save leaves the previous ones intact.

`latest_checkpoint` returns the newest complete checkpoint and warns about any folder that looks
like one but lacks the marker (written by an older version, or damaged by hand). Users: dptrain's
engine, the TGIF fine-tuning (`dpeval.tgif.finetune`), dpgen's shard ledger (`dpgen.shards`),
and every other loop that resumes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dpgen.errors import InputError

logger = logging.getLogger(__name__)

PREFIX = "checkpoint-"
#: Written last into a checkpoint folder; its presence is what "complete" means.
MARKER = "checkpoint.json"
LATEST = "latest"


class CheckpointError(InputError):
    """A checkpoint named by the user is missing or incomplete."""


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    Readers see either the old file or the complete new one, never a prefix of it.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with open(tmp, "wb") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def step_of(path: Path) -> int | None:
    """The step of a ``checkpoint-<step>`` folder name, else None."""
    tail = path.name[len(PREFIX) :] if path.name.startswith(PREFIX) else ""
    return int(tail) if tail.isdigit() else None


def is_complete(path: Path) -> bool:
    """True for a ``checkpoint-<step>`` folder holding its marker."""
    return step_of(path) is not None and (path / MARKER).is_file()


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest step first."""
    root = Path(root)
    found = [p for p in root.glob(PREFIX + "*") if p.is_dir() and is_complete(p)]
    return sorted(found, key=step_of)


def incomplete_checkpoints(root: str | Path) -> list[Path]:
    """``checkpoint-<step>`` folders without a marker, and leftover temporary folders."""
    root = Path(root)
    named = [p for p in root.glob(PREFIX + "*") if p.is_dir() and step_of(p) is not None]
    temps = [p for p in root.glob(f".{PREFIX}*.tmp") if p.is_dir()]
    return sorted([p for p in named if not is_complete(p)] + temps)


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint under ``root`` (None when there is none).

    Logs a warning for each incomplete one it passes over.
    """
    for path in incomplete_checkpoints(root):
        logger.warning("ignoring incomplete checkpoint %s (no %s)", path, MARKER)
    complete = list_checkpoints(root)
    return complete[-1] if complete else None


def resolve_checkpoint(spec: str, root: str | Path) -> Path | None:
    """What ``--resume-from-checkpoint`` names: ``latest`` in ``root``, or a folder.

    Returns:
        The checkpoint folder; None for ``latest`` (or ``""``) when there is none yet.

    Raises:
        CheckpointError: a named folder that is not a complete checkpoint.
    """
    if not spec:
        return None
    if spec == LATEST:
        return latest_checkpoint(root)
    path = Path(spec)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint folder")
    if not path.is_dir() or step_of(path) is None:
        raise CheckpointError(f"{path}: not a checkpoint folder ({PREFIX}<step>)")
    if not is_complete(path):
        raise CheckpointError(
            f"{path}: incomplete checkpoint (no {MARKER}: the save was interrupted); "
            f"resume from an earlier one or use '{LATEST}'"
        )
    return path


def resolve_run(spec: str, root: str | Path) -> Path | None:
    """`resolve_checkpoint`, refusing to start a new run over an earlier run's checkpoints.

    A new run in a folder that holds checkpoints would mix two runs' logs and overwrite their
    checkpoints step by step; the user either continues the run or picks another folder.

    Raises:
        CheckpointError: as `resolve_checkpoint`, or ``root`` holds complete checkpoints and
            ``spec`` is empty.
    """
    earlier = list_checkpoints(root) if Path(root).is_dir() else []
    if earlier and not spec:
        raise CheckpointError(
            f"{root}: holds {earlier[-1].name} of an earlier run; pass --resume-from-checkpoint "
            f"{LATEST} to continue it, or choose another output folder"
        )
    return resolve_checkpoint(spec, root)


def check_settings(
    checkpoint: Path, now: dict[str, Any], may_change: frozenset[str] = frozenset()
) -> None:
    """Refuse to resume ``checkpoint`` with settings other than those it was saved with.

    Args:
        checkpoint: a complete checkpoint whose marker holds ``settings`` (``extra`` of
            `save_checkpoint`); one without them (older versions) is not checked.
        now: the resuming run's settings, by field name.
        may_change: fields a resume may change (run length, logging, where outputs go).

    Raises:
        CheckpointError: naming the first changed field with its saved and new values.
    """
    saved = read_marker(checkpoint).get("settings", {})
    for key, value in now.items():
        if key in saved and key not in may_change and saved[key] != value:
            flag = "--" + key.replace("_", "-")
            raise CheckpointError(
                f"{checkpoint}: saved with {flag} {saved[key]!r}, not {value!r}; resume with "
                f"the same settings (these may change: {', '.join(sorted(may_change))})"
            )


def read_marker(path: Path) -> dict[str, Any]:
    """The marker's contents: ``step``, ``time``, ``files`` and whatever the writer added."""
    return json.loads((path / MARKER).read_text())


def save_checkpoint(
    root: str | Path,
    step: int,
    write: Callable[[Path], None],
    *,
    total_limit: int = 0,
    is_main_process: bool = True,
    barrier: Callable[[], None] = lambda: None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a complete checkpoint ``root/checkpoint-<step>`` or nothing.

    Collective when several processes run: every process calls it with the same ``step``;
    ``write(folder)`` runs on every process (e.g. ``accelerator.save_state``), the main
    process alone creates, marks, renames and prunes.

    Args:
        root: the run's output folder.
        step: the step the state belongs to.
        write: writes the state into the folder it is given (a temporary one).
        total_limit: keep at most this many complete checkpoints (0: all); the oldest go, and
            only after the new one is in place.
        is_main_process: whether this process creates and renames the folder.
        barrier: waits for every process (``accelerator.wait_for_everyone``).
        extra: JSON-able data stored in the marker.

    Returns:
        The final folder.
    """
    root = Path(root)
    final = root / f"{PREFIX}{step}"
    tmp = root / f".{PREFIX}{step}.tmp"
    if is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # a leftover of a killed save
        tmp.mkdir()
    barrier()
    write(tmp)
    barrier()
    if is_main_process:
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        marker = {"step": step, "time": time.time(), "files": files, **(extra or {})}
        atomic_write(tmp / MARKER, json.dumps(marker, indent=1))
        if final.exists():  # an incomplete folder of that name, or an older save of the step
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        if total_limit > 0:
            for old in list_checkpoints(root)[:-total_limit]:
                logger.info("removing %s (checkpoints total limit %d)", old, total_limit)
                shutil.rmtree(old)
    barrier()
    return final


def save_accelerator_state(
    accelerator: Any,
    root: str | Path,
    step: int,
    *,
    total_limit: int = 0,
    extra: dict[str, Any] | None = None,
) -> Path:
    """`save_checkpoint` of ``accelerator.save_state`` (model, optimizer, scheduler, RNG states
    and registered objects), collective over the accelerator's processes."""
    return save_checkpoint(
        root,
        step,
        lambda folder: accelerator.save_state(str(folder)),
        total_limit=total_limit,
        is_main_process=accelerator.is_main_process,
        barrier=accelerator.wait_for_everyone,
        extra=extra,
    )


def _fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (best effort; not every platform supports it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
