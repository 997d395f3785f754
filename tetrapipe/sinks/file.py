"""The dead-letter path for records that cannot be decoded.

`FileDeadLetter` appends each bad record unchanged, one per line, and returns
from `write()` only after the bytes are flushed to the OS (and fsynced when
`fsync=True`): a dead-lettered record's position is committed like any other,
so the dead-letter write must be as durable as a sink's.

A line over the sources' line-size limit is never held in memory whole: it
arrives as an `Oversized` head whose `spool` holds the whole line (when the
source was given `spool` as its spill), and is copied from there chunk by
chunk, so the file keeps it unchanged while memory stays bounded.  Spools are
anonymous files in the dead-letter file's directory (writable by definition;
the root filesystem may not be), gone when closed or when the process ends.

Config entry: `dead_letter: {type: file, path: FILE, fsync: false}` (`FileDeadLetterConfig`); the
short form is `--dead-letter FILE`.  (`tetrapipe.sinks.file_sink` is the `file` *sink*: formatted events.)
"""

from __future__ import annotations

import asyncio
import errno
import os
import tempfile
from collections.abc import Sequence
from typing import IO

import msgspec

from tetrapipe.event.envelope import Envelope
from tetrapipe.event.oversized import Oversized
from tetrapipe.sinks.base import SinkContext, SinkError

_COPY_CHUNK = 1 << 20
_TRANSIENT = frozenset({errno.ENOSPC, errno.EDQUOT})  # the disk is full: retried until space comes back


class FileDeadLetter:
    def __init__(self, path: str, *, fsync: bool = False) -> None:
        self.name = f"dead-letter file {path}"
        self.path = path
        self.fsync = fsync
        self._fd: int | None = None

    async def start(self) -> None:
        try:  # in a thread: opening a FIFO nobody reads would otherwise block the event loop
            self._fd = await asyncio.to_thread(os.open, self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        except OSError as exc:
            raise SinkError(f"cannot open the dead-letter file {self.path}: {exc.strerror or exc}",
                            retryable=False) from None

    def spool(self) -> IO[bytes]:
        """A new anonymous file for one oversized line (a source's `spill`)."""
        directory = os.path.dirname(os.path.abspath(self.path))
        return tempfile.TemporaryFile(dir=directory, prefix=".tetrapipe-spool-")

    def _write(self, data: bytes | memoryview) -> None:
        assert self._fd is not None, "start() first"
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    def _write_records(self, envelopes: Sequence[Envelope]) -> None:
        """Each record and its newline, in order; spooled lines copied from their spool."""
        pending: list[bytes] = []
        for env in envelopes:
            spool = env.raw.spool if type(env.raw) is Oversized else None
            if spool is None:
                pending += (env.raw, b"\n")
                continue
            if pending:
                self._write(b"".join(pending))
                pending = []
            self._copy(spool)
            pending.append(b"\n")
        if pending:
            self._write(b"".join(pending))
        if self.fsync:
            assert self._fd is not None
            os.fsync(self._fd)

    def _copy(self, spool: IO[bytes]) -> None:
        spool.seek(0)
        while block := spool.read(_COPY_CHUNK):
            self._write(block)

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        """Append the records; a full disk is retryable (space may come back), other errors are not.

        A write that failed part-way is retried whole: the file may then hold the records written
        before the failure twice (at-least-once, like every sink).
        """
        try:
            await self._append(envelopes)
        except OSError as exc:
            raise SinkError(f"writing the dead-letter file {self.path} failed: {exc.strerror or exc}",
                            retryable=exc.errno in _TRANSIENT) from None

    async def _append(self, envelopes: Sequence[Envelope]) -> None:
        if any(type(e.raw) is Oversized and e.raw.spool is not None for e in envelopes):
            await asyncio.to_thread(self._write_records, envelopes)
            for env in envelopes:  # written: the spools are not needed any more
                if type(env.raw) is Oversized and env.raw.spool is not None:
                    env.raw.spool.close()
                    env.raw.spool = None
            return
        data = b"".join([e.raw + b"\n" for e in envelopes])
        if data:
            await asyncio.to_thread(self._write_and_sync, data)

    def _write_and_sync(self, data: bytes) -> None:
        self._write(data)
        if self.fsync:
            assert self._fd is not None
            os.fsync(self._fd)

    async def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class FileDeadLetterConfig(msgspec.Struct, tag="file", tag_field="type", forbid_unknown_fields=True,
                           omit_defaults=True):
    """`dead_letter: {type: file, path: FILE}`: bad records appended unchanged (`--dead-letter FILE`)."""

    path: str
    fsync: bool = False  # true: each write is fsynced before it counts as acknowledged

    def build(self, context: SinkContext) -> FileDeadLetter:  # noqa: ARG002 - needs nothing from the run
        return FileDeadLetter(self.path, fsync=self.fsync)
