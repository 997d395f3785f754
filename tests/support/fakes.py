"""In-memory fakes of tetrapipe's own interfaces (source, sink), scriptable for failure tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.sinks.base import SELECT_ALL, Selection, SinkClosed, SinkError
from tetrapipe.sources.base import SourceError


class ListSource:
    """Yields the given lines in batches of `batch_size`; position = index after the batch."""

    name = "list"

    def __init__(self, lines: Sequence[bytes], batch_size: int = 10, *, fail_start: bool = False) -> None:
        self.lines = list(lines)
        self.batch_size = batch_size
        self.fail_start = fail_start
        self.commits: list[Any] = []
        self.batches_pulled = 0
        self.stopped = False
        self.closed = False
        self.gate: asyncio.Event | None = None  # when set, each batch waits for the gate

    async def start(self) -> None:
        if self.fail_start:
            raise SourceError("cannot open list: scripted failure")

    async def batches(self) -> AsyncIterator[Batch]:
        for start in range(0, len(self.lines), self.batch_size):
            if self.stopped:
                return
            if self.gate is not None:
                await self.gate.wait()
            self.batches_pulled += 1
            chunk = self.lines[start:start + self.batch_size]
            yield Batch([Envelope(line, start + i + 1) for i, line in enumerate(chunk)], start + len(chunk))

    async def commit(self, position: Any) -> None:
        self.commits.append(position)

    def stop(self) -> None:
        self.stopped = True

    async def close(self) -> None:
        self.closed = True

    def describe(self, position: Any) -> str:
        return f"list item {position}"


class ScriptedSink:
    """Records what it acknowledged; fails or blocks as scripted."""

    def __init__(self, name: str = "fake", selection: Selection = SELECT_ALL) -> None:
        self.name = name
        self.selection = selection
        self.delivered: list[Envelope] = []
        self.attempts = 0
        self.fail_retryable = 0  # fail this many writes with a retryable error
        self.fail_fatal = False
        self.closed_by_reader = False
        self.release: asyncio.Event | None = None  # when set, writes wait for it
        self.started = self.closed = False

    async def start(self) -> None:
        self.started = True

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        self.attempts += 1
        if self.release is not None:
            await self.release.wait()
        if self.closed_by_reader:
            raise SinkClosed("reader went away")
        if self.fail_fatal:
            raise SinkError("scripted fatal failure", retryable=False)
        if self.fail_retryable > 0:
            self.fail_retryable -= 1
            raise SinkError("scripted outage", retryable=True, retry_after=0.001)
        self.delivered.extend(envelopes)

    async def close(self) -> None:
        self.closed = True
