"""Deduplication within a time window: the first event of a key passes, repeats are counted.

Contract: ``Dedup(window=, keys=(...), max_keys=100_000, clock=time.monotonic)``.

* ``dedup(event, event_type, categories=()) -> bool``: True = pass (the first event of its key in the
  current window), False = a repeat (suppressed, counted).  Keys are :mod:`.event_keys` paths, e.g.
  ``("process.pod.container.id", "process.binary", "process.arguments", "parent.binary",
  "function_name", "args")``.  A window opens with the first event of a key and lasts ``window``
  seconds; the next event after it opens a new window and passes.
* When a window with repeats has closed, ``drain()`` returns one record for it::

      {"key": {"process.binary": "...", ...}, "repeats": 41, "window": 10.0,
       "first_seen": 100.0, "last_seen": 109.7}

  (``repeats`` excludes the first event, which passed; times are the injected clock's seconds).
  Windows without repeats close silently.
* Memory: at most ``max_keys`` open windows (least recently seen evicted; an evicted window with
  repeats yields its record early, at the next ``drain()``, with ``"evicted": true``).
  Counters: ``passed``, ``suppressed``, ``evictions`` (``take_evictions()``: those since its last
  call).  ``flush()`` closes every window (at shutdown).
"""

from __future__ import annotations

import time as _time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from typing import Any

from .event_keys import KeyFields
from .filter_errors import FilterConfigError


class _Window:
    __slots__ = ("start", "last", "repeats")

    def __init__(self, now: float) -> None:
        self.start = self.last = now
        self.repeats = 0


class Dedup:
    def __init__(self, *, window: float, keys: Sequence[str], max_keys: int = 100_000,
                 clock: Callable[[], float] = _time.monotonic, path: str = "dedup") -> None:
        for name, value in (("window", window), ("max_keys", max_keys)):
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise FilterConfigError(f"{path}.{name}", "expected a positive number")
        if not keys:
            raise FilterConfigError(f"{path}.keys", "expected at least one field path")
        self.window, self.max_keys, self.clock = float(window), max_keys, clock
        self.keys = KeyFields(keys, f"{path}.keys")
        self._open: OrderedDict[tuple[Any, ...], _Window] = OrderedDict()
        self._due: deque[tuple[float, tuple[Any, ...], _Window]] = deque()
        self._ready: list[dict[str, Any]] = []
        self.passed = self.suppressed = self.evictions = 0
        self._evictions_taken = 0

    def __call__(self, event: dict[str, Any], event_type: str, categories: Sequence[str] = ()) -> bool:
        return self._admit(self.keys.values(event, event_type, categories))

    def check(self, decoded: Any, event: dict[str, Any] | None, categories: Sequence[str] = ()) -> bool:
        """``__call__`` for a ``Decoded`` event: its key read from ``event`` (plain dicts) when given, else
        from the lean view when the key's paths allow (``KeyFields.values_of``: no generic decode)."""
        return self._admit(self.keys.values_of(decoded, event, categories))

    def _admit(self, key: tuple[Any, ...]) -> bool:
        now = self.clock()
        win = self._open.get(key)
        if win is not None and now < win.start + self.window:
            self._open.move_to_end(key)
            win.repeats += 1
            win.last = now
            self.suppressed += 1
            return False
        if win is not None:  # its window has ended: close it before opening the next
            self._close(key, win, self._ready)
        win = self._open[key] = _Window(now)
        self._due.append((now + self.window, key, win))
        if len(self._open) > self.max_keys:
            old_key, old = self._open.popitem(last=False)
            self.evictions += 1
            self._emit(old_key, old, self._ready, evicted=True)
        self.passed += 1
        return True

    def take_evictions(self) -> int:
        """Keys evicted since the last call (the run's stats add them up: tetrapipe.pipeline.summaries)."""
        taken, self._evictions_taken = self.evictions - self._evictions_taken, self.evictions
        return taken

    def _emit(self, key: tuple[Any, ...], win: _Window, out: list[dict[str, Any]], evicted: bool = False) -> None:
        if win.repeats:
            record = {"key": self.keys.describe(key), "repeats": win.repeats, "window": self.window,
                      "first_seen": win.start, "last_seen": win.last}
            out.append({**record, "evicted": True} if evicted else record)
            win.repeats = 0  # a window is reported once, whichever path closes it first

    def _close(self, key: tuple[Any, ...], win: _Window, out: list[dict[str, Any]]) -> None:
        self._emit(key, win, out)
        if self._open.get(key) is win:
            del self._open[key]

    def drain(self) -> list[dict[str, Any]]:
        """Records of windows that have closed (and of evicted ones), in closing order."""
        out, self._ready = self._ready, []
        now = self.clock()
        while self._due and self._due[0][0] <= now:
            _, key, win = self._due.popleft()
            self._close(key, win, out)
        return out

    def flush(self) -> list[dict[str, Any]]:
        """Close every window now (at shutdown)."""
        out = self.drain()
        while self._due:
            _, key, win = self._due.popleft()
            self._close(key, win, out)
        return out
