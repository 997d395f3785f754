"""Per-key token-bucket rate limit, with one summary record per key and interval for what it dropped.

Contract: ``RateLimiter(rate=, burst=, keys=("categories", "node_name", "process.binary"),
interval=60.0, max_keys=100_000, clock=time.monotonic)``.

* ``limiter(event, event_type, categories=()) -> bool``: True = pass, False = dropped.  Each key
  (:mod:`.event_keys` paths; ``categories`` is the caller's category list) has a bucket of ``burst``
  tokens refilled at ``rate`` tokens per second; an event takes one token or is dropped.
* The first drop of a key opens an interval of ``interval`` seconds; when it has ended,
  ``drain()`` returns one summary record for it (and a later drop opens the next interval)::

      {"key": {"categories": [...], "node_name": "...", "process.binary": "..."},
       "dropped": 17, "interval": 60.0, "first_drop": 1234.5, "last_drop": 1270.1}

  (times are the injected clock's seconds).  ``as_rate_limit_info(record, node_name, time)`` wraps a
  record as a Tetragon-shaped ``rate_limit_info`` event (``number_of_dropped_process_events`` as
  protojson's uint64 string), the record itself under ``tetrapipe_rate_limit``.
* At most ``max_keys`` keys are tracked (least recently seen evicted; a key evicted with drops
  pending has its summary emitted early by the next ``drain()``, with ``"evicted": true``).
  Counters: ``passed``, ``dropped``, ``evictions`` (``take_evictions()``: those since its last call).
* ``flush()`` returns the summaries of every open interval (at shutdown).

Nothing here reads the wall clock except through ``clock``: tests pass a manual clock.
"""

from __future__ import annotations

import time as _time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any

from .event_keys import KeyFields
from .filter_errors import FilterConfigError


class _Bucket:
    __slots__ = ("tokens", "last", "dropped", "first_drop", "last_drop")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens, self.last = tokens, now
        self.dropped = 0
        self.first_drop = self.last_drop = 0.0


class RateLimiter:
    def __init__(self, *, rate: float, burst: int, keys: Sequence[str] = ("categories", "node_name", "process.binary"),
                 interval: float = 60.0, max_keys: int = 100_000, clock: Callable[[], float] = _time.monotonic,
                 path: str = "rate_limit") -> None:
        for name, value in (("rate", rate), ("burst", burst), ("interval", interval), ("max_keys", max_keys)):
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise FilterConfigError(f"{path}.{name}", "expected a positive number")
        self.rate, self.burst, self.interval, self.max_keys = float(rate), float(burst), float(interval), max_keys
        self.keys = KeyFields(keys, f"{path}.keys")
        self.clock = clock
        self._buckets: OrderedDict[tuple[Any, ...], _Bucket] = OrderedDict()
        self._due: deque[tuple[float, tuple[Any, ...], _Bucket]] = deque()  # intervals in order of their end
        self._ready: list[dict[str, Any]] = []  # summaries of evicted keys
        self.passed = self.dropped = self.evictions = 0
        self._evictions_taken = 0

    def __call__(self, event: dict[str, Any], event_type: str, categories: Sequence[str] = ()) -> bool:
        return self._admit(self.keys.values(event, event_type, categories))

    def check(self, decoded: Any, event: dict[str, Any] | None, categories: Sequence[str] = ()) -> bool:
        """``__call__`` for a ``Decoded`` event: its key read from ``event`` (plain dicts) when given, else
        from the lean view when the key's paths allow (``KeyFields.values_of``: no generic decode)."""
        return self._admit(self.keys.values_of(decoded, event, categories))

    def _admit(self, key: tuple[Any, ...]) -> bool:
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
            if len(self._buckets) > self.max_keys:
                self._evict()
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.last) * self.rate)
            bucket.last = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            self.passed += 1
            return True
        self.dropped += 1
        if bucket.dropped == 0:
            bucket.first_drop = now
            self._due.append((now + self.interval, key, bucket))
        bucket.dropped += 1
        bucket.last_drop = now
        return False

    def take_evictions(self) -> int:
        """Keys evicted since the last call (the run's stats add them up: tetrapipe.pipeline.summaries)."""
        taken, self._evictions_taken = self.evictions - self._evictions_taken, self.evictions
        return taken

    def _evict(self) -> None:
        key, bucket = self._buckets.popitem(last=False)
        self.evictions += 1
        if bucket.dropped:
            self._ready.append({**self._record(key, bucket), "evicted": True})
            bucket.dropped = 0  # its queued interval now yields nothing

    def _record(self, key: tuple[Any, ...], bucket: _Bucket) -> dict[str, Any]:
        return {"key": self.keys.describe(key), "dropped": bucket.dropped, "interval": self.interval,
                "first_drop": bucket.first_drop, "last_drop": bucket.last_drop}

    def drain(self) -> list[dict[str, Any]]:
        """Summaries of intervals that have ended (and of evicted keys), oldest first."""
        out, self._ready = self._ready, []
        now = self.clock()
        while self._due and self._due[0][0] <= now:
            _, key, bucket = self._due.popleft()
            if bucket.dropped:
                out.append(self._record(key, bucket))
                bucket.dropped = 0
        return out

    def flush(self) -> list[dict[str, Any]]:
        """Every pending summary, ended or not (at shutdown)."""
        out = self.drain()
        while self._due:
            _, key, bucket = self._due.popleft()
            if bucket.dropped:
                out.append(self._record(key, bucket))
                bucket.dropped = 0
        return out


def as_rate_limit_info(record: dict[str, Any], node_name: str, time: str) -> dict[str, Any]:
    """A Tetragon-shaped rate_limit_info event carrying a summary record."""
    return {"rate_limit_info": {"number_of_dropped_process_events": str(record["dropped"])},
            "node_name": node_name, "time": time, "tetrapipe_rate_limit": record}
