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

import msgspec

from tetrapipe.event.decode import BadInput, Decoded
from tetrapipe.event.tags import NO_TAGS, UNTAGGED_END, Tags


class Envelope(msgspec.Struct, eq=False):
    """One record: raw bytes as received, where it came from, what it became.

    A msgspec Struct for its C constructor (one per input line: a Python
    `__init__` cost a third of a microsecond per event); `eq=False` keeps
    identity comparison and hashing, as for a plain object.  Construct it as
    before: `Envelope(raw, position[, meta[, received_ns]])`.
    """

    raw: bytes
    position: Any  # source-specific: line number, (file id, offset), (topic, partition, offset)
    meta: Any = None  # source-specific extras forwarded to sinks (e.g. Kafka key and headers)
    received_ns: int = 0
    decoded: Decoded | None = None
    tags: Tags = NO_TAGS
    # The enriched event JSON (output contract) as the processor rendered it; empty for an event it
    # left plain (see `out`), and for a record that is no event.
    rendered: bytes = b""
    error: BadInput | None = None

    @property
    def out(self) -> bytes:
        """The enriched event JSON (output contract); empty for a record that is no event.

        An event with no category, no egress and no `tetrapipe` key of its own is left plain by the
        processor: its line is its own bytes and the empty `tetrapipe` object, made here when a sink
        asks for it (most untagged events only ever reach the stdout format, which joins those two
        parts into its buffer directly, without this copy per event).
        """
        out = self.rendered
        if not out and type(self.decoded) is Decoded:
            out = self.rendered = plain_line(self.decoded.raw)
        return out

    @out.setter
    def out(self, value: bytes) -> None:
        self.rendered = value


def plain_line(raw: bytes) -> bytes:
    """The output line of an event left plain: its own bytes with the empty `tetrapipe` object appended."""
    return raw[:-1] + UNTAGGED_END


class Tally:
    """Counters of a processed batch's good events, kept by the processor as it goes (see `Stats.count_batch`).

    `shapes`: categories tuple → events (tagged events only); `zones`: egress zone → events;
    `incomplete`: events missing their body's `process`.
    """

    __slots__ = ("shapes", "zones", "incomplete")

    def __init__(self) -> None:
        self.shapes: dict[tuple[str, ...], int] = {}
        self.zones: dict[str, int] = {}
        self.incomplete = 0


class Batch:
    """Envelopes read together, and the source position to commit after all are acknowledged.

    `commit_position` is opaque to the pipeline: a dict (merged key by key with
    later batches, e.g. Kafka partition → next offset) or any other value (the
    latest wins, e.g. a file offset); None means nothing to commit (stdin).
    """

    __slots__ = ("envelopes", "commit_position", "final", "seq", "good", "bad", "read_at", "tally")

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
        # Set by the processor with `good`: what `Stats.count_batch` adds up (None: count from `good`).
        self.tally: Tally | None = None

    def __len__(self) -> int:
        return len(self.envelopes)

    def __iter__(self) -> Iterator[Envelope]:
        return iter(self.envelopes)
