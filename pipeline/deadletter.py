"""The dead-letter path for records that cannot be decoded.

`FileDeadLetter` appends each bad record unchanged, one per line, and returns
from `write()` only after the bytes are flushed to the OS (and fsynced when
`fsync=True`): a dead-lettered record's position is committed like any other,
so the dead-letter write must be as durable as a sink's.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from pipeline.envelope import Envelope


class FileDeadLetter:
    def __init__(self, path: str, *, fsync: bool = False) -> None:
        self.name = f"dead-letter file {path}"
        self.path = path
        self.fsync = fsync
        self._fd: int | None = None

    async def start(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)

    def _write(self, data: bytes) -> None:
        assert self._fd is not None, "start() first"
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        if self.fsync:
            os.fsync(self._fd)

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        data = b"".join([e.raw + b"\n" for e in envelopes])
        if data:
            await asyncio.to_thread(self._write, data)

    async def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
