"""N worker processes that turn chunks into chunk results, driven from the event loop without threads.

Contract: `submit(batch)` returns an asyncio future of the batch's `ChunkResult`
(`tetrapipe.pipeline.chunks`); chunks are given to the worker with the fewest
outstanding, and each worker answers its chunks in the order it got them.
Why not `concurrent.futures.ProcessPoolExecutor`: its manager and feeder
threads, wake-up pipes and pickling of whole chunks on other threads cost the
parent more CPU than its share of the work.  Here each worker has two pipes,
written and read on the run's own loop (non-blocking, `add_reader`/`add_writer`):
a chunk is one frame each way — a small pickle and, beside it, the big bytes
(the chunk's lines joined; the result's rendered output), never copied into
the pickle nor through a growing buffer.

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
import queue
import signal
import threading
from collections import deque
from collections.abc import Callable
from multiprocessing import get_context
from multiprocessing.connection import Connection
from typing import Any, cast

from tetrapipe.event.envelope import Batch
from tetrapipe.formats.base import Format
from tetrapipe.pipeline.chunks import Chunk, ChunkResult, chunk_of, fill
from tetrapipe.pipeline.processor import Processor
from tetrapipe.sinks.base import Selection

WorkerState = tuple[Processor, "Format | None", Selection]  # the processor, stdout format and selection
Build = Callable[[bytes], WorkerState]  # spec → a worker's state
_HEADER = 16  # a frame: the pickle's length and the blob's, 8 bytes each; the pickle; the blob
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


def _read_frame(fd: int) -> tuple[bytes, bytes] | None:
    header = _read_exact(fd, _HEADER)
    if header is None:
        return None
    meta = _read_exact(fd, int.from_bytes(header[:8], "big"))
    blob = _read_exact(fd, int.from_bytes(header[8:], "big"))
    return None if meta is None or blob is None else (meta, blob)


def _header(meta: bytes, blob: bytes) -> bytes:
    return len(meta).to_bytes(8, "big") + len(blob).to_bytes(8, "big")


def worker_main(build: Build, inbound: Connection, outbound: Connection) -> None:
    # The parent owns signals: a terminal's Ctrl-C or a cgroup-wide SIGTERM reaches the whole group,
    # and a worker dying of it would fail the parent's graceful drain.  The parent kills workers.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    rfd, wfd = inbound.fileno(), outbound.fileno()
    # Results are written by a thread of their own: a result (about a chunk's size) can exceed the
    # pipe's capacity, and a worker waiting for the parent to read it could not start the next chunk.
    # At most the parent's in-flight chunks are queued here.
    outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    sender = threading.Thread(target=_send, args=(wfd, outbox), name="tetrapipe-results", daemon=True)
    sender.start()
    state: WorkerState | None = None
    while (frame := _read_frame(rfd)) is not None:
        spec, lengths, rejected, final = pickle.loads(frame[0])  # noqa: S301 - from our own parent process
        if spec is not None:
            state = build(spec)
            gc.collect()  # as tune_gc in the parent: the compiled library is long-lived
            gc.freeze()
            gc.set_threshold(50_000, 20, 100)
        assert state is not None
        result = fill(state[0], state[1], state[2], Chunk(frame[1], lengths, rejected), final)
        out, result.out = result.out, b""  # the big part travels beside the pickle, not through it
        meta = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        outbox.put(_header(meta, out) + meta)
        outbox.put(out)
    outbox.put(None)  # the parent closed its end: send what is left, then end
    sender.join()


def _send(fd: int, outbox: queue.SimpleQueue[bytes | None]) -> None:
    while (data := outbox.get()) is not None:
        try:
            _write_all(fd, data)
        except OSError:  # the parent is gone: nobody will read the rest
            os._exit(0)


# -- in the parent -------------------------------------------------------------
class _Channel:
    """A worker's two pipes on the event loop: frames written and read without extra copies.

    Reads go straight into buffers of the announced sizes (no growing buffer, no memmove); the
    result's output bytes stay in their buffer (a bytearray nobody mutates: joined and written as is).
    """

    def __init__(self, worker: _Worker, rfd: int, wfd: int) -> None:
        self.worker = worker
        self.rfd, self.wfd = rfd, wfd
        self.loop = asyncio.get_running_loop()
        os.set_blocking(rfd, False)
        os.set_blocking(wfd, False)
        self._pending: deque[memoryview] = deque()
        self._writing = False
        self._closed = False
        self._expect_header()
        self.loop.add_reader(rfd, self._readable)

    def _expect_header(self) -> None:
        self._header = bytearray(_HEADER)
        self._views = [memoryview(self._header)]
        self._body: tuple[bytearray, bytearray] | None = None

    def send(self, head: bytes, blob: bytes) -> None:
        self._pending.append(memoryview(head))
        if blob:
            self._pending.append(memoryview(blob))
        if not self._writing:
            self._flush()

    def _flush(self) -> None:
        pending = self._pending
        while pending:
            try:
                written = os.write(self.wfd, pending[0])
            except BlockingIOError:
                break
            except OSError as exc:
                self._lost(exc)
                return
            if written < len(pending[0]):
                pending[0] = pending[0][written:]
            else:
                pending.popleft()
        if pending and not self._writing:
            self.loop.add_writer(self.wfd, self._flush)
            self._writing = True
        elif not pending and self._writing:
            self.loop.remove_writer(self.wfd)
            self._writing = False

    def _readable(self) -> None:
        try:
            got = os.readv(self.rfd, self._views)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(exc)
            return
        if got == 0:
            self._lost(None)
            return
        views = self._views
        while got:
            if got >= len(views[0]):
                got -= len(views.pop(0))
            else:
                views[0] = views[0][got:]
                got = 0
        if not views:
            self._complete()

    def _complete(self) -> None:
        if self._body is None:
            header = self._header
            meta = bytearray(int.from_bytes(header[:8], "big"))
            blob = bytearray(int.from_bytes(header[8:], "big"))
            self._body = (meta, blob)
            self._views = [memoryview(b) for b in self._body if b]
            if self._views:
                return
        meta, blob = self._body
        result = pickle.loads(meta)  # noqa: S301 - from our own worker
        result.out = cast(bytes, blob)
        self._expect_header()
        self.worker.answered(result)

    def _lost(self, exc: Exception | None) -> None:
        self.close()
        self.worker.died(exc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.loop.remove_reader(self.rfd)
        if self._writing:
            self.loop.remove_writer(self.wfd)
        for fd in (self.rfd, self.wfd):
            with contextlib.suppress(OSError):
                os.close(fd)


class _Worker:
    def __init__(self, number: int) -> None:
        self.number = number
        self.process: Any = None
        self.channel: _Channel | None = None
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


def _own_fd(connection: Connection) -> int:
    """The connection's pipe, its capacity raised to a chunk's size where the system allows.

    A 64 KiB pipe costs a write, a wake-up and a read per 64 KiB of every chunk, both ways.
    """
    fd = os.dup(connection.fileno())
    connection.close()
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_SIZE)
    return fd


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
        context = get_context("forkserver")
        for worker in self._pool:
            to_worker_r, to_worker_w = context.Pipe(duplex=False)
            from_worker_r, from_worker_w = context.Pipe(duplex=False)
            worker.process = context.Process(target=worker_main, args=(self.build, to_worker_r, from_worker_w),
                                             name=f"tetrapipe-worker-{worker.number}", daemon=True)
            await asyncio.to_thread(worker.process.start)  # the first start launches the fork server
            to_worker_r.close()
            from_worker_w.close()
            worker.channel = _Channel(worker, _own_fd(from_worker_r), _own_fd(to_worker_w))

    def submit(self, batch: Batch) -> asyncio.Future[ChunkResult]:
        future: asyncio.Future[ChunkResult] = asyncio.get_running_loop().create_future()
        # The least busy, the next in turn among equals: every worker takes part in a trickle too.
        self._turn = (self._turn + 1) % self.workers
        order = self._pool[self._turn:] + self._pool[:self._turn]
        worker = min(order, key=lambda w: len(w.waiting))
        if worker.dead is not None or worker.channel is None:
            future.set_exception(WorkerDied(worker.dead or "the workers were not started"))
            return future
        spec = None
        if worker.generation != self.generation:
            spec, worker.generation = self.spec, self.generation
        chunk = chunk_of(batch)
        meta = pickle.dumps((spec, chunk.lengths, chunk.rejected, batch.final), protocol=pickle.HIGHEST_PROTOCOL)
        worker.channel.send(_header(meta, chunk.data) + meta, chunk.data)
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
            if worker.channel is not None:
                worker.channel.close()

