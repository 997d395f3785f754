"""`--workers N` for line sources (stdin, `--input`, `--follow`): the per-event CPU work in N processes.

Shape: `WorkerSource` wraps the run's source.  A read-ahead task takes the
source's batches in order and hands each one's lines, as one chunk, to a pool
of N worker processes (`WorkerPool`, the 'forkserver' context: never `fork` in
a process running an event loop), each built once from the same configuration
(rules compiled once per worker).  `batches()` yields the batches in source
order, each filled from its chunk's result (`tetrapipe.pipeline.chunks`) —
the pipeline's processor is then `ChunkedProcessor`, which has nothing left to
do for them.  Everything else stays in the parent, unchanged: the committer
(a `--follow` checkpoint still advances only over the acknowledged prefix),
delivery, the dead letter, stats, bad-input reports, progress.  So the output
order is the input order, and the output, dead letter and stats are those of
one worker — byte for byte, CRI partial lines included: a chunk that ends
inside a group of partial lines is cut before the group and the rest redone
with the next chunk, so each chunk starts with an empty decoder.

Memory: at most `limit` chunks (2 per worker) are read ahead of the pipeline;
the read-ahead waits for a free slot before reading more (backpressure).

A worker that dies (killed, out of memory, a crash) is replaced and its
unanswered chunks redone in order by the pool (`WorkerPool`): their results
never reached the batches, so nothing is written twice and the order holds.
When the pool gives up (a chunk outstanding at repeated deaths, too many
replacements), the run fails cleanly — the batches before it are delivered
and committed, the source raises `SourceError` (exit status 2, an error
naming it), also when no chunk is in flight (`on_broken`), and nothing after
it is committed (`--follow` redoes it on restart; stdin's unread rest is not
read).

Stop: the read-ahead ends with the source.  For a one-shot input (stdin,
`--input`) the runner then hands the processor a final empty batch; the
chunks already read are processed into it by the parent itself (the same
configuration, `local`), so no line read is lost.  `--follow` just does not
commit them.  `close()` kills the workers (they keep no state).

Reload (SIGHUP): `WorkerPool.reconfigure(spec)` bumps a generation; every
chunk carries the generation and spec current when it was read, and a worker
rebuilds before the first chunk of a new generation: the reload applies at
one chunk boundary for all workers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.formats.base import Format
from tetrapipe.logs import emit
from tetrapipe.pipeline.chunks import Applier, ChunkResult, chunk_of, fill
from tetrapipe.pipeline.commit import merge_positions
from tetrapipe.pipeline.processor import Processor
from tetrapipe.pipeline.worker_pool import WorkerDied, WorkerPool, WorkerState
from tetrapipe.sinks.base import Selection
from tetrapipe.sources.base import Source, SourceError


class WorkerSource:
    """The run's source, its batches processed by a `WorkerPool` (see the module doc)."""

    def __init__(self, inner: Source, pool: WorkerPool, applier: Applier, *, limit: int | None = None) -> None:
        self._inner = inner
        self.name = inner.name
        self.pool = pool
        self.applier = applier
        self.limit = limit or 2 * pool.workers
        self.prefilled: set[int] = set()  # ids of yielded batches whose processing is done
        self._inflight: deque[tuple[Batch, asyncio.Future[ChunkResult]]] = deque()
        self._carry: list[Envelope] = []  # CRI partial lines continued by the next chunk
        self._slots = asyncio.Semaphore(self.limit)
        self._changed = asyncio.Event()
        self._read_done = False
        self._read_error: SourceError | None = None
        pool.on_broken = self._changed.set  # a pool given up on while nothing is in flight still ends the run

    def __getattr__(self, name: str) -> Any:  # name, replays, progress, backlog, ready: the inner source's
        return getattr(self._inner, name)

    async def start(self) -> None:
        await self._inner.start()
        await self.pool.start()
        emit(None, "info", f"{self.pool.workers} worker processes started", worker_pids=self.pool.pids)

    def stop(self) -> None:
        self._inner.stop()

    async def commit(self, position: Any) -> None:
        await self._inner.commit(position)

    def describe(self, position: Any) -> str:
        return self._inner.describe(position)

    async def close(self) -> None:
        self.pool.close()
        await self._inner.close()

    async def batches(self) -> AsyncIterator[Batch]:
        reader = asyncio.create_task(self._read_ahead(), name="tetrapipe-read-ahead")
        try:
            while True:
                while not self._inflight:
                    if self.pool.broken is not None:
                        raise self._stopped(self.pool.broken)
                    if self._read_done:
                        if self._read_error is not None:
                            raise self._read_error
                        return
                    self._changed.clear()
                    await self._changed.wait()
                batch, future = self._inflight[0]
                result = await self._result(future)
                while result.pending_from is not None:  # never for a final batch
                    result = await self._cut(batch, result.pending_from)
                self._inflight.popleft()
                self._slots.release()
                self.applier.apply(batch, result)
                self.prefilled.add(id(batch))
                yield batch
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            for _, future in self._inflight:  # a failed run's outcomes: retrieved, never logged as lost
                if future.done() and not future.cancelled():
                    future.exception()

    async def _read_ahead(self) -> None:
        batches = self._inner.batches().__aiter__()
        try:
            while True:
                await self._slots.acquire()
                try:
                    batch = await anext(batches)
                except StopAsyncIteration:
                    return
                if self._carry:
                    batch.envelopes[:0] = self._carry
                    self._carry = []
                self._inflight.append((batch, self.pool.submit(batch)))
                self._changed.set()
        except SourceError as exc:  # what was read before is still delivered (as the runner does)
            self._read_error = exc
        finally:
            self._read_done = True
            self._changed.set()

    async def _result(self, future: asyncio.Future[ChunkResult]) -> ChunkResult:
        try:
            return await future
        except WorkerDied as exc:
            raise self._stopped(str(exc)) from None

    @staticmethod
    def _stopped(reason: str) -> SourceError:
        return SourceError(f"{reason}; stopping: what was delivered before it is committed, the rest is not "
                           "(a --follow run redoes it)")

    async def _cut(self, batch: Batch, pending_from: int) -> ChunkResult:
        """`batch` ends inside a group of CRI partial lines: its lines from `pending_from` on go with the next."""
        carry = batch.envelopes[pending_from:]
        del batch.envelopes[pending_from:]
        batch.commit_position = None  # as one process does while a group is pending: nothing committed
        if len(self._inflight) > 1:
            after, stale = self._inflight[1]
            stale.cancel()  # its worker still answers it: the answer is ignored
            after.envelopes[:0] = carry
            self._inflight[1] = (after, self.pool.submit(after))
        else:
            self._carry = carry + self._carry
        return await self._result(self.pool.submit(batch))  # not final: a final batch never pends

    def flush_into(self, batch: Batch, local: WorkerState) -> None:
        """The runner's last batch after a stop: every chunk still in flight, processed here (see the module doc)."""
        envelopes: list[Envelope] = []
        position = None
        for taken, future in self._inflight:
            future.cancel()
            envelopes += taken.envelopes
            position = merge_positions(position, taken.commit_position)
            batch.final = batch.final or taken.final
        self._inflight.clear()
        envelopes += self._carry
        self._carry = []
        batch.envelopes[:0] = envelopes
        batch.commit_position = merge_positions(position, batch.commit_position)
        processor, fmt, selection = local
        self.applier.apply(batch, fill(processor, fmt, selection, chunk_of(batch), batch.final))


