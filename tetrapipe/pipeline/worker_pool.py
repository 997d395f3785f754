"""N worker processes that turn chunks into chunk results, driven from the event loop without threads.

Contract: `submit(batch)` returns an asyncio future of the batch's `ChunkResult`
(`tetrapipe.pipeline.chunks`); chunks are given to the worker with the fewest
outstanding, and each worker answers its chunks in the order it got them.
Why not `concurrent.futures.ProcessPoolExecutor`: its manager and feeder
threads, wake-up pipes and pickling of whole chunks on other threads cost the
parent more CPU than its share of the work.  Here each worker has two pipes,
written and read on the run's own loop (non-blocking, `add_reader`/`add_writer`):
a chunk is one frame each way (`tetrapipe.pipeline.worker_process`, `.worker_channel`), its big
bytes never copied into the pickle nor through a growing buffer.

Processes are started with the 'forkserver' context — never `fork` in a
process with an event loop and threads — and build their state before their
first chunk and again before the first chunk of each new configuration
generation (`reconfigure`): a chunk carries the generation and spec current
when it was submitted, and a worker is sent the spec with the first chunk of
another generation than its last, so a change applies at one chunk boundary.

A worker that dies (EOF or an error on its pipes: killed, out of memory, a
crash) — at any time, also while idle or while the parent is blocked sending
to it — is replaced by a new process, and the chunks it had not answered are
sent again, in order, to the replacement (a WARNING says so).  Nothing of an
unanswered chunk reached the parent's output, so redoing it writes nothing
twice.  Bounded: a chunk outstanding at `MAX_DEATHS` worker deaths (a record
that crashes the worker), or more than `MAX_RESTARTS` replacements within
`RESTART_WINDOW` seconds, break the pool — `broken` names why, every
outstanding and later future fails with `WorkerDied`, and `on_broken` is
called (the source stops the run even when no chunk is outstanding).
`close()` kills the workers (they hold no state worth keeping).
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import time
from collections import deque
from collections.abc import Callable
from multiprocessing import get_context
from typing import Any

from tetrapipe.event.envelope import Batch
from tetrapipe.logs import emit
from tetrapipe.pipeline.chunks import Chunk, ChunkResult, chunk_of
from tetrapipe.pipeline.worker_channel import Channel, own_fd
from tetrapipe.pipeline.worker_process import Build, WorkerState, header, worker_main

__all__ = ["MAX_DEATHS", "MAX_RESTARTS", "RESTART_WINDOW", "Build", "WorkerDied", "WorkerPool", "WorkerState"]

MAX_DEATHS = 2  # a chunk outstanding at this many worker deaths is not tried again
MAX_RESTARTS = 5  # replacements allowed within RESTART_WINDOW seconds
RESTART_WINDOW = 60.0


class WorkerDied(Exception):
    """Worker processes kept dying (see the module doc): the pool is broken."""


class _Job:
    """A chunk given to a worker and not yet answered: what is needed to send it again."""

    __slots__ = ("chunk", "deaths", "final", "future", "generation", "spec")

    def __init__(self, chunk: Chunk, final: bool, generation: int, spec: bytes) -> None:
        self.chunk, self.final, self.generation, self.spec = chunk, final, generation, spec
        self.future: asyncio.Future[ChunkResult] = asyncio.get_running_loop().create_future()
        self.deaths = 0


class _Worker:
    """One worker slot: its current process and channel, and its jobs in the order they were sent."""

    def __init__(self, pool: WorkerPool, number: int) -> None:
        self.pool = pool
        self.number = number
        self.process: Any = None
        self.channel: Channel | None = None  # None while (re)starting: jobs wait in `waiting`
        self.waiting: deque[_Job] = deque()
        self.generation = -1  # of the last spec sent to the current process

    def send(self, job: _Job) -> None:
        assert self.channel is not None
        spec = None
        if self.generation != job.generation:
            spec, self.generation = job.spec, job.generation
        chunk = job.chunk
        meta = pickle.dumps((spec, chunk.lengths, chunk.rejected, job.final), protocol=pickle.HIGHEST_PROTOCOL)
        self.channel.send(header(meta, chunk.data) + meta, chunk.data)

    def answered(self, result: ChunkResult) -> None:
        job = self.waiting.popleft()
        if not job.future.done():
            job.future.set_result(result)

    def died(self, exc: Exception | None) -> None:
        self.channel = None
        self.pool.replace(self, exc)

    def describe(self, exc: Exception | None) -> str:
        code = self.process.exitcode if self.process is not None else None
        return f"worker process {self.number} (pid {self.process.pid}) ended" + \
            (f" with status {code}" if code is not None else "") + (f": {exc}" if exc else "")

    def fail(self, error: Exception) -> None:
        while self.waiting:
            job = self.waiting.popleft()
            if not job.future.done():
                job.future.set_exception(error)


class WorkerPool:
    def __init__(self, workers: int, build: Build, spec: bytes) -> None:
        self.workers = workers
        self.build = build
        self.spec = spec
        self.generation = 0
        self.broken: str | None = None
        self.on_broken: Callable[[], None] | None = None
        self._pool = [_Worker(self, i) for i in range(workers)]
        self._turn = -1
        self._restarts: deque[float] = deque()  # when replacements were started, within RESTART_WINDOW
        self._starting: set[asyncio.Task[None]] = set()
        self._closed = False
        self._launched: list[Any] = []  # every process started, killed by close()

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._pool if w.process is not None]

    async def start(self) -> None:
        for worker in self._pool:
            await self._start(worker)

    async def _start(self, worker: _Worker) -> None:
        context = get_context("forkserver")
        to_worker_r, to_worker_w = context.Pipe(duplex=False)
        from_worker_r, from_worker_w = context.Pipe(duplex=False)
        process = context.Process(target=worker_main, args=(self.build, to_worker_r, from_worker_w),
                                  name=f"tetrapipe-worker-{worker.number}", daemon=True)
        try:
            await asyncio.to_thread(self._launch, process)  # the first start launches the fork server
        finally:
            to_worker_r.close()
            from_worker_w.close()
        if self._closed:
            from_worker_r.close()
            to_worker_w.close()
            return
        worker.process, worker.generation = process, -1
        worker.channel = Channel(worker, own_fd(from_worker_r), own_fd(to_worker_w))
        for job in worker.waiting:  # a replacement: the dead one's chunks, in their order
            worker.send(job)

    def _launch(self, process: Any) -> None:
        """In a thread: start `process`; one started after `close()` (a replacement cancelled meanwhile) is killed.

        Workers ignore SIGTERM, so one left running would also hang multiprocessing's exit handler (it
        terminates, then joins, daemon children).
        """
        process.start()
        self._launched.append(process)
        if self._closed:
            with contextlib.suppress(Exception):
                process.kill()

    def submit(self, batch: Batch) -> asyncio.Future[ChunkResult]:
        job = _Job(chunk_of(batch), batch.final, self.generation, self.spec)
        if self.broken is not None or self._closed:
            job.future.set_exception(WorkerDied(self.broken or "the workers were closed"))
            return job.future
        # The least busy, the next in turn among equals: every worker takes part in a trickle too.
        self._turn = (self._turn + 1) % self.workers
        order = self._pool[self._turn:] + self._pool[:self._turn]
        worker = min(order, key=lambda w: len(w.waiting))
        worker.waiting.append(job)
        if worker.channel is not None:  # else being replaced: sent once the replacement runs
            worker.send(job)
        return job.future

    def reconfigure(self, spec: bytes) -> None:
        """Chunks submitted from now on are processed with `spec`."""
        self.spec = spec
        self.generation += 1

    def replace(self, worker: _Worker, exc: Exception | None) -> None:
        """`worker`'s process died: start another and give it the unanswered chunks (see the module doc)."""
        if self._closed or self.broken is not None:
            return
        with contextlib.suppress(Exception):
            if worker.process.exitcode is None:  # e.g. it closed its pipes and hangs: it must not linger
                worker.process.kill()
        what = worker.describe(exc)
        jobs = [job for job in worker.waiting if not job.future.cancelled()]
        worker.waiting = deque(jobs)
        for job in jobs:
            job.deaths += 1
        now = time.monotonic()
        while self._restarts and self._restarts[0] < now - RESTART_WINDOW:
            self._restarts.popleft()
        if any(job.deaths >= MAX_DEATHS for job in jobs):
            self._break(f"{what}; a chunk of {len(jobs[0].chunk.lengths)}+ lines was outstanding at "
                        f"{MAX_DEATHS} worker deaths (a record that crashes the worker?): not tried again")
            return
        if len(self._restarts) >= MAX_RESTARTS:
            self._break(f"{what}; {len(self._restarts)} worker processes were replaced in the last "
                        f"{RESTART_WINDOW:.0f} s: not replaced again")
            return
        self._restarts.append(now)
        emit(None, "warning", f"{what}; replacing it, its {len(jobs)} unanswered chunks are redone in order "
             "(nothing of them was written)", worker=worker.number, redone_chunks=len(jobs))
        task = asyncio.get_running_loop().create_task(self._replace(worker), name="tetrapipe-worker-restart")
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _replace(self, worker: _Worker) -> None:
        try:
            await self._start(worker)
        except Exception as exc:  # noqa: BLE001 - any failure to start one ends the pool, with its reason
            self._break(f"could not start a replacement for worker process {worker.number}: {exc!r}")
            return
        if worker.process is not None and not self._closed:
            emit(None, "info", f"worker process {worker.number} replaced", worker=worker.number,
                 worker_pid=worker.process.pid)

    def _break(self, reason: str) -> None:
        self.broken = reason
        error = WorkerDied(reason)
        for worker in self._pool:
            worker.fail(error)
        if self.on_broken is not None:
            self.on_broken()

    def close(self) -> None:
        """Kill the workers (stateless: nothing to finish) and close their pipes."""
        self._closed = True
        for task in self._starting:
            task.cancel()
        for process in self._launched:
            with contextlib.suppress(Exception):
                process.kill()
        for worker in self._pool:
            for job in worker.waiting:
                job.future.cancel()
            worker.waiting.clear()
            if worker.channel is not None:
                worker.channel.close()
                worker.channel = None
