"""One open file the follow source reads, and where reading and line-splitting stand in it.

Positions here are byte offsets into one file (identified by dev + inode).
`line_start` is the offset after the last *complete* line: what a batch's
commit position carries, so a checkpoint never points into a line — also not
into a line over `max_line` bytes, which the splitter hands over (rejected,
with its whole bytes spilled when a spill is given) only once its newline is
read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple

from tetrapipe.event.oversized import Spill
from tetrapipe.sources.base import SourceError
from tetrapipe.sources.follow.checkpoint import FilePosition
from tetrapipe.sources.lines import LineSplitter


class LinePosition(NamedTuple):
    """Where one record starts: the file's name when it was opened, and the byte offset."""

    file: str
    offset: int


@dataclass(eq=False)
class Followed:
    """An open file being followed: its descriptor, identity, and reading / line-splitting state."""

    fd: int
    dev: int
    inode: int
    path: str
    max_line: int
    splitter: LineSplitter
    read_offset: int = 0  # the next byte to read
    line_start: int = 0  # first byte of the unfinished line = offset after the last complete line
    rotated_at: float | None = None  # monotonic time a new file was seen at the followed path

    @classmethod
    def open(cls, path: str, max_line: int, spill: Spill | None = None) -> Followed | None:
        """`path` opened for reading, its identity from the descriptor (not a racy stat by name); None if absent."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:  # e.g. no permission: waiting would not help
            raise SourceError(f"cannot open {path}: {exc}") from None
        st = os.fstat(fd)
        return cls(fd, st.st_dev, st.st_ino, path, max_line, LineSplitter(max_line, spill))

    @property
    def ident(self) -> tuple[int, int]:
        return (self.dev, self.inode)

    @property
    def label(self) -> str:
        return os.path.basename(self.path)

    def position(self) -> FilePosition:
        return FilePosition(self.dev, self.inode, self.line_start)

    def seek(self, offset: int) -> None:
        """Resume at `offset`, which must be a line boundary (a checkpoint's)."""
        self.read_offset = self.line_start = offset

    def rewind(self) -> None:
        """Forget everything read: the file was truncated, its unfinished line is gone."""
        self.seek(0)
        self.splitter.discard()

    def split(self, chunk: bytes) -> tuple[list[bytes], list[int]]:
        """Feed the next `chunk` read at `read_offset`: the lines it completes and each one's start offset."""
        base = self.read_offset
        self.read_offset += len(chunk)
        lines = self.splitter.feed(chunk)
        starts = self._line_starts(chunk, base)
        if len(starts) != len(lines):  # cannot happen while the mirror matches LineSplitter
            starts = [self.line_start] * len(lines)
        return lines, starts

    def finish(self) -> tuple[bytes, int] | None:
        """The last line without a newline, with its start, once the file will not grow (rotated away)."""
        last = self.splitter.finish()
        if last is None:
            return None
        start, self.line_start = self.line_start, self.read_offset
        return last, start

    def _line_starts(self, chunk: bytes, base: int) -> list[int]:
        """Offsets of the lines the splitter returns for `chunk`; advances `line_start`.

        Mirrors LineSplitter's rule: every newline ends exactly one line
        (oversized ones included), which starts where the previous one ended.
        """
        starts: list[int] = []
        start = self.line_start
        nl = chunk.find(b"\n")
        while nl >= 0:
            starts.append(start)
            start = base + nl + 1
            nl = chunk.find(b"\n", nl + 1)
        self.line_start = start
        return starts


def last_line_boundary(fd: int, size: int, max_line: int, block: int = 64 << 10) -> int:
    """The offset after the last newline in the file's last `max_line` bytes.

    0 when the file holds no newline; when none is within `max_line` bytes,
    the point where the search stopped (the oversized line's fragment from
    there is handed over and rejected like any oversized or invalid line).

    Used by `start_at="end"`; starting at the raw end could start in the
    middle of a line the writer is still writing, and hand over its tail as a
    line of its own.
    """
    end = size
    while end > 0 and size - end < max_line:
        begin = max(0, end - block)
        data = os.pread(fd, end - begin, begin)
        nl = data.rfind(b"\n")
        if nl >= 0:
            return begin + nl + 1
        end = begin
    return 0 if end == 0 else end


__all__ = ["Followed", "LinePosition", "last_line_boundary"]
