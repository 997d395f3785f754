"""The sink contract.

`await sink.write(envelopes)` returns only when every envelope given is
durably delivered — that return *is* the acknowledgement the committer waits
for.  It raises `SinkError(retryable=True, retry_after=…)` for failures worth
retrying (the runner retries with backoff, never drops), or
`SinkError(retryable=False)` when retrying cannot help (the run stops without
committing the batch).  A sink sees only the envelopes its `Selection` picked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import msgspec

from tetrapipe.event.envelope import Envelope
from tetrapipe.sinks.rejections import Rejections


class SinkError(Exception):
    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class SinkClosed(Exception):
    """The consumer of a sink went away on purpose (e.g. `| head` closed stdout): stop quietly."""


class Selection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Which events a sink receives: by category id or group; untagged events optionally.

    Empty `categories` and `groups` select every tagged event.
    """

    categories: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    untagged: bool = True

    @property
    def all(self) -> bool:
        """True when every event is selected (the common case, checked once per batch)."""
        return self.untagged and not self.categories and not self.groups

    def selects(self, env: Envelope) -> bool:
        tags = env.tags
        if not tags.categories:
            return self.untagged
        if not self.categories and not self.groups:
            return True
        return (not self.categories.isdisjoint(tags.categories)) or (not self.groups.isdisjoint(tags.groups))


SELECT_ALL = Selection()


class DeadLetter(Protocol):
    """Where undecodable records go, unchanged; `write` returns once they are durable."""

    name: str

    async def start(self) -> None: ...

    async def write(self, envelopes: Sequence[Envelope]) -> None: ...

    async def close(self) -> None: ...


class Sink(Protocol):
    name: str
    selection: Selection

    async def start(self) -> None: ...

    async def write(self, envelopes: Sequence[Envelope]) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class RejectsRecords(Protocol):
    """Optional: a sink that refuses single records for good (too large, refused by its server) hands them,
    with a reason, to `reject` before its write returns; the run binds `reject` to the one dead-lettering of
    such records (tetrapipe.sinks.rejections, bound by tetrapipe.pipeline.delivery)."""

    reject: Rejections


class SinkContext(msgspec.Struct, frozen=True):
    """What a sink's or dead letter's config `build()` may need from the run, beyond its own entry."""

    category_groups: Mapping[str, str] = {}  # category id -> group (the compiled library's `Tagger.groups`)
    environ: Mapping[str, str] | None = None  # None: os.environ (tests pass their own)
    scope_version: str = ""  # tetrapipe's version, in OTLP's instrumentation scope
    dead_letter: Any = None  # the run's DeadLetter (sinks that divert records themselves; see sinks/kafka, otlp)


class SinkConfig(Protocol):
    """A `sinks:` entry: a msgspec struct tagged on `type`, registered in `tetrapipe.sinks.SINKS`.

    `build()` validates what the struct's types could not and raises ValueError naming the key
    (the caller prefixes the entry's path, e.g. `sinks[1]: ...`).
    """

    def build(self, context: SinkContext) -> Sink: ...


class DeadLetterConfig(Protocol):
    """A `dead_letter:` entry (tagged on `type`, registered in `tetrapipe.sinks.DEAD_LETTERS`)."""

    def build(self, context: SinkContext) -> DeadLetter: ...


@runtime_checkable
class ReportsCounters(Protocol):
    """Sink internals by operation (`tetrapipe_sink_operations_total`: OTLP requests, Kafka routing, …)."""

    @property
    def counters(self) -> Mapping[str, int]: ...
