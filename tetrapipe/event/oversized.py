"""A record over the size limit: its head, its real size, and where the whole of it was spooled.

Made by the line sources (`tetrapipe.sources.lines`), kept whole by the file dead letter
(`tetrapipe.sinks.file`), so both import it from here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

from tetrapipe.event.decode import BadInput

Spill = Callable[[], IO[bytes]]


class Oversized(bytes):
    """The head of a line that exceeded the line-size limit.

    `size`: the line's real length; `spool`: a file holding the whole line
    (read from its start), or None when no spill was configured or it failed.
    """

    size: int
    spool: IO[bytes] | None


def oversized(head: bytes, size: int, spool: IO[bytes] | None) -> Oversized:
    line = Oversized(head)
    line.size = size
    line.spool = spool
    return line


def too_large(line: Oversized, max_line: int) -> BadInput:
    """The error of a line over the line-size limit, saying what of it is kept."""
    kept = "kept whole for a file dead letter" if line.spool is not None else f"its first {max_line} bytes kept"
    return BadInput("too_large", f"line of {line.size} bytes, longer than {max_line} ({kept})")
