"""The pipeline's exit codes, and its starts and closes bounded by the shutdown deadline (see runner's docstring).

Until a stop is requested, starting or closing a sink or the source takes as long as
it takes; once one is, each is bounded by the grace deadline + STOP_MARGIN (at least
CLOSE_SLICE each): one that has not finished by then is cancelled and abandoned — not
waited for, it may ignore cancellation — and the run's exit code says so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from tetrapipe.pipeline.delivery import cancel_and_wait

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT_UNREADABLE = 2
EXIT_DRAIN_INCOMPLETE = 3  # stopped with read input undelivered (not committed) or a close abandoned
EXIT_UNREACHABLE = 4  # a Kafka cluster (input or output alike) did not answer within its startup_timeout

STOP_MARGIN = 1.5  # seconds past the grace deadline for cancelling (CANCEL_TIMEOUT) and closing
CLOSE_SLICE = 0.05  # a start or close reached after the margin is spent still gets this long


class BoundedSteps:
    """`Pipeline`'s bounded start/close steps (a mixin: it uses the pipeline's stop state and exit code)."""

    _stopping: asyncio.Event
    _deadline: float | None
    exit_code: int

    def _say(self, message: str, level: str = "warning", **context: Any) -> None:
        raise NotImplementedError

    async def _close(self, components: list[Any]) -> None:
        """Close each in turn; one that fails or is abandoned (see `_bounded`) is reported, the rest still closed."""
        for i, component in enumerate(components):
            try:
                # The ones after it keep their CLOSE_SLICE within the margin: the total stays within it.
                finished = await self._bounded(component.close(), reserve=CLOSE_SLICE * (len(components) - 1 - i))
            except Exception as exc:  # noqa: BLE001 - one failed close must not leave the others open
                self._say(f"closing {component.name} failed: {exc!r}", "error")
                if self.exit_code == EXIT_OK:
                    self.exit_code = EXIT_FAILED
                continue
            if not finished:
                self._abandoned(f"closing {component.name}")

    def _abandoned(self, what: str) -> int:
        self._say(f"{what} did not finish within the shutdown deadline; abandoned", "error")
        if self.exit_code == EXIT_OK:
            self.exit_code = EXIT_DRAIN_INCOMPLETE
        return self.exit_code

    async def _bounded(self, step: Awaitable[Any], reserve: float = 0.0) -> bool:
        """Await a start or a close: unbounded until a stop is requested, then until its deadline + STOP_MARGIN.

        (Less `reserve` seconds, but at least CLOSE_SLICE.)  False when that
        limit passed first: the step is cancelled and left behind (not waited
        for — it may ignore cancellation).  Its exception, if it finished by
        raising, is raised.
        """
        task = asyncio.ensure_future(step)
        try:
            if not self._stopping.is_set():
                stop_wait = asyncio.ensure_future(self._stopping.wait())
                try:
                    await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop_wait.cancel()
            if not task.done():
                assert self._deadline is not None  # request_stop sets it before the event
                limit = max(self._deadline + STOP_MARGIN - reserve, time.monotonic() + CLOSE_SLICE)
                await asyncio.wait({task}, timeout=limit - time.monotonic())
        except asyncio.CancelledError:
            await cancel_and_wait([task], timeout=0)
            raise
        if not task.done():
            await cancel_and_wait([task], timeout=0)  # one loop turn: a step that honours it ends now
            return False
        task.result()
        return True
