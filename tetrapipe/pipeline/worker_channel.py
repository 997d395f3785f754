"""A worker process's two pipes on the parent's event loop (`tetrapipe.pipeline.worker_pool`).

Frames (`tetrapipe.pipeline.worker_process`) are written non-blocking with
`add_writer` when the pipe is full, and read with `add_reader` straight into
buffers of the announced sizes.  A complete result frame goes to the
receiver's `answered`; EOF or an error on either pipe — the worker died —
closes both and calls the receiver's `died` once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pickle
from collections import deque
from multiprocessing.connection import Connection
from typing import Protocol, cast

from tetrapipe.pipeline.chunks import ChunkResult
from tetrapipe.pipeline.worker_process import HEADER

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux
_PIPE_SIZE = 1 << 20  # /proc/sys/fs/pipe-max-size by default


class Receiver(Protocol):
    def answered(self, result: ChunkResult) -> None: ...

    def died(self, exc: Exception | None) -> None: ...


class Channel:
    """A worker's two pipes on the event loop: frames written and read without extra copies.

    Reads go straight into buffers of the announced sizes (no growing buffer, no memmove); the
    result's output bytes stay in their buffer (a bytearray nobody mutates: joined and written as is).
    """

    def __init__(self, worker: Receiver, rfd: int, wfd: int) -> None:
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
        self._header = bytearray(HEADER)
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
        while pending and not self._closed:
            try:
                written = os.write(self.wfd, pending[0])
            except BlockingIOError:
                break
            except OSError as exc:  # EPIPE: the worker is gone
                self._lost(exc)
                return
            if written < len(pending[0]):
                pending[0] = pending[0][written:]
            else:
                pending.popleft()
        if self._closed:
            return
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
            head = self._header
            meta = bytearray(int.from_bytes(head[:8], "big"))
            blob = bytearray(int.from_bytes(head[8:], "big"))
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
        if not self._closed:
            self.close()
            self.worker.died(exc)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pending.clear()
        self.loop.remove_reader(self.rfd)
        if self._writing:
            self.loop.remove_writer(self.wfd)
        for fd in (self.rfd, self.wfd):
            with contextlib.suppress(OSError):
                os.close(fd)



def own_fd(connection: Connection) -> int:
    """The connection's pipe, its capacity raised to a chunk's size where the system allows.

    A 64 KiB pipe costs a write, a wake-up and a read per 64 KiB of every chunk, both ways.
    """
    fd = os.dup(connection.fileno())
    connection.close()
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_SIZE)
    return fd
