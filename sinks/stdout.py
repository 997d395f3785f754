"""`stdout` sink: the enriched JSON lines (`json`) or only the summary lines (`summary`).

`write()` returns after the bytes are handed to the kernel (all of them: short
writes are continued), which is as durable as a pipe gets.  The blocking write
runs in a worker thread so a slow reader applies backpressure to the pipeline
without freezing the event loop.  A reader that closes the pipe (`| head`)
raises `SinkClosed`: the run stops quietly.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

from pipeline.envelope import Envelope
from sinks.base import SELECT_ALL, Selection, SinkClosed, SinkError


def render_json(envelopes: Sequence[Envelope]) -> bytes:
    outs = [e.out for e in envelopes]
    outs.append(b"")  # the join then ends with a newline, without copying the buffer again
    return b"\n".join(outs)


def render_summary(envelopes: Sequence[Envelope], only: frozenset[str] = frozenset()) -> bytes:
    """One line per (event, category), categories in sorted order, as `jq -r` prints them."""
    lines: list[str] = []
    for env in envelopes:
        for cid, line in env.tags.summaries.items():
            if not only or cid in only:
                lines.append(line)
    if not lines:
        return b""
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class StdoutSink:
    def __init__(self, fmt: str = "json", selection: Selection = SELECT_ALL, fd: int | None = None) -> None:
        if fmt not in ("json", "summary"):
            raise ValueError(f"unknown output format {fmt!r} (json, summary)")
        self.name = "stdout"
        self.format = fmt
        self.selection = selection
        self._fd = fd if fd is not None else sys.stdout.fileno()

    async def start(self) -> None:
        return None

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        if self.format == "json":
            data = render_json(envelopes)
        else:
            data = render_summary(envelopes, self.selection.categories)
        if not data:
            return
        try:
            await asyncio.to_thread(write_all, self._fd, data)
        except BrokenPipeError:
            raise SinkClosed("stdout was closed by its reader") from None
        except OSError as exc:
            raise SinkError(f"writing to stdout failed: {exc}", retryable=False) from None

    async def close(self) -> None:
        return None
