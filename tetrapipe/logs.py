"""tetrapipe's own log lines: structured JSON in containers, human text on a terminal.

Every component says what happened through `emit(stream, level, message,
**context)`: one line per message, in the format chosen once at start
(`configure`, from `--log-format` / `$TETRAPIPE_LOG_FORMAT`):
- `json`: one object per line — `time` (UTC, RFC 3339, ms), `level`,
  `logger`, `message`, then the context fields (e.g. `sink`, `reason`,
  `position`, `attempt`) — what log collectors (Fluent Bit, Vector, Loki)
  parse without rules;
- `text`: `tetrapipe: <message>`, as a person reads it (context is already
  worded into the message);
- `auto` (default): `text` when stderr is a terminal, else `json`.
Third-party libraries that use the `logging` module (aiokafka, grpc) are
routed through the same format, WARNING and above (all levels with
`--log-level debug`).

What is never logged: event contents (a bad record is named by its position
and reason, its bytes go to the dead-letter output) and secrets (credentials
are read from files or the environment and only their source is named).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, TextIO

import orjson

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class _Settings:
    """Process-wide, set once by `configure` (the CLI, at start); text until then (library use, tests)."""

    format = "text"
    threshold = LEVELS["info"]
    live_line = False  # a progress line is on stderr: clear it before writing a log line


_state = _Settings()


def resolve_format(choice: str | None, stream: TextIO | None = None) -> str:
    """`json` or `text` for a `--log-format` choice (`auto` looks at whether `stream` is a terminal)."""
    choice = (choice or os.environ.get("TETRAPIPE_LOG_FORMAT") or "auto").lower()
    if choice not in ("auto", "json", "text"):
        raise ValueError(f"log format must be auto, json or text, not {choice!r}")
    if choice != "auto":
        return choice
    stream = stream if stream is not None else sys.stderr
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def configure(fmt: str | None = None, level: str | None = None) -> str:
    """Choose the format and the threshold for the process; route `logging` records here too."""
    _state.format = resolve_format(fmt)
    name = (level or os.environ.get("TETRAPIPE_LOG_LEVEL") or "info").lower()
    if name not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {name!r}")
    _state.threshold = LEVELS[name]
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _Bridge):
            root.removeHandler(handler)
    root.addHandler(_Bridge())
    root.setLevel(LEVELS["debug"] if name == "debug" else LEVELS["warning"])  # libraries: warnings up
    return _state.format


def set_live_line(active: bool) -> None:
    """Called by `tetrapipe.service.progress` while it owns the last line of the terminal."""
    _state.live_line = active


def current_format() -> str:
    return _state.format


def render(level: str, message: str, context: dict[str, Any], logger: str = "tetrapipe") -> str:
    """One log line (with its newline) in the configured format."""
    if _state.format != "json":
        return f"{logger}: {message}\n"
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    record = {"time": stamp, "level": level, "logger": logger, "message": message, **context}
    return orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS).decode() + "\n"


def enabled(level: str) -> bool:
    return LEVELS[level] >= _state.threshold


def emit(stream: TextIO | None, level: str, message: str, **context: Any) -> None:
    """Write one message at `level` (debug, info, warning, error) to `stream` (default stderr)."""
    if not enabled(level):
        return
    out = stream if stream is not None else sys.stderr
    if _state.live_line and out is sys.stderr:
        out.write("\r\x1b[2K")  # the progress line redraws itself on its next tick
    out.write(render(level, message, context))
    out.flush()


class _Bridge(logging.Handler):
    """Formats other libraries' `logging` records like tetrapipe's own lines, on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = "debug" if record.levelno < 20 else "info" if record.levelno < 30 else \
                "warning" if record.levelno < 40 else "error"
            context: dict[str, Any] = {}
            if record.exc_info and record.exc_info[1] is not None:
                context["exception"] = repr(record.exc_info[1])
            sys.stderr.write(render(level, record.getMessage(), context, logger=record.name))
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never take the worker down
            self.handleError(record)
