"""The committer: the only place that advances source positions.

Why this shape: sinks acknowledge batches possibly out of order (several sinks,
retries), but a source position means "everything before here is done".  So the
committer keeps batches in the order the source produced them and commits only
the longest prefix of acknowledged batches — a batch acknowledged early waits
for the ones before it.  A batch whose every record was filtered or
dead-lettered is acknowledged like any other, so it can never stall commits.

Commits are rate-limited (`interval` seconds) and forced on shutdown and on
partition revocation.  `commit_fn` receives the merged position: dict positions
(e.g. Kafka partition → next offset) merge key by key, later batches winning;
any other position value is replaced by the later one (e.g. a file offset).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from pipeline.envelope import Batch

CommitFn = Callable[[Any], Awaitable[None]]


def merge_positions(current: Any, newer: Any) -> Any:
    if newer is None:
        return current
    if isinstance(newer, dict):
        merged = dict(current) if isinstance(current, dict) else {}
        merged.update(newer)
        return merged
    return newer


class Committer:
    def __init__(self, commit_fn: CommitFn | None, *, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._commit_fn = commit_fn
        self._interval = interval
        self._clock = clock
        self._pending: deque[Batch] = deque()
        self._done: set[int] = set()
        self._next_seq = 0
        self._ready: Any = None  # merged position of acknowledged prefix not yet committed
        self._last_commit = clock()
        self.committed: Any = None  # the last position handed to commit_fn successfully
        self.commits = 0

    @property
    def in_flight(self) -> int:
        """Batches registered and not yet part of an acknowledged prefix."""
        return len(self._pending)

    def register(self, batch: Batch) -> None:
        """Record a batch in source order; call before any sink sees it."""
        batch.seq = self._next_seq
        self._next_seq += 1
        self._pending.append(batch)

    def ack(self, batch: Batch) -> None:
        """Mark a batch delivered to every sink that selected any of its records."""
        if batch.seq < 0:
            raise ValueError("ack() of a batch that was never registered")
        self._done.add(batch.seq)
        while self._pending and self._pending[0].seq in self._done:
            head = self._pending.popleft()
            self._done.discard(head.seq)
            self._ready = merge_positions(self._ready, head.commit_position)

    def forget(self, predicate: Callable[[Batch], bool]) -> None:
        """Drop pending batches (e.g. of revoked partitions) that will be redone elsewhere."""
        kept = deque(b for b in self._pending if not predicate(b))
        self._pending = kept

    async def maybe_commit(self, *, force: bool = False) -> bool:
        """Commit the acknowledged prefix if due (or forced). True when something was committed."""
        if self._ready is None:
            return False
        if not force and self._clock() - self._last_commit < self._interval:
            return False
        position, self._ready = self._ready, None
        try:
            if self._commit_fn is not None:
                await self._commit_fn(position)
        except BaseException:
            self._ready = merge_positions(position, self._ready)  # retry it next time
            raise
        self.committed = position
        self.commits += 1
        self._last_commit = self._clock()
        return True
