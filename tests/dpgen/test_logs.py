"""`dpgen.logs`: needless library warnings dropped by exact message, stdout sent to the log."""

from __future__ import annotations

import logging

from dpgen.logs import NEEDLESS_WARNINGS, setup_logging, stdout_to_log


def _records(name: str, messages: list[str]) -> list[str]:
    """What reaches a handler on library logger ``name`` after `setup_logging`."""
    setup_logging()
    seen: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = seen.append
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        for message in messages:
            logger.warning(message)
    finally:
        logger.removeHandler(handler)
    return [r.getMessage() for r in seen]


def test_only_the_exact_needless_messages_are_dropped():
    name, message = NEEDLESS_WARNINGS[0]
    kept = message.replace("[]", "['decoder']")  # a real float32 module: worth a warning
    assert _records(name, [message, kept, message[:-1]]) == [kept, message[:-1]]


def test_every_needless_warning_is_dropped_on_its_own_logger():
    for name, message in NEEDLESS_WARNINGS:
        assert _records(name, [message]) == []
        assert _records(name + ".other", [message]) == [message]  # not a blanket filter


def test_stdout_to_log_moves_prints_into_records(capsys, caplog):
    logger = logging.getLogger("dpgen.test")
    with caplog.at_level(logging.DEBUG, logger="dpgen.test"), stdout_to_log(logger):
        print("Loading weights from local directory")
        print()
    assert capsys.readouterr().out == ""
    assert [r.getMessage() for r in caplog.records] == ["Loading weights from local directory"]
    assert caplog.records[0].levelno == logging.DEBUG
