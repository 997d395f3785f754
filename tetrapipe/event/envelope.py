"""The envelope: one input record and its source position, from source to commit.

A source creates an `Envelope` per record and groups them in a `Batch`, which
carries the position to commit once every envelope in it is acknowledged.  The
processor fills `decoded`/`tags`/`out` (or `error` for bad input); a record
that no sink selects — or that is dead-lettered — stays in its batch, so its
position still reaches the committer: nothing filtered can stall a commit.

A source whose input has ended marks its last batch `final` (it may hold no
envelope at all): the processor then rejects what it still buffers, CRI
partial lines that never got their final line, into that batch's `bad`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tetrapipe.event.decode import BadInput, Decoded
from tetrapipe.event.tags import NO_TAGS, Tags


class Envelope:
    """One record: raw bytes as received, where it came from, what it became."""

    __slots__ = ("raw", "position", "meta", "received_ns", "decoded", "tags", "out", "error")

    def __init__(self, raw: bytes, position: Any, meta: Any = None, received_ns: int = 0) -> None:
        self.raw = raw
        self.position = position  # source-specific: line number, (file id, offset), (topic, partition, offset)
        self.meta = meta  # source-specific extras forwarded to sinks (e.g. Kafka key and headers)
        self.received_ns = received_ns
        self.decoded: Decoded | None = None
        self.tags: Tags = NO_TAGS
        self.out: bytes = b""  # the enriched event JSON (output contract), set when decoded
        self.error: BadInput | None = None


class Batch:
    """Envelopes read together, and the source position to commit after all are acknowledged.

    `commit_position` is opaque to the pipeline: a dict (merged key by key with
    later batches, e.g. Kafka partition → next offset) or any other value (the
    latest wins, e.g. a file offset); None means nothing to commit (stdin).
    """

    __slots__ = ("envelopes", "commit_position", "final", "seq", "good", "bad", "read_at")

    def __init__(self, envelopes: list[Envelope], commit_position: Any = None, *, final: bool = False) -> None:
        self.envelopes = envelopes
        self.commit_position = commit_position
        self.final = final  # the source's last batch: nothing follows it
        self.seq = -1  # assigned by the committer when registered
        self.read_at = 0.0  # time.monotonic() when the pipeline took it from the source (batch latency)
        # Filled by the processor in its one pass: the decoded envelopes and the rejected ones.
        # A CRI partial line is in neither: it becomes part of a later envelope's event, or of a
        # rejected record made of its whole group (positioned at its first line), which may be
        # in a later batch's `bad` and is then not one of that batch's `envelopes`.
        self.good: list[Envelope] = []
        self.bad: list[Envelope] = []

    def __len__(self) -> int:
        return len(self.envelopes)

    def __iter__(self) -> Iterator[Envelope]:
        return iter(self.envelopes)
