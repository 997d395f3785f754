"""ThreadedReader: the daemon thread that reads ahead must never outlive its event loop with an error."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from typing import Any

from tetrapipe.sources.reader import ThreadedReader


def run_in_own_loop(coro: Any) -> Any:
    """Run `coro` in a loop of its own, then close it.  Not asyncio.run: that also unsets the thread's
    current loop, dropping (unclosed) a loop an earlier async test left set under old pytest-asyncio."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def test_reads_chunks_then_end_of_input() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"abc\n")
    os.close(write_end)

    async def read_all() -> list[bytes]:
        reader = ThreadedReader(read_end, 4096)
        chunks = [await reader.read()]
        chunks.append(await reader.read())
        reader.close()
        return chunks

    try:
        assert run_in_own_loop(read_all()) == [b"abc\n", b""]
    finally:
        os.close(read_end)


def test_data_arriving_after_the_loop_closed_raises_nothing_in_the_thread() -> None:
    """The run ends (SIGTERM) while a read waits on an idle pipe; input arriving later must not raise
    `RuntimeError: Event loop is closed` in the reader thread (it did: a traceback on stderr, seen in CI)."""
    read_end, write_end = os.pipe()
    errors: list[BaseException | None] = []
    previous = threading.excepthook
    threading.excepthook = lambda hook_args: errors.append(hook_args.exc_value)
    reader = ThreadedReader(read_end, 4096)

    async def wait_then_stop() -> None:
        pending = asyncio.ensure_future(reader.read())
        await asyncio.sleep(0.05)  # the thread is now blocked in os.read, the loop waits on its future
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending

    try:
        run_in_own_loop(wait_then_stop())  # closes the loop with the reader's waiter still registered
        os.write(write_end, b"late\n")  # the thread wakes up and tries to resolve the waiter
        for _ in range(200):  # bounded: until the chunk is queued and the thread has called _wake
            if not reader._chunks.empty():  # noqa: SLF001 - the test observes the hand-over
                break
            time.sleep(0.01)
        time.sleep(0.1)
        reader.close()
    finally:
        threading.excepthook = previous
        os.close(write_end)  # end of input: the thread returns
        reader._thread.join(timeout=5)  # noqa: SLF001
        os.close(read_end)
    assert errors == []
