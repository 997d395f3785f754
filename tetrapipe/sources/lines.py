"""Split a byte stream into bounded lines.

`LineSplitter.feed(chunk)` returns the complete lines in the chunk (without
their newline), in order, and keeps the unfinished tail; `finish()` returns
the last line when the input did not end with a newline.  Every newline ends
exactly one line, so a caller can count lines and offsets the same way.

A line longer than `max_line` is not buffered whole: it is returned, once
complete, as an `Oversized` line holding its first `max_line` bytes (the head)
and its real `size` (the caller rejects it as `too_large`).  Memory stays
bounded by `max_line` plus one chunk.  With a `spill` (a factory of writable
binary files, e.g. `FileDeadLetter.spool`), the whole line is also written to
such a file as it is read, chunk by chunk, and handed over as the
`Oversized`'s `spool` — so a dead letter can keep the line unchanged.
"""

from __future__ import annotations

from typing import IO

from tetrapipe.event.oversized import Oversized, Spill, oversized


class _LongLine:
    """A line over the limit, still being read: its head, its size so far, the spool of all of it."""

    def __init__(self, start: bytes, max_line: int, spill: Spill | None) -> None:
        self.head = start[:max_line]
        self.size = 0
        self.spool: IO[bytes] | None = None
        if spill is not None:
            try:
                self.spool = spill()
            except OSError:
                self.spool = None  # the head is still kept, as without a spill
        self.add(start)

    def add(self, piece: bytes) -> None:
        self.size += len(piece)
        if self.spool is not None:
            try:
                self.spool.write(piece)
            except OSError:
                self.spool.close()
                self.spool = None

    def close(self) -> Oversized:
        if self.spool is not None:
            try:
                self.spool.flush()
                self.spool.seek(0)
            except OSError:
                self.spool.close()
                self.spool = None
        return oversized(self.head, self.size, self.spool)

    def discard(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None


class LineSplitter:
    def __init__(self, max_line: int, spill: Spill | None = None) -> None:
        self.max_line = max_line
        self.spill = spill
        self._tail = b""
        self._long: _LongLine | None = None  # a line over the limit whose newline has not come yet
        self.oversized = 0  # Oversized lines returned so far

    def feed(self, chunk: bytes) -> list[bytes]:
        """Complete lines found so far, in input order (lines over the limit as `Oversized`)."""
        ended: list[bytes] = []
        if self._long is not None:
            nl = chunk.find(b"\n")
            if nl < 0:
                self._long.add(chunk)
                return ended
            self._long.add(chunk[:nl])
            ended.append(self._long.close())
            self._long = None
            self.oversized += 1
            chunk = chunk[nl + 1:]
        carried = len(self._tail)
        # memchr per line (find) rather than split(), which compares every byte in a loop of its
        # own: for lines of a kilobyte or more (Tetragon's) this is the cheaper way.
        lines: list[bytes] = []
        append = lines.append
        find = chunk.find
        start = 0
        nl = find(b"\n")
        while nl >= 0:
            append(chunk[start:nl])
            start = nl + 1
            nl = find(b"\n", start)
        tail = chunk[start:]
        if self._tail:
            # Only the first line continues the previous chunk: joining there,
            # rather than tail + chunk, avoids copying the whole chunk once more.
            if lines:
                lines[0] = self._tail + lines[0]
            else:
                tail = self._tail + tail
        if len(chunk) + carried > self.max_line and any(len(line) > self.max_line for line in lines):
            lines = [self._whole(line) if len(line) > self.max_line else line for line in lines]
        if len(tail) > self.max_line:
            self._long = _LongLine(tail, self.max_line, self.spill)
            tail = b""
        self._tail = tail
        if ended:
            ended += lines
            return ended
        return lines

    def _whole(self, line: bytes) -> Oversized:
        """A complete line over the limit that arrived within one read."""
        long = _LongLine(line, self.max_line, self.spill)
        self.oversized += 1
        return long.close()

    def finish(self) -> bytes | None:
        """The last line when the input did not end with a newline."""
        if self._long is not None:
            last, self._long = self._long.close(), None
            self.oversized += 1
            return last
        tail, self._tail = self._tail, b""
        return tail if tail else None

    def discard(self) -> None:
        """Forget the unfinished line (the input it came from is gone, e.g. truncated)."""
        self._tail = b""
        if self._long is not None:
            self._long.discard()
            self._long = None