class ChunkedProcessor:
    """The pipeline's processor with `--workers`: batches come processed; the rest as `Processor`."""

    def __init__(self, local: Processor, source: WorkerSource, fmt: Format | None, selection: Selection) -> None:
        self.local = local  # the parent's own (the Reloader swaps its rules): rerender, and the last batch
        self.source = source
        self.fmt = fmt
        self.selection = selection
        self.dropped = local.dropped

    def rerender(self, *args: Any) -> Envelope:
        return self.local.rerender(*args)

    def process(self, batch: Batch) -> None:
        if id(batch) in self.source.prefilled:
            self.source.prefilled.discard(id(batch))
            return
        self.source.flush_into(batch, (self.local, self.fmt, self.selection))


class Prerendered:
    """The stdout format when the workers rendered it: each batch's bytes are on its first selected envelope."""

    def __init__(self, name: str) -> None:
        self.name = name

    def record(self, env: Envelope) -> bytes | None:
        raise NotImplementedError("rendered per batch (lines), never per record")

    def blocks(self, envelopes: Any) -> list[bytes]:
        """The chunks' blocks, as received (`formats.base.Blocks`: the stdout sink writes them with one writev)."""
        return [out for env in envelopes if (out := env.out)]

    def lines(self, envelopes: Any) -> bytes:
        blocks = self.blocks(envelopes)
        if len(blocks) == 1:  # one chunk's block (the usual case): written as received, not copied again
            return blocks[0]
        return b"".join(blocks)
