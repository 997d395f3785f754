"""The format contract: a processed envelope -> the bytes a sink sends.

A format is built once per sink (`tetrapipe.formats.build_format`) and is pure:
- `record(env)` is one message value (a Kafka record, an OTLP log body, one
  line of a file) without a trailing newline, or None when the format has
  nothing to say about this event (e.g. `summary` for an untagged event: the
  sink then sends nothing for it, and the event still counts as delivered);
- `lines(envelopes)` is the newline-terminated text a stream sink (stdout, a
  file) writes for a batch — for the default format one join of the bytes the
  processor already rendered, no per-event call.

Optional capability (`Blocks`): `blocks(envelopes)` is that same text as a list of
blocks whose concatenation is `lines(envelopes)`, for a format whose text already
exists in large pieces (`--workers`: one rendered block per chunk); the stdout sink
then hands them to one vectored write instead of copying them into one buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from tetrapipe.event.envelope import Envelope


class Format(Protocol):
    name: str

    def record(self, env: Envelope) -> bytes | None: ...

    def lines(self, envelopes: Sequence[Envelope]) -> bytes: ...


@runtime_checkable
class Blocks(Protocol):
    def blocks(self, envelopes: Sequence[Envelope]) -> list[bytes]: ...


def lines_of_records(fmt: Format, envelopes: Sequence[Envelope]) -> bytes:
    """`lines()` for a format whose records are rendered one by one."""
    parts = [r for r in map(fmt.record, envelopes) if r is not None]
    if not parts:
        return b""
    parts.append(b"")  # the join then ends with a newline
    return b"\n".join(parts)
