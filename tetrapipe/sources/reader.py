"""Blocking reads off the event loop: a daemon thread that reads ahead, boundedly.

Why a thread of our own: `asyncio.to_thread` pool threads are joined at
interpreter exit, so a read blocked on an idle pipe would hang a shutdown that
is otherwise complete; a daemon thread does not.  Why read-ahead: while the
pipeline processes one chunk, the next is already being read, so the event
loop rarely waits for I/O.  Bounded: at most `ahead` chunks wait in memory;
when they are not taken, the thread stops reading (backpressure reaches the
producer through the pipe).
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from typing import Any

_EOF = b""


class ThreadedReader:
    def __init__(self, fd: int, chunk_size: int, ahead: int = 2) -> None:
        self._fd = fd
        self._chunk = chunk_size
        self._chunks: queue.Queue[bytes | OSError] = queue.Queue(maxsize=ahead)
        self._closed = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._lock = threading.Lock()  # guards _waiter between the thread and the loop
        self._thread = threading.Thread(target=self._serve, name=f"read-fd{fd}", daemon=True)

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                data: bytes | OSError = os.read(self._fd, self._chunk)
            except OSError as exc:
                data = exc
            while not self._closed.is_set():
                try:
                    self._chunks.put(data, timeout=0.5)
                    break
                except queue.Full:
                    continue
            self._wake()
            if isinstance(data, OSError) or not data:
                return

    def _wake(self) -> None:
        with self._lock:
            waiter, self._waiter = self._waiter, None
        if waiter is None or self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(_resolve, waiter)
        except RuntimeError:  # the loop is closed: the run ended while this read was in flight; nobody waits
            return

    async def read(self) -> bytes:
        """The next chunk (b"" at end of input); raises the OSError the read raised."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._thread.start()
        while True:
            try:
                item = self._chunks.get_nowait()
            except queue.Empty:
                waiter = self._loop.create_future()
                with self._lock:
                    self._waiter = waiter
                if self._chunks.empty():  # re-check: the thread may have put one meanwhile
                    await waiter
                continue
            if isinstance(item, OSError):
                raise item
            return item

    def close(self) -> None:
        self._closed.set()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def unless_stopped(awaitable: Any, stop: asyncio.Event) -> asyncio.Future[Any] | None:
    """Run `awaitable` until it finishes or `stop` is set; its finished future, or None when stopped.

    The pending future is left running (the caller decides whether to cancel
    it or wait for it, e.g. before closing the descriptor it reads).
    """
    work = asyncio.ensure_future(awaitable)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    return work if work.done() else None
