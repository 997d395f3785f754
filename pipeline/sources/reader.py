"""Blocking reads off the event loop, in a daemon thread that never holds up exit.

`asyncio.to_thread` would do the reads, but its pool threads are joined at
interpreter exit: a read blocked on an idle pipe would then hang a shutdown
that is otherwise complete.  One daemon thread per reader, one request at a
time, keeps reads ordered and lets the process exit while a read is pending.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading


class ThreadedReader:
    def __init__(self, fd: int, chunk_size: int) -> None:
        self._fd = fd
        self._chunk = chunk_size
        self._requests: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, asyncio.Future[bytes]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._serve, name=f"read-fd{fd}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while (request := self._requests.get()) is not None:
            loop, future = request
            try:
                data = os.read(self._fd, self._chunk)
            except OSError as exc:
                loop.call_soon_threadsafe(_set_exception, future, exc)
            else:
                loop.call_soon_threadsafe(_set_result, future, data)

    async def read(self) -> bytes:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self._requests.put((loop, future))
        return await future

    def close(self) -> None:
        self._requests.put(None)


def _set_result(future: asyncio.Future[bytes], data: bytes) -> None:
    if not future.done():
        future.set_result(data)


def _set_exception(future: asyncio.Future[bytes], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
