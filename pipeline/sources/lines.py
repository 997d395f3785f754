"""Split a byte stream into bounded lines.

`LineSplitter.feed(chunk)` returns the complete lines in the chunk (without
their newline), in order, and keeps the unfinished tail.  A line longer than
`max_line` is not buffered whole: its first `max_line` bytes are returned as
an `Oversized` line (the caller dead-letters it as `too_large`) and the rest
is skipped up to the next newline, so memory stays bounded by `max_line`.
"""

from __future__ import annotations


class Oversized(bytes):
    """The head of a line that exceeded the line-size limit."""


class LineSplitter:
    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._tail = b""
        self._skipping = False
        self.oversized = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        """Complete lines found so far, in input order (oversized heads as `Oversized`)."""
        heads: list[bytes] = []
        if self._skipping:
            nl = chunk.find(b"\n")
            if nl < 0:
                return heads
            chunk = chunk[nl + 1:]
            self._skipping = False
        carried = len(self._tail)
        lines = chunk.split(b"\n")
        if self._tail:
            # Only the first line continues the previous chunk: joining there,
            # rather than tail + chunk, avoids copying the whole chunk once more.
            lines[0] = self._tail + lines[0]
        self._tail = lines.pop()
        if len(chunk) + carried > self.max_line and any(len(line) > self.max_line for line in lines):
            lines = [Oversized(line[: self.max_line]) if len(line) > self.max_line else line for line in lines]
            self.oversized += sum(1 for line in lines if type(line) is Oversized)
        if len(self._tail) > self.max_line:
            lines.append(Oversized(self._tail[: self.max_line]))
            self.oversized += 1
            self._tail = b""
            self._skipping = True
        return lines

    def finish(self) -> bytes | None:
        """The last line when the input did not end with a newline."""
        tail, self._tail = self._tail, b""
        return tail if tail and not self._skipping else None
