"""The source contract.

`batches()` yields `Batch`es in source order until the input ends or `stop()`
is called; the pipeline awaits between batches, so a full downstream queue
holds the source (backpressure: a source must not read ahead unboundedly).
`commit(position)` persists a merged position the committer computed from
acknowledged batches only.  `describe(position)` names a record's position in
human terms for error reports.

Optional capabilities are Protocols a source may also satisfy (checked with
`isinstance`, typed by mypy): the runner and the service ask for them instead of
probing attributes by name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from tetrapipe.event.envelope import Batch


class SourceError(Exception):
    """The input cannot be read at all (the run exits non-zero)."""


class Source(Protocol):
    name: str

    async def start(self) -> None: ...

    def batches(self) -> AsyncIterator[Batch]: ...

    async def commit(self, position: Any) -> None: ...

    def stop(self) -> None: ...

    async def close(self) -> None: ...

    def describe(self, position: Any) -> str: ...


# drain(owns, timeout, remainder) -> all committed? (see Pipeline.drain)
DrainFn = Callable[[Callable[[Batch], bool], float, Callable[[Batch], Any]], Awaitable[bool]]


@runtime_checkable
class Drains(Protocol):
    """Loses part of its input while running (a Kafka rebalance): the pipeline gives it `drain`."""

    def bind_drain(self, drain: DrainFn) -> None: ...


@runtime_checkable
class ReportsReadiness(Protocol):
    """Says whether it is connected (/readyz, `tetrapipe_source_up`); a source without it always is."""

    @property
    def ready(self) -> bool: ...


@runtime_checkable
class ReportsLag(Protocol):
    """Consumer lag per (topic, partition) (`tetrapipe_kafka_consumer_lag`)."""

    def lag(self) -> dict[tuple[str, int], int]: ...


@runtime_checkable
class ReportsBacklog(Protocol):
    """Bytes of input not yet acknowledged, per file (`tetrapipe_follow_backlog_bytes`)."""

    def backlog(self) -> dict[str, int]: ...


@runtime_checkable
class ReportsProgress(Protocol):
    """(bytes read, total bytes when known) for the terminal progress line."""

    def progress(self) -> tuple[int, int | None]: ...


@runtime_checkable
class ReadsOnce(Protocol):
    """`replays` is False: what a stopped run did not read is gone (stdin, --input), so the
    runner flushes what the decoder still holds when it stops early."""

    replays: bool
