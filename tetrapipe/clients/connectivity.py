"""A periodic, bounded check that a remote service answers: what /readyz means by "connected".

A Kafka consumer does not say when its brokers are gone: `getmany()` just
returns nothing while aiokafka reconnects in the background.  So a source
(or sink) that wants readiness to tell the truth runs a `ConnectivityProbe`
with a cheap request (Kafka: a metadata request).  Contract: `connected` is
True after a check succeeded within `timeout` and until one fails or times
out; each change is logged once (not each failed check).  It never raises
and never blocks the caller: checks run in their own task, `interval` apart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from tetrapipe.logs import emit


class ConnectivityProbe:
    def __init__(self, what: str, check: Callable[[], Awaitable[Any]], *, interval: float = 10.0,
                 timeout: float = 5.0, log: TextIO | None = None) -> None:
        self.what = what
        self._check = check
        self.interval = interval
        self.timeout = timeout
        self.log = log
        self.connected = True  # optimistic until a check fails: the service was reachable at start
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"tetrapipe-probe-{self.what}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check_once(self) -> bool:
        """Run one check now; returns (and records) whether the service answered in time."""
        try:
            await asyncio.wait_for(self._check(), self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable now"
            self.failures += 1
            if self.connected:
                emit(self.log, "warning", f"{self.what}: not reachable ({type(exc).__name__}: {exc}); "
                                          "/readyz reports not ready until it answers again", target=self.what)
            self.connected = False
            return False
        if not self.connected:
            emit(self.log, "info", f"{self.what}: reachable again", target=self.what)
        self.connected = True
        return True

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.check_once()
