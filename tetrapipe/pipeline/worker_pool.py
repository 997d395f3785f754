"""N worker processes that turn chunks into chunk results, driven from the event loop without threads.

Contract: `submit(batch)` returns an asyncio future of the batch's `ChunkResult`
(`tetrapipe.pipeline.chunks`); chunks are given to the worker with the fewest
outstanding, and each worker answers its chunks in the order it got them.
Why not `concurrent.futures.ProcessPoolExecutor`: its manager and feeder
threads, wake-up pipes and per-call pickling on other threads cost the parent
more CPU than the parent's whole share of the work (measured: ~7 µs per event
of parent CPU against ~2.5 here).  Here each worker has two pipes, written and
read by asyncio pipe transports on the run's own loop: a chunk is one pickled
frame (8-byte length + payload) each way.

Processes are started with the 'forkserver' context — never `fork` in a
process with an event loop and threads — and build their state
(`build(spec)`: a processor, the stdout format, its selection) before their
first chunk and again before the first chunk of each new configuration
generation (`reconfigure`): a worker receives the spec with the first chunk
it is sent after a change, so the change applies at one chunk boundary for all.

A worker that dies (EOF on its pipe) fails its outstanding futures and every
later `submit` with `WorkerDied`; workers ignore SIGINT/SIGTERM/SIGHUP (the
parent owns signals; `close()` kills them — they hold no state worth keeping).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import os
import pickle
import signal
from collections import deque
from collections.abc import Callable
from functools import partial
from multiprocessing import get_context
from multiprocessing.connection import Connection
from typing import Any

from tetrapipe.event.envelope import Batch
from tetrapipe.formats.base import Format
from tetrapipe.pipeline.chunks import ChunkResult, chunk_of, fill
from tetrapipe.pipeline.processor import Processor
from tetrapipe.sinks.base import Selection

WorkerState = tuple[Processor, "Format | None", Selection]  # the processor, stdout format and selection
Build = Callable[[bytes], WorkerState]  # spec → a worker's state
_HEADER = 8
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux
_PIPE_SIZE = 1 << 20  # /proc/sys/fs/pipe-max-size by default


class WorkerDied(Exception):
    """A worker process ended (killed, out of memory, a crash): the pool is broken."""


# -- in each worker process -------------------------------------------------
def _read_exact(fd: int, size: int) -> bytes | None:
    parts, left = [], size
    while left:
        part = os.read(fd, min(left, 1 << 20))
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def worker_main(build: Build, inbound: Connection, outbound: Connection) -> None:
    # The parent owns signals: a terminal's Ctrl-C or a cgroup-wide SIGTERM reaches the whole group,
    # and a worker dying of it would fail the parent's graceful drain.  The parent kills workers.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    rfd, wfd = inbound.fileno(), outbound.fileno()
    state: WorkerState | None = None
    while (header := _read_exact(rfd, _HEADER)) is not None:
        payload = _read_exact(rfd, int.from_bytes(header, "big"))
        if payload is None:
            return
        spec, chunk, final = pickle.loads(payload)  # noqa: S301 - from our own parent process
        if spec is not None:
            state = build(spec)
            gc.collect()  # as tune_gc in the parent: the compiled library is long-lived
            gc.freeze()
            gc.set_threshold(50_000, 20, 100)
        assert state is not None
        result = fill(state[0], state[1], state[2], chunk, final)
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        _write_all(wfd, len(data).to_bytes(_HEADER, "big"))
        _write_all(wfd, data)


# -- in the parent -------------------------------------------------------------
class _Frames(asyncio.Protocol):
    """Reads length-prefixed frames from a worker's pipe."""

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while len(buffer) >= _HEADER:
            size = int.from_bytes(buffer[:_HEADER], "big")
            if len(buffer) < _HEADER + size:
                return
            with memoryview(buffer) as view:
                result = pickle.loads(view[_HEADER:_HEADER + size])  # noqa: S301 - from our own worker
            del buffer[:_HEADER + size]
            self.worker.answered(result)

    def connection_lost(self, exc: Exception | None) -> None:
        self.worker.died(exc)


