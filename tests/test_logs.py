"""Log lines: JSON objects with context, text for people, thresholds, and other libraries routed through."""

from __future__ import annotations

import io
import logging

import orjson
import pytest

from tetrapipe import logs


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    logs._state.format, logs._state.threshold = "text", logs.LEVELS["info"]
    root.handlers[:] = handlers
    root.setLevel(level)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_text_on_a_terminal_and_json_elsewhere(monkeypatch) -> None:
    monkeypatch.delenv("TETRAPIPE_LOG_FORMAT", raising=False)
    assert logs.resolve_format("auto", Tty()) == "text"
    assert logs.resolve_format(None, io.StringIO()) == "json"
    monkeypatch.setenv("TETRAPIPE_LOG_FORMAT", "text")
    assert logs.resolve_format(None, io.StringIO()) == "text"
    assert logs.resolve_format("json", Tty()) == "json"  # the flag wins over the environment
    with pytest.raises(ValueError, match="auto, json or text"):
        logs.resolve_format("xml")


def test_json_lines_carry_level_message_and_context() -> None:
    logs.configure("json", "info")
    out = io.StringIO()
    logs.emit(out, "warning", 'bad input at line 3: "quoted"\nand a newline', position="line 3", reason="x")
    logs.emit(out, "debug", "not shown at info")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    record = orjson.loads(lines[0])
    assert record["level"] == "warning" and record["logger"] == "tetrapipe"
    assert record["message"] == 'bad input at line 3: "quoted"\nand a newline'
    assert (record["position"], record["reason"]) == ("line 3", "x")
    assert record["time"].endswith("Z") and len(record["time"]) == 24


@pytest.mark.expect_errors
def test_text_lines_are_for_people() -> None:
    logs.configure("text", "warning")
    out = io.StringIO()
    logs.emit(out, "info", "below the threshold")
    logs.emit(out, "error", "cannot start kafka", sink="kafka")
    assert out.getvalue() == "tetrapipe: cannot start kafka\n"
    with pytest.raises(ValueError, match="log level"):
        logs.configure("text", "loud")


def test_other_libraries_logging_comes_out_in_the_same_format(capsys) -> None:
    logs.configure("json", "info")
    logging.getLogger("aiokafka.consumer").warning("heartbeat failed for group %s", "g1")
    logging.getLogger("aiokafka.consumer").info("chatty detail")  # libraries: WARNING and above
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("grpc").exception("call failed")
    records = [orjson.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(r["logger"], r["level"], r["message"]) for r in records] == [
        ("aiokafka.consumer", "warning", "heartbeat failed for group g1"), ("grpc", "error", "call failed")]
    assert records[1]["exception"] == "RuntimeError('boom')"
