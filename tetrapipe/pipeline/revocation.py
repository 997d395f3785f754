"""Revocation: finishing, or abandoning, the in-flight batches of input the source is losing (see runner's docstring).

A source that loses part of its input while running (a Kafka consumer-group rebalance)
asks the pipeline, through `drain`, to finish the in-flight batches that `owns` selects
within a deadline: delivered, acknowledged and committed — or, past the deadline,
abandoned (their positions never committed, so the input's next owner redoes them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tetrapipe.event.envelope import Batch
from tetrapipe.pipeline.commit import Committer


class Revocation:
    """`Pipeline.drain` (a mixin: it uses the pipeline's committer, deadline and running state)."""

    committer: Committer
    _deadline: float | None
    _running: bool

    def _say(self, message: str, level: str = "warning", **context: Any) -> None:
        raise NotImplementedError

    async def _commit(self, *, force: bool = False) -> None:
        raise NotImplementedError

    async def drain(self, owns: Callable[[Batch], bool], timeout: float,
                    remainder: Callable[[Batch], Any] | None = None) -> bool:
        """Finish the registered batches that `owns` selects (partition revocation); never raises.

        Waits up to `timeout` seconds (less if a shutdown deadline comes
        first) until each of them is acknowledged, then forces a commit of
        the acknowledged prefix — the source must still own the input while
        this runs (Kafka: inside `on_partitions_revoked`).  True when all
        were committed.  Otherwise they are abandoned (see the module doc)
        and False is returned; `remainder` gives the position a batch keeps
        for input it still owns (see `Committer.forget`).  Batches the source
        read but did not yet hand over are the source's to drop.
        """
        if self._deadline is not None:
            timeout = min(timeout, max(0.0, self._deadline - time.monotonic()))
        if self._running:
            drained = await self.committer.settled(owns, timeout)
        else:  # nothing can be acknowledged any more
            drained = not self.committer.unsettled(owns)
        try:
            await self._commit(force=True)
        except Exception as exc:  # noqa: BLE001 - a failed commit means "redo", never a crash here
            self._say(f"commit before revocation failed: {exc!r}; the work will be redone")
            drained = False
        if not drained:
            abandoned = self.committer.forget(owns, remainder)
            if abandoned:
                self._say(f"revocation: {abandoned} in-flight batches not delivered within "
                          f"{timeout:.1f}s; abandoned to be redone by the next owner")
        return drained
