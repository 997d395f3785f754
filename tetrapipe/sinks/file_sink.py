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

A torn tail: a writer killed in the middle of a write (SIGKILL, OOM, a power
loss without `fsync: true`) can leave the file ending in part of a line.  That
line's batch was never acknowledged, so the restarted run writes it again,
whole.  On `start()`, a regular file that does not end with a newline is cut
back to its last newline (a WARNING gives the bytes cut), so the half line is
not glued to the next run's first line.  The file is taken to be this sink's
own: do not point another writer at it.  A FIFO or device is left as it is,
and so is stdout redirected to a file by a shell (the `stdout` sink cannot
cut it): a reader of such output drops a last line without its newline.

Not the dead letter: `tetrapipe.sinks.file` appends *rejected records*
unchanged; this sink appends *events*, formatted.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from collections.abc import Sequence

import msgspec

from tetrapipe.event.envelope import Envelope
from tetrapipe.formats import build_format
from tetrapipe.formats.base import Format
from tetrapipe.logs import emit
from tetrapipe.sinks.base import SELECT_ALL, Selection, SinkContext, SinkError

_TRANSIENT = frozenset({errno.ENOSPC, errno.EDQUOT})
_TAIL_READ = 1 << 16  # bytes read at a time, backwards, looking for the last newline


def cut_torn_tail(fd: int, *, block: int = _TAIL_READ) -> int:
    """Cut a regular file open on `fd` back to just after its last newline; the bytes cut (0: none, not regular)."""
    info = os.fstat(fd)
    size = info.st_size if stat.S_ISREG(info.st_mode) else 0
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return 0
    end = size
    while end > 0:  # the torn line is one line: read back until its start (or the file's)
        start = max(0, end - block)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    os.ftruncate(fd, end)
    return size - end


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
            self._fd = await asyncio.to_thread(self._open)
        except OSError as exc:
            raise SinkError(f"cannot open {self.path}: {exc.strerror or exc}", retryable=False) from None

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return fd  # a FIFO or device: nothing to cut, and not readable back
        os.close(fd)  # read back too: O_RDWR on a regular file only (on a FIFO nobody reads it would not block)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
        try:
            cut = cut_torn_tail(fd)
        except OSError:
            os.close(fd)
            raise
        if cut:
            emit(None, "warning", f"{self.path} ended in a torn line (a writer stopped in the middle of a write): "
                 f"cut {cut} bytes back to its last newline; that record was never acknowledged and is written "
                 "again whole", sink=self.name, cut_bytes=cut)
        return fd

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
