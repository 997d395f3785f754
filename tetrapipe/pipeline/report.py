"""Rate-limited reports of bad input on stderr: every bad record counted, a bounded number printed.

Each report names where the record came from (line number, file offset, Kafka
partition/offset), the reason and a short detail — never the record itself,
which may be large or hold secrets.  A burst of `burst` reports passes, then
at most `per_second`; suppressed ones are counted and announced.

A record that raised an unexpected exception while being processed
(`error.fault`: `internal_error`, or a RecursionError's `too_deep`) is reported
as an ERROR — it may be a bug — with the exception type and where it was
raised, never its message.  Those reports have a rate limit of their own, so
a flood of ordinary bad input cannot hide them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

from tetrapipe.event.envelope import Envelope
from tetrapipe.logs import emit


def describe_line(position: Any) -> str:
    return f"line {position}"


class _Bucket:
    """Token bucket: `burst` at once, then `rate` per second."""

    def __init__(self, burst: int, rate: float, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._capacity = float(burst)
        self._tokens = float(burst)
        self._rate = rate
        self._last = clock()

    def allow(self) -> bool:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class BadInputReporter:
    def __init__(self, out: TextIO | None = None, *, burst: int = 10, per_second: float = 1.0,
                 describe: Callable[[Any], str] = describe_line,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out  # None: stderr (tetrapipe.logs)
        self.describe = describe
        self._bad = _Bucket(burst, per_second, clock)
        self._faults = _Bucket(burst, per_second, clock)
        self.suppressed = 0
        self.suppressed_faults = 0

    def report(self, env: Envelope) -> None:
        error = env.error
        assert error is not None
        if error.reason == "blank":
            return
        if error.fault:
            self._report_fault(env)
            return
        if not self._bad.allow():
            self.suppressed += 1
            return
        self._announce_suppressed()
        detail = error.detail
        if len(detail) > 200:
            detail = detail[:200] + "…"
        where = self.describe(env.position)
        emit(self.out, "warning", f"bad input at {where}: {error.reason}: {detail}",
             position=where, reason=error.reason)

    def _report_fault(self, env: Envelope) -> None:
        error = env.error
        assert error is not None
        if not self._faults.allow():
            self.suppressed_faults += 1
            return
        self._announce_suppressed()
        where = self.describe(env.position)
        emit(self.out, "error", f"internal error on the record at {where}: {error.reason}: {error.detail}; "
             "the record was set aside as bad input (dead letter), the stream goes on — this may be a bug",
             position=where, reason=error.reason)

    def _announce_suppressed(self) -> None:
        if self.suppressed:
            emit(self.out, "warning", f"{self.suppressed} more bad records not shown (rate limit)",
                 suppressed=self.suppressed)
            self.suppressed = 0
        if self.suppressed_faults:
            emit(self.out, "error", f"{self.suppressed_faults} more internal errors not shown (rate limit)",
                 suppressed=self.suppressed_faults)
            self.suppressed_faults = 0

    def close(self) -> None:
        self._announce_suppressed()
