"""`stdin` and `file` sources: newline-delimited records read in large chunks.

Reads happen in a worker thread (a regular file or an idle pipe must not block
the event loop), one chunk of up to `chunk_size` bytes per batch, so a batch
is whatever one read returned: large under load, a single line when the
input trickles (no added latency).  Positions: each envelope carries its
1-based line number; a `file` batch carries the byte offset after it, which is
what a checkpoint would store.  The next chunk is read only when the pipeline
asks for the next batch — a full pipeline stops the reading.

At the end of the input the last batch is marked `final` (an empty one when
the input ended with a newline), so what the processor still buffers is
rejected rather than lost.  A line over `max_line` bytes is rejected as
`too_large` once its newline is read (see `tetrapipe.sources.lines`; with
`spill`, the whole line travels with it for a file dead letter).

Config entries (`sources: [{type: stdin}]`, `[{type: file, path: FILE}]`; the
short forms: no flag, `--input FILE`): `StdinSourceConfig`, `FileSourceConfig`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.event.oversized import Oversized, Spill, too_large
from tetrapipe.sources.base import SourceError
from tetrapipe.sources.lines import LineSplitter
from tetrapipe.sources.reader import ThreadedReader, unless_stopped

DEFAULT_CHUNK = 1 << 20
DEFAULT_MAX_LINE = 16 << 20


class _FdLineSource:
    name = "fd"
    replays = False  # read once: after a stop, what was not read is gone (the runner flushes the decoder)

    def __init__(self, *, chunk_size: int = DEFAULT_CHUNK, max_line: int = DEFAULT_MAX_LINE,
                 spill: Spill | None = None) -> None:
        self.chunk_size = chunk_size
        self.splitter = LineSplitter(max_line, spill)
        self._fd: int | None = None
        self._reader: ThreadedReader | None = None
        self._stopping = False
        self._stop_requested: asyncio.Event | None = None
        self._line = 0
        self._offset = 0
        self._size: int | None = None  # of a regular file, for progress display

    def _open(self) -> int:
        raise NotImplementedError

    async def start(self) -> None:
        try:
            self._fd = self._open()
        except OSError as exc:
            raise SourceError(f"cannot open {self.name}: {exc}") from None
        with contextlib.suppress(OSError):
            st = os.fstat(self._fd)
            if stat.S_ISREG(st.st_mode):
                self._size = st.st_size - os.lseek(self._fd, 0, os.SEEK_CUR)
        self._reader = ThreadedReader(self._fd, self.chunk_size)

    def progress(self) -> tuple[int, int | None]:
        """(bytes read, bytes in the input if it is a regular file, else None)."""
        return self._offset, self._size

    def stop(self) -> None:
        self._stopping = True
        if self._stop_requested is not None:
            self._stop_requested.set()

    def describe(self, position: Any) -> str:
        return f"{self.name} line {position}"

    async def commit(self, position: Any) -> None:
        return None  # one-shot reads keep no checkpoint

    def _batch(self, lines: list[bytes], consumed: int, oversized: int, *, final: bool = False) -> Batch:
        first = self._line + 1
        self._line += len(lines)
        self._offset += consumed
        envelopes = list(map(Envelope, lines, range(first, self._line + 1)))  # no Python code per line
        if self.splitter.oversized != oversized:  # only then is there a line to look for
            for env in envelopes:
                if type(env.raw) is Oversized:
                    env.error = too_large(env.raw, self.splitter.max_line)
        return Batch(envelopes, self._offset, final=final)

    async def batches(self) -> AsyncIterator[Batch]:
        assert self._reader is not None, "start() first"
        self._stop_requested = asyncio.Event()
        if self._stopping:
            self._stop_requested.set()
        splitter = self.splitter
        while not self._stopping:
            chunk = await self._read_unless_stopped()
            if not chunk:
                break
            oversized = splitter.oversized
            lines = splitter.feed(chunk)
            if lines:
                yield self._batch(lines, len(chunk), oversized)
            else:
                self._offset += len(chunk)
        if not self._stopping:  # the end of the input (after a stop, the pipeline reads no further)
            oversized = splitter.oversized
            last = splitter.finish()
            yield self._batch([last] if last is not None else [], 0, oversized, final=True)

    async def _read_unless_stopped(self) -> bytes:
        """The next chunk; b"" at end of input or when stop() comes while waiting for input.

        An idle pipe would otherwise hold a graceful stop until the writer on
        the other end closes it.  Data the reader thread returns after the stop
        was not handed to the pipeline: it is neither output nor counted.
        """
        assert self._reader is not None and self._stop_requested is not None
        pending = asyncio.ensure_future(self._reader.read())
        read = await unless_stopped(pending, self._stop_requested)
        if read is None:
            pending.cancel()
            return b""
        try:
            return read.result()
        except OSError as exc:
            raise SourceError(f"reading {self.name} failed: {exc}") from None

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


class StdinSource(_FdLineSource):
    """Standard input (a pipe, a terminal or a redirected file)."""

    name = "stdin"

    def _open(self) -> int:
        return sys.stdin.fileno()


class FileSource(_FdLineSource):
    """A file read once from start to end (`--input FILE`)."""

    def __init__(self, path: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path
        self.name = path

    def _open(self) -> int:
        return os.open(self.path, os.O_RDONLY)

    async def close(self) -> None:
        await super().close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class StdinSourceConfig(msgspec.Struct, tag="stdin", tag_field="type", forbid_unknown_fields=True):
    """`sources: [{type: stdin}]` — standard input (the default)."""

    def build(self, spill: Spill | None = None) -> StdinSource:
        return StdinSource(spill=spill)


class FileSourceConfig(msgspec.Struct, tag="file", tag_field="type", forbid_unknown_fields=True):
    """`sources: [{type: file, path: FILE}]` — a file read once (`--input FILE`)."""

    path: str

    def build(self, spill: Spill | None = None) -> FileSource:
        return FileSource(self.path, spill=spill)
