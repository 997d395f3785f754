"""Rate-limited reports of bad input on stderr: every bad record counted, a bounded number printed.

Each report names where the record came from (line number, file offset, Kafka
partition/offset), the reason and a short detail — never the record itself,
which may be large or hold secrets.  A burst of `burst` reports passes, then
at most `per_second`; suppressed ones are counted and announced.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

from pipeline.envelope import Envelope
from pipeline.logs import emit


def describe_line(position: Any) -> str:
    return f"line {position}"


class BadInputReporter:
    def __init__(self, out: TextIO | None = None, *, burst: int = 10, per_second: float = 1.0,
                 describe: Callable[[Any], str] = describe_line,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.out = out  # None: stderr (pipeline.logs)
        self.describe = describe
        self._clock = clock
        self._capacity = float(burst)
        self._tokens = float(burst)
        self._rate = per_second
        self._last = clock()
        self.suppressed = 0

    def _allow(self) -> bool:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def report(self, env: Envelope) -> None:
        assert env.error is not None
        if env.error.reason == "blank":
            return
        if not self._allow():
            self.suppressed += 1
            return
        self._announce_suppressed()
        detail = env.error.detail
        if len(detail) > 200:
            detail = detail[:200] + "…"
        where = self.describe(env.position)
        emit(self.out, "warning", f"bad input at {where}: {env.error.reason}: {detail}",
             position=where, reason=env.error.reason)

    def _announce_suppressed(self) -> None:
        if self.suppressed:
            emit(self.out, "warning", f"{self.suppressed} more bad records not shown (rate limit)",
                 suppressed=self.suppressed)
            self.suppressed = 0

    def close(self) -> None:
        self._announce_suppressed()
