"""The committer: the only place that advances source positions.

Why this shape: sinks acknowledge batches possibly out of order (several sinks,
retries), but a source position means "everything before here is done".  So the
committer keeps batches in the order the source produced them and commits only
the longest prefix of acknowledged batches — a batch acknowledged early waits
for the ones before it.  A batch whose every record was filtered or
dead-lettered is acknowledged like any other, so it can never stall commits.

Commits are rate-limited (`interval` seconds) and forced on shutdown and on
partition revocation; they are serialised (a lock), so a forced commit from a
rebalance callback and the writer's periodic one can never reach the source
out of order and move a position backwards.

Revocation support (`settled`, `forget`): `settled(owns, timeout)` waits until
no registered batch that `owns` selects is still unacknowledged; `forget(owns)`
abandons such batches — they leave the ordering (later batches no longer wait
for them) and an acknowledgement that still arrives for one is ignored, so
their positions are never committed here.  A batch that also holds input not
given up (`forget(owns, remainder)`) keeps its place for that part only.
`commit_fn` receives the merged position: dict positions (e.g. Kafka
partition → next offset) merge key by key, later batches winning; any other
position value is replaced by the later one (e.g. a file offset).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from tetrapipe.event.envelope import Batch

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
        self._forgotten: set[int] = set()  # seqs of abandoned batches whose ack must be ignored
        self._changed = asyncio.Event()  # set on every ack: wakes `settled()`
        self._lock = asyncio.Lock()  # one commit at a time, in order

    @property
    def interval(self) -> float:
        """Seconds between (unforced) commits."""
        return self._interval

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
        if batch.seq in self._forgotten:  # abandoned on revocation: its position must not be committed
            self._forgotten.discard(batch.seq)
            return
        self._done.add(batch.seq)
        self._changed.set()
        self._advance()

    def _advance(self) -> None:
        """Move the acknowledged head of the pending queue into the committable position."""
        while self._pending and self._pending[0].seq in self._done:
            head = self._pending.popleft()
            self._done.discard(head.seq)
            self._ready = merge_positions(self._ready, head.commit_position)

    def forget(self, predicate: Callable[[Batch], bool], remainder: Callable[[Batch], Any] | None = None) -> int:
        """Abandon pending batches (e.g. of revoked partitions) that will be redone elsewhere.

        They no longer hold back later batches, and their positions are never
        committed, even if a sink acknowledges them afterwards.  Returns how
        many batches gave up input (abandoned, or kept for a remainder).

        `remainder(batch)` is the part of a selected batch's position that is
        *not* given up (e.g. the partitions still owned, for a fetch that
        spanned several), or a falsy value.  A batch with a remainder is not
        abandoned: it keeps its place with only that remainder as position,
        so later batches still wait for it — committing past it would skip
        its records of the partitions still owned if it is never delivered.
        """
        kept: deque[Batch] = deque()
        dropped = 0
        for b in self._pending:
            if not predicate(b):
                kept.append(b)
                continue
            dropped += 1
            rest = remainder(b) if remainder is not None else None
            if rest:
                b.commit_position = rest
                kept.append(b)
            elif b.seq in self._done:
                self._done.discard(b.seq)
            else:
                self._forgotten.add(b.seq)
        self._pending = kept
        # Acknowledged batches that were waiting only for the abandoned ones are now a prefix.
        self._advance()
        return dropped

    def unsettled(self, predicate: Callable[[Batch], bool]) -> int:
        """How many registered, unacknowledged batches `predicate` selects."""
        return sum(1 for b in self._pending if predicate(b))

    async def settled(self, predicate: Callable[[Batch], bool], timeout: float) -> bool:
        """Wait until no batch that `predicate` selects is pending; False if `timeout` seconds pass first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        while self.unsettled(predicate):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return not self.unsettled(predicate)
        return True

    async def maybe_commit(self, *, force: bool = False) -> bool:
        """Commit the acknowledged prefix if due (or forced). True when something was committed."""
        if self._ready is None:
            return False
        if not force and self._clock() - self._last_commit < self._interval:
            return False
        async with self._lock:
            return await self._commit_ready()

    async def _commit_ready(self) -> bool:
        if self._ready is None:  # a concurrent commit took it while we waited for the lock
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
