"""One chunk of lines through a `Processor` in a worker process, and its result applied back in the parent.

Contract (used by `tetrapipe.pipeline.workers`):
- `fill(processor, fmt, raws, received_ns, final)` runs the lines of one chunk
  through `processor.process` exactly as the one-process run does with a batch
  of the same lines, and renders every decoded event with `fmt` (the stdout
  format of the run) — the per-event CPU work.  A line the source already
  rejected (too large) travels as None: it stays in its place among the bad
  records.  The result holds only plain values (bytes, tuples, str), cheap to
  pickle: per decoded event its rendered bytes (newline included; b"" when the
  format says nothing about it), categories, groups, zone and completeness;
  per bad record its origin's index, its bytes when not the line's own (a
  group of CRI partial lines), reason, detail and fault flag; the events the
  top-level filters dropped, by reason.
- `pending_from`: the decoder still held CRI partial lines at the end of a
  non-final chunk (their group continues in the next chunk) — the index of the
  first held line.  The caller cuts the chunk there and redoes both parts
  (`tetrapipe.pipeline.workers`), so every chunk starts and ends with an empty
  decoder, which is what makes chunks independent of the process that ran them.
- `apply(batch, result, ...)` fills the parent's batch as `Processor.process`
  would have: `good`, `bad` (same order), and per good envelope `out`, `tags`
  (categories and groups: what selections and the stats read) and `decoded`
  (a stand-in with `egress.zone` and `incomplete`, what the stats read).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tetrapipe.event.decode import BadInput
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.event.tags import Tags, tags_head
from tetrapipe.formats.base import Format
from tetrapipe.pipeline.processor import Processor

_ALREADY_REJECTED = BadInput("too_large", "rejected by the source")  # a placeholder: the parent keeps its own

Good = tuple[int, bytes, tuple[str, ...], tuple[str, ...], "str | None", bool]
Bad = tuple[int, "bytes | None", str, str, bool]


class ChunkResult:
    __slots__ = ("good", "bad", "dropped", "pending_from")

    def __init__(self, good: list[Good], bad: list[Bad], dropped: dict[str, int], pending_from: int | None) -> None:
        self.good = good
        self.bad = bad
        self.dropped = dropped
        self.pending_from = pending_from

    def __reduce__(self) -> tuple[Any, ...]:
        return ChunkResult, (self.good, self.bad, self.dropped, self.pending_from)


def fill(processor: Processor, fmt: Format | None, raws: list[bytes | None], received_ns: int,
         final: bool) -> ChunkResult:
    """Process one chunk (see the module doc); `fmt` None renders the `tetrapipe` format (no per-event call)."""
    envelopes = []
    for i, raw in enumerate(raws):
        env = Envelope(raw if raw is not None else b"", i, None, received_ns)
        if raw is None:
            env.error = _ALREADY_REJECTED
        envelopes.append(env)
    batch = Batch(envelopes, 0, final=final)
    dropped = processor.dropped = Counter()
    processor.process(batch)
    pending_from = None
    decoder = processor.decoder
    if decoder.pending:
        # The decoder's held groups (its private state, read here only): each group's origin is the
        # envelope of its first line, whose position is its index in this chunk.
        held = decoder._partial
        pending_from = min(group.origin.position for group in held.values())
        held.clear()  # redone by the caller: the next chunk starts with an empty decoder
    record = fmt.record if fmt is not None else None
    good: list[Good] = []
    for env in batch.good:
        if record is None:
            out = env.out + b"\n"
        else:
            rendered = record(env)
            out = rendered + b"\n" if rendered is not None else b""
        decoded = env.decoded
        assert decoded is not None
        egress = decoded.egress
        good.append((env.position, out, env.tags.categories, env.tags.groups,
                     egress.zone if egress is not None else None, bool(decoded.incomplete)))
    bad: list[Bad] = []
    for env in batch.bad:
        error = env.error
        assert error is not None
        own = env is envelopes[env.position]
        bad.append((env.position, None if own else bytes(env.raw), error.reason, error.detail, error.fault))
    return ChunkResult(good, bad, dict(dropped), pending_from)


class _Egress:
    __slots__ = ("zone",)

    def __init__(self, zone: str) -> None:
        self.zone = zone


class Seen:
    """What the parent keeps of a decoded event: what `Stats.count_batch` reads."""

    __slots__ = ("egress", "incomplete")

    def __init__(self, egress: _Egress | None, incomplete: bool) -> None:
        self.egress = egress
        self.incomplete = incomplete


class Applier:
    """Fills parent batches from chunk results; caches the shared small objects (tags, zones)."""

    def __init__(self, dropped: Counter[str]) -> None:
        self.dropped = dropped  # the run's Stats.filtered_out["*"]
        self._tags: dict[tuple[tuple[str, ...], tuple[str, ...]], Tags] = {}
        self._seen: dict[tuple[str | None, bool], Seen] = {}

    def apply(self, batch: Batch, result: ChunkResult) -> None:
        envelopes = batch.envelopes
        good = batch.good
        tags_cache = self._tags
        seen_cache = self._seen
        for index, out, categories, groups, zone, incomplete in result.good:
            env = envelopes[index]
            env.out = out
            tags = tags_cache.get((categories, groups))
            if tags is None:
                tags = tags_cache[(categories, groups)] = Tags(categories, groups, {}, tags_head(categories, groups))
            env.tags = tags
            seen = seen_cache.get((zone, incomplete))
            if seen is None:
                seen = seen_cache[(zone, incomplete)] = Seen(_Egress(zone) if zone is not None else None, incomplete)
            env.decoded = seen  # type: ignore[assignment]
            good.append(env)
        for index, raw, reason, detail, is_fault in result.bad:
            origin = envelopes[index]
            if raw is None and origin.error is not None:  # rejected by the source: its own error (and spool)
                batch.bad.append(origin)
                continue
            error = BadInput(reason, detail)
            error.fault = is_fault
            if raw is None:
                origin.error = error
                batch.bad.append(origin)
            else:  # a group of CRI partial lines: one record of its own, at its first line's position
                env = Envelope(raw, origin.position, origin.meta, origin.received_ns)
                env.error = error
                batch.bad.append(env)
        if result.dropped:
            self.dropped.update(result.dropped)


def raws_of(batch: Batch) -> list[bytes | None]:
    """The lines of a batch as a worker takes them (None: already rejected by the source)."""
    return [env.raw if env.error is None else None for env in batch.envelopes]