class _Worker:
    def __init__(self, number: int) -> None:
        self.number = number
        self.process: Any = None
        self.writer: asyncio.WriteTransport | None = None
        self.reader: asyncio.BaseTransport | None = None
        self.waiting: deque[asyncio.Future[ChunkResult]] = deque()
        self.generation = -1  # of the last spec sent
        self.dead: str | None = None

    def answered(self, result: ChunkResult) -> None:
        future = self.waiting.popleft()
        if not future.done():
            future.set_result(result)

    def died(self, exc: Exception | None) -> None:
        if self.dead is not None:  # closed by the parent: nobody waits for these any more
            for future in self.waiting:
                future.cancel()
            self.waiting.clear()
            return
        code = self.process.exitcode if self.process is not None else None
        self.dead = f"worker process {self.number} (pid {self.process.pid}) ended" + \
            (f" with status {code}" if code is not None else "") + (f": {exc}" if exc else "")
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(WorkerDied(self.dead))


def _own_file(connection: Connection, mode: str) -> Any:
    """The connection's pipe as an unbuffered file object (what asyncio's pipe transports take).

    Its capacity raised to a chunk's size where the system allows: a 64 KiB pipe costs a write,
    a wake-up and a read per 64 KiB of every chunk, both ways (measured: most of the parent's time).
    """
    fd = os.dup(connection.fileno())
    connection.close()
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_SIZE)
    return os.fdopen(fd, mode, buffering=0)


class WorkerPool:
    def __init__(self, workers: int, build: Build, spec: bytes) -> None:
        self.workers = workers
        self.build = build
        self.spec = spec
        self.generation = 0
        self._pool = [_Worker(i) for i in range(workers)]
        self._turn = -1

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._pool if w.process is not None]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        context = get_context("forkserver")
        for worker in self._pool:
            to_worker_r, to_worker_w = context.Pipe(duplex=False)
            from_worker_r, from_worker_w = context.Pipe(duplex=False)
            worker.process = context.Process(target=worker_main, args=(self.build, to_worker_r, from_worker_w),
                                             name=f"tetrapipe-worker-{worker.number}", daemon=True)
            await asyncio.to_thread(worker.process.start)  # the first start launches the fork server
            to_worker_r.close()
            from_worker_w.close()
            worker.writer, _ = await loop.connect_write_pipe(asyncio.Protocol, _own_file(to_worker_w, "wb"))
            worker.reader, _ = await loop.connect_read_pipe(partial(_Frames, worker), _own_file(from_worker_r, "rb"))

    def submit(self, batch: Batch) -> asyncio.Future[ChunkResult]:
        future: asyncio.Future[ChunkResult] = asyncio.get_running_loop().create_future()
        # The least busy, the next in turn among equals: every worker takes part in a trickle too.
        self._turn = (self._turn + 1) % self.workers
        order = self._pool[self._turn:] + self._pool[:self._turn]
        worker = min(order, key=lambda w: len(w.waiting))
        if worker.dead is not None or worker.writer is None:
            future.set_exception(WorkerDied(worker.dead or "the workers were not started"))
            return future
        spec = None
        if worker.generation != self.generation:
            spec, worker.generation = self.spec, self.generation
        data = pickle.dumps((spec, chunk_of(batch), batch.final), protocol=pickle.HIGHEST_PROTOCOL)
        worker.writer.write(len(data).to_bytes(_HEADER, "big"))
        worker.writer.write(data)
        worker.waiting.append(future)
        return future

    def reconfigure(self, spec: bytes) -> None:
        """Chunks submitted from now on are processed with `spec`."""
        self.spec = spec
        self.generation += 1

    def close(self) -> None:
        """Kill the workers (stateless: nothing to finish) and close their pipes."""
        for worker in self._pool:
            worker.dead = worker.dead or "closed"
            for future in worker.waiting:
                future.cancel()
            worker.waiting.clear()
            if worker.process is not None and worker.process.pid is not None:
                with contextlib.suppress(Exception):
                    worker.process.kill()
            for transport in (worker.writer, worker.reader):
                if transport is not None:
                    transport.close()

