"""`file` sink: each batch appended to a file as lines of its format (like Vector's `file` sink).

    sinks:
      - {type: file, path: /var/log/tetrapipe/events.jsonl, format: tetrapipe, fsync: false}

Acknowledged = written: `write()` returns once every byte of the batch was
handed to the kernel with write(2) on a descriptor opened O_APPEND (so other
appenders do not interleave within a write, and a crashed process loses
nothing the kernel took).  With `fsync: true` it also returns only after
fsync(2), which survives a power loss too, at the cost of one disk flush per
batch.  A full disk (ENOSPC, EDQUOT) is retryable — space may come back —
other errors are fatal.  A write that failed part-way is retried whole, so
the file may then hold the lines written before the failure twice
(at-least-once, like every sink).  `format:` is any `tetrapipe.formats` name;
`select:` narrows the events as for any sink.

Not the dead letter: `tetrapipe.sinks.file` appends *rejected records*
unchanged; this sink appends *events*, formatted.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Sequence

import msgspec

from tetrapipe.event.envelope import Envelope
from tetrapipe.formats import build_format
from tetrapipe.formats.base import Format
from tetrapipe.sinks.base import SELECT_ALL, Selection, SinkContext, SinkError

_TRANSIENT = frozenset({errno.ENOSPC, errno.EDQUOT})


class FileSink:
    """Appends the lines of `format` for each batch to `path`."""

    def __init__(self, path: str, fmt: Format, selection: Selection = SELECT_ALL, *, fsync: bool = False) -> None:
        self.name = f"file {path}"
        self.path = path
        self.format = fmt
        self.selection = selection
        self.fsync = fsync
        self._fd: int | None = None

    async def start(self) -> None:
        try:  # in a thread: opening a FIFO nobody reads would block the event loop
            self._fd = await asyncio.to_thread(os.open, self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        except OSError as exc:
            raise SinkError(f"cannot open {self.path}: {exc.strerror or exc}", retryable=False) from None

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        data = self.format.lines(envelopes)
        if not data:
            return
        try:
            await asyncio.to_thread(self._append, data)
        except OSError as exc:
            raise SinkError(f"writing {self.path} failed: {exc.strerror or exc}",
                            retryable=exc.errno in _TRANSIENT) from None

    def _append(self, data: bytes) -> None:
        fd = self._fd
        if fd is None:
            raise OSError(errno.EBADF, "the file sink is not started")
        view = memoryview(data)
        while view:  # write(2) may take less than asked (a signal, a nearly full disk)
            view = view[os.write(fd, view):]
        if self.fsync:
            os.fsync(fd)

    async def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class FileSinkConfig(msgspec.Struct, tag="file", tag_field="type", forbid_unknown_fields=True,
                     omit_defaults=True):
    """`sinks: [{type: file, path: FILE}]`: events appended as lines of `format`."""

    path: str
    format: str = "tetrapipe"
    ocsf_findings: bool = False  # with format ocsf: a Detection Finding too
    fsync: bool = False  # true: acknowledged only after fsync(2) (survives power loss; one disk flush per batch)
    select: Selection = SELECT_ALL

    def build(self, context: SinkContext) -> FileSink:
        fmt = build_format(self.format, only=self.select.categories, findings=self.ocsf_findings,
                           category_groups=dict(context.category_groups))
        return FileSink(self.path, fmt, self.select, fsync=self.fsync)
