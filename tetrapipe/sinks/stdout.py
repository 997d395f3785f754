"""`stdout` sink: each batch as lines of its format (`tetrapipe.formats`; default `tetrapipe`).

`write()` returns after the bytes are handed to the kernel (all of them: short
writes are continued), which is as durable as a pipe gets.  A reader that
closes the pipe (`| head`) raises `SinkClosed`: the run stops quietly.

Backpressure without freezing the event loop: the blocking `write(2)` runs in
a daemon thread of the sink's own (one, so writes keep their order), and a
slow reader holds the pipeline back through the pending `write()`.

Shutdown: a `write()` that is cancelled (the grace period ran out) returns at
once; bytes not yet handed to the thread are dropped, and a write(2) already
blocked — a reader that never reads — stays blocked in that daemon thread,
which the process does not wait for when it exits.  Its batch is neither
acknowledged nor committed (a replayable source redoes it); what the reader
finally gets may end in a partial line.

Config entry: `sinks: [{type: stdout, format: summary, select: {...}}]` (`StdoutSinkConfig`); the
short form is `--format` (with `--only`, `--ocsf-findings`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sys
import threading
from collections.abc import Sequence

import msgspec

from tetrapipe.event.envelope import Envelope
from tetrapipe.formats import build_format
from tetrapipe.formats.base import Blocks, Format
from tetrapipe.sinks.base import SELECT_ALL, Selection, SinkClosed, SinkContext, SinkError

_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16  # buffers one writev takes


def write_all(fd: int, data: bytes | list[bytes]) -> None:
    """Write all of `data` (one buffer, or blocks written in order with vectored writes), continuing short writes."""
    if not isinstance(data, list):
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        return
    views = [memoryview(block) for block in data if block]
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        while views and written >= len(views[0]):  # drop what was written whole, then cut into the next
            written -= len(views.pop(0))
        if written:
            views[0] = views[0][written:]


class _Job:
    __slots__ = ("data", "loop", "done", "abandoned")

    def __init__(self, data: bytes | list[bytes], loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]
                 ) -> None:
        self.data = data
        self.loop = loop
        self.done = done
        self.abandoned = False  # set by the loop when the write was cancelled before the thread took it


class FdWriter:
    """Blocking writes to a descriptor, in order, off the event loop.

    Why a daemon thread of our own, not `asyncio.to_thread`: pool threads are
    joined when the loop shuts its executor down and again at interpreter
    exit, so one blocked in write(2) on a pipe nobody reads would keep the
    process alive after its shutdown deadline; a daemon thread is not joined.
    Why not non-blocking writes through the event loop: O_NONBLOCK is a flag
    of the open file description, which stdout shares with other processes
    (the shell's terminal, a parent's pipe) and often with our own stderr
    (`2>&1`); setting it would make their — and our log — writes fail with
    EAGAIN.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def write(self, data: bytes | list[bytes]) -> None:
        """Return once `data` (bytes, or blocks written in order) was written; raise the OSError write(2) raised."""
        loop = asyncio.get_running_loop()
        job = _Job(data, loop, loop.create_future())
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=f"write-fd{self.fd}", daemon=True)
            self._thread.start()
        self._jobs.put(job)
        try:
            await job.done
        except asyncio.CancelledError:
            job.abandoned = True
            raise

    def close(self) -> None:
        """Let the thread end once it wrote what it holds (not waited for: it may be blocked)."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            if job.abandoned:
                continue
            error: Exception | None = None
            try:
                write_all(self.fd, job.data)
            except Exception as exc:  # noqa: BLE001 - handed to the waiting write(), never lost with the thread
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for this write any more
                job.loop.call_soon_threadsafe(_settle, job.done, error)


def _settle(done: asyncio.Future[None], error: Exception | None) -> None:
    if done.done():  # cancelled meanwhile
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


class StdoutSink:
    """Writes each batch in its format (`tetrapipe.formats`: the default `tetrapipe`, `summary`, …)."""

    def __init__(self, fmt: str | Format = "tetrapipe", selection: Selection = SELECT_ALL,
                 fd: int | None = None) -> None:
        self.name = "stdout"
        # --only also narrows the summary lines of an event to those categories
        self.format = build_format(fmt, only=selection.categories) if isinstance(fmt, str) else fmt
        self.selection = selection
        self._writer = FdWriter(fd if fd is not None else sys.stdout.fileno())

    @property
    def format(self) -> Format:
        return self._format

    @format.setter
    def format(self, fmt: Format) -> None:
        """Set at start (and by `--workers`, to `Prerendered`): whether it has blocks is decided here, once."""
        self._format = fmt
        # blocks already rendered (--workers) go to one vectored write rather than being copied into one buffer
        self._text = fmt.blocks if isinstance(fmt, Blocks) else fmt.lines

    async def start(self) -> None:
        return None

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        data = self._text(envelopes)
        if not data:
            return
        try:
            await self._writer.write(data)
        except BrokenPipeError:
            raise SinkClosed("stdout was closed by its reader") from None
        except OSError as exc:
            raise SinkError(f"writing to stdout failed: {exc}", retryable=False) from None

    async def close(self) -> None:
        self._writer.close()


class StdoutSinkConfig(msgspec.Struct, tag="stdout", tag_field="type", forbid_unknown_fields=True,
                       omit_defaults=True):
    """`sinks: [{type: stdout}]`: the events as lines of `format` (a `tetrapipe.formats` name)."""

    format: str = "tetrapipe"
    ocsf_findings: bool = False  # with format ocsf: a Detection Finding too
    select: Selection = SELECT_ALL

    def build(self, context: SinkContext) -> StdoutSink:
        fmt = build_format(self.format, only=self.select.categories, findings=self.ocsf_findings,
                           category_groups=dict(context.category_groups))
        return StdoutSink(fmt, self.select)
