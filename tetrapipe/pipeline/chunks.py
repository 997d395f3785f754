"""One chunk of lines through a `Processor` in a worker process, and its result applied back in the parent.

Contract (used by `tetrapipe.pipeline.workers` and `.worker_pool`):
- `chunk_of(batch)` is what travels to a worker: the lines joined in one
  buffer, their lengths, and the indices of the lines the source already
  rejected (too large; they travel empty and stay in their place among the
  bad records, the parent keeps the envelope).
- `fill(processor, fmt, selection, chunk, final)` runs the lines through
  `processor.process` exactly as the one-process run does with a batch of the
  same lines, and renders the events `selection` (stdout's) selects with
  `fmt` (stdout's format; None: the `tetrapipe` format) — the per-event CPU
  work.  The result is columns, not an object per event (cheap to pickle):
  per decoded event its line's index and a key into a small table of
  (categories, groups, zone, incomplete); the stdout bytes of the whole chunk
  in one buffer, carried by the first selected event (`owner`); per bad record
  its origin's index, its bytes when not the line's own (a group of CRI
  partial lines), reason, detail and fault flag; the events the top-level
  filters dropped, by reason.
- `pending_from`: the decoder still held CRI partial lines at the end of a
  non-final chunk (their group continues in the next chunk) — the index of the
  first held line.  The caller cuts the chunk there and redoes both parts
  (`tetrapipe.pipeline.workers`), so every chunk starts and ends with an empty
  decoder, which is what makes chunks independent of the process that ran them.
- `Applier.apply(batch, result)` fills the parent's batch as `Processor.process`
  would have: `good`, `bad` (same order), per good envelope `tags` (categories
  and groups: what selections and the stats read) and `decoded` (a stand-in
  with `egress.zone` and `incomplete`, what the stats read); the chunk's stdout
  bytes are the `out` of its owner, every other `out` stays empty
  (`tetrapipe.pipeline.workers.Prerendered` joins them); `tally` is the
  worker processor's counters of the chunk, so the parent's stats count a
  chunk, not each event, as for a batch of one process.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tetrapipe.event.decode import BadInput
from tetrapipe.event.envelope import Batch, Envelope, Tally
from tetrapipe.event.tags import Tags, tags_head
from tetrapipe.formats.base import Format
from tetrapipe.formats.tetrapipe import TetrapipeFormat
from tetrapipe.pipeline.processor import Processor
from tetrapipe.sinks.base import Selection

_ALREADY_REJECTED = BadInput("too_large", "rejected by the source")  # a placeholder: the parent keeps its own

Key = tuple[tuple[str, ...], tuple[str, ...], "str | None", bool, str]  # categories, groups, zone, incomplete, type
Bad = tuple[int, "bytes | None", str, str, bool]


class Chunk:
    """A chunk's lines as they travel: one joined buffer (one copy, no object per line) and the lines' lengths.

    The lengths make the worker's split a slice per line: `bytes.split` compares every byte in a
    loop of its own, which costs more than the slicing on lines of a kilobyte or more.
    """

    __slots__ = ("data", "lengths", "rejected")

    def __init__(self, data: bytes, lengths: list[int], rejected: list[int]) -> None:
        self.data = data
        self.lengths = lengths
        self.rejected = rejected  # indices of the lines the source rejected (too large): travel as b""

    def __reduce__(self) -> tuple[Any, ...]:
        return Chunk, (self.data, self.lengths, self.rejected)

    def lines(self) -> list[bytes]:
        data = self.data
        lines = []
        start = 0
        for length in self.lengths:
            end = start + length
            lines.append(data[start:end])
            start = end + 1
        return lines


class ChunkResult:
    """Columns, not an object per event: what pickles and unpickles cheaply."""

    __slots__ = ("index", "keys", "table", "out", "owner", "bad", "dropped", "pending_from", "tally")

    def __init__(self, index: list[int], keys: list[int], table: list[Key], out: bytes, owner: int,
                 bad: list[Bad], dropped: dict[str, int], pending_from: int | None, tally: Tally | None) -> None:
        self.index = index  # per decoded event: its line's index in the chunk
        self.keys = keys  # per decoded event: its entry in `table`
        self.table = table
        self.out = out  # the stdout bytes of the chunk's selected events, in order
        self.owner = owner  # the index of the first selected event, which carries `out` (-1: none)
        self.bad = bad
        self.dropped = dropped
        self.pending_from = pending_from
        self.tally = tally  # the processor's counters of the chunk (Stats.count_batch: per chunk, not per event)

    def __reduce__(self) -> tuple[Any, ...]:
        return ChunkResult, (self.index, self.keys, self.table, self.out, self.owner, self.bad, self.dropped,
                             self.pending_from, self.tally)


def fill(processor: Processor, fmt: Format | None, selection: Selection, chunk: Chunk, final: bool) -> ChunkResult:
    """Process one chunk (see the module doc); `fmt` None renders the `tetrapipe` format (no per-event call)."""
    envelopes = [Envelope(raw, i) for i, raw in enumerate(chunk.lines())]
    for i in chunk.rejected:
        envelopes[i].error = _ALREADY_REJECTED
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
    index: list[int] = []
    keys: list[int] = []
    table: list[Key] = []
    known: dict[Key, int] = {}
    for env in batch.good:
        decoded = env.decoded
        egress = decoded.egress  # type: ignore[union-attr]
        tags = env.tags
        key = (tags.categories, tags.groups, egress.zone if egress is not None else None,
               bool(decoded.incomplete), decoded.etype)  # type: ignore[union-attr]
        number = known.get(key)
        if number is None:
            number = known[key] = len(table)
            table.append(key)
        keys.append(number)
        index.append(env.position)
    selected = batch.good if selection.all else [e for e in batch.good if selection.selects(e)]
    out = (fmt or _DEFAULT_FORMAT).lines(selected)
    bad: list[Bad] = []
    for env in batch.bad:
        error = env.error
        assert error is not None
        own = env is envelopes[env.position]
        bad.append((env.position, None if own else bytes(env.raw), error.reason, error.detail, error.fault))
    return ChunkResult(index, keys, table, out, selected[0].position if selected else -1, bad, dict(dropped),
                       pending_from, batch.tally)

_DEFAULT_FORMAT = TetrapipeFormat()  # the stdout default: each event's own line, joined without a copy per event


class _Egress:
    __slots__ = ("zone",)

    def __init__(self, zone: str) -> None:
        self.zone = zone


class Seen:
    """What the parent keeps of a decoded event: what `Stats.count_batch` reads."""

    __slots__ = ("egress", "etype", "incomplete")

    def __init__(self, egress: _Egress | None, incomplete: bool, etype: str) -> None:
        self.egress = egress
        self.incomplete = incomplete
        self.etype = etype  # Stats.event_types: the run summary's unknown types, the setup hints


class Applier:
    """Fills parent batches from chunk results; caches the shared small objects (tags, zones)."""

    def __init__(self, dropped: Counter[str]) -> None:
        self.dropped = dropped  # the run's Stats.filtered_out["*"]
        self._tags: dict[tuple[tuple[str, ...], tuple[str, ...]], Tags] = {}
        self._seen: dict[tuple[str | None, bool, str], Seen] = {}

    def apply(self, batch: Batch, result: ChunkResult) -> None:
        envelopes = batch.envelopes
        good = batch.good
        resolved = [self._resolve(key) for key in result.table]
        for index, key in zip(result.index, result.keys, strict=True):
            env = envelopes[index]
            env.tags, env.decoded = resolved[key]  # type: ignore[assignment]
            good.append(env)
        if result.owner >= 0:
            envelopes[result.owner].out = result.out
        batch.tally = result.tally
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


    def _resolve(self, key: Key) -> tuple[Tags, Seen]:
        categories, groups, zone, incomplete, etype = key
        tags = self._tags.get((categories, groups))
        if tags is None:
            tags = self._tags[(categories, groups)] = Tags(categories, groups, {}, tags_head(categories, groups))
        seen = self._seen.get((zone, incomplete, etype))
        if seen is None:
            seen = self._seen[(zone, incomplete, etype)] = Seen(_Egress(zone) if zone is not None else None,
                                                                incomplete, etype)
        return tags, seen


def chunk_of(batch: Batch) -> Chunk:
    """The lines of a batch as a worker takes them."""
    raws = [env.raw if env.error is None else b"" for env in batch.envelopes]
    rejected = [i for i, env in enumerate(batch.envelopes) if env.error is not None] if b"" in raws else []
    return Chunk(b"\n".join(raws), list(map(len, raws)), rejected)
