"""Records a sink refuses for good, dead-lettered in one place.

A sink that can refuse single records without failing the rest of its write — Kafka: an event
larger than a message may be; OTLP: a record the collector refuses on its own, found by
bisection — neither fails its write for them nor writes to a dead letter itself.  It hands
them, each with a reason and a detail, to its `reject` (the `RejectsRecords` capability of
tetrapipe.sinks.base) before its write returns.

The run binds every such sink's `reject` to a `Rejections` over the run's dead letter
(tetrapipe.pipeline.delivery, which also counts them in the run's stats); a sink used on its
own gets one from the dead letter it was given.  Contract of `Rejections.__call__`:

- it writes copies (the batch keeps its own envelopes: other sinks still send them), each with
  its reason as a `BadInput`, and returns True once the dead letter acknowledged them;
- with no dead letter it logs the loss (ERROR) and returns False: the sink counts a drop;
- a failing dead-letter write raises: the sink's write fails with it and is retried whole, so
  no group is acknowledged (no offset committed) before its rejected records are durable.
  In exactly-once mode the dead letter is the transactional topic: they are in the transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TextIO

from tetrapipe.event.decode import BadInput
from tetrapipe.event.envelope import Envelope
from tetrapipe.logs import emit

Rejected = Sequence[tuple[Envelope, str, str]]  # (the record, reason, detail)
_SHOWN_POSITIONS = 10  # positions named in one log line


class Rejections:
    """The one dead-lettering of records refused by a sink (see the module docstring)."""

    def __init__(self, dead_letter: Any = None, *, log: TextIO | None = None,
                 on_dead_lettered: Callable[[list[Envelope]], None] | None = None) -> None:
        self.dead_letter = dead_letter  # a tetrapipe.sinks.base.DeadLetter, or None
        self.log = log  # None: stderr (tetrapipe.logs)
        self.on_dead_lettered = on_dead_lettered  # e.g. the run's Stats.count_dead_lettered

    async def __call__(self, sink: str, records: Rejected) -> bool:
        if not records:
            return True
        reasons = sorted({reason for _, reason, _ in records})
        positions = [str(env.position) for env, _, _ in records[:_SHOWN_POSITIONS]]
        first = records[0]
        if self.dead_letter is None:
            emit(self.log, "error", f"{sink}: {len(records)} record(s) refused for good ({first[1]}: {first[2]}) and "
                                    "no dead-letter path is configured: dropped",
                 sink=sink, events=len(records), reasons=reasons, positions=positions)
            return False
        copies = []
        for env, reason, detail in records:
            copy = Envelope(env.raw, env.position, env.meta, env.received_ns)
            copy.error = BadInput(reason, detail)
            copies.append(copy)
        await self.dead_letter.write(copies)  # its failure fails the sink's write: retried whole
        if self.on_dead_lettered is not None:
            self.on_dead_lettered(copies)
        emit(self.log, "warning", f"{sink}: {len(records)} record(s) refused for good ({first[1]}: {first[2]}); "
                                  f"dead-lettered to {getattr(self.dead_letter, 'name', 'the dead letter')}",
             sink=sink, events=len(records), reasons=reasons, positions=positions)
        return True
