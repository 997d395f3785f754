"""The parts of exactly-once bookkeeping that need no producer: the interfaces `Transactions` uses,
the transaction bounds, how a delivery group is cut into transactions, and what one attempt wrote.

See tetrapipe.sinks.kafka.transactions for the contract.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import TopicPartition

from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.sinks.base import SinkError

RawWrite = Callable[[Sequence[Envelope]], Awaitable[None]]


class Delivery(Protocol):
    """What the runner's delivery offers (tetrapipe.pipeline.delivery.Delivery)."""

    failing: dict[str, str]

    deadline: Callable[[], float | None]  # the shutdown deadline (monotonic), or None

    async def deliver(self, group: list[Batch]) -> None: ...


class Ownership(Protocol):
    """What the Kafka source tells the transactions (tetrapipe.sources.kafka.source.KafkaSource)."""

    ownership_lock: asyncio.Lock

    def owns(self, partition: tuple[str, int]) -> bool: ...

    def revoked_at(self, partition: tuple[str, int]) -> float: ...  # monotonic time it was last given up

    def transaction_offsets(self, position: dict[TopicPartition, int]) -> dict[TopicPartition, int]: ...

    def transaction_committed(self, offsets: dict[TopicPartition, int]) -> None: ...


@dataclass(frozen=True)
class Bounds:
    max_records: int = 20_000
    max_bytes: int = 32 << 20
    max_seconds: float = 30.0


def chunks(group: list[Batch], bounds: Bounds) -> list[list[Batch]]:
    """`group` cut, in order, into runs of batches within the bounds (a single larger batch stays whole)."""
    out: list[list[Batch]] = [[]]
    records = size = 0
    for batch in group:
        n, b = len(batch.envelopes), sum(len(e.raw) for e in batch.envelopes)
        if out[-1] and (records + n > bounds.max_records or size + b > bounds.max_bytes):
            out.append([])
            records = size = 0
        out[-1].append(batch)
        records, size = records + n, size + b
    return out


def group_position(group: list[Batch]) -> dict[TopicPartition, int]:
    merged: dict[TopicPartition, int] = {}
    for batch in group:
        if isinstance(batch.commit_position, dict):
            merged.update(batch.commit_position)
    return merged


@dataclass
class Attempt:
    """One transaction: the writes it was given (to redo them) and the first failure."""

    writes: list[tuple[RawWrite, list[Envelope]]] = field(default_factory=list)
    error: SinkError | None = None
    started: float = field(default_factory=time.monotonic)  # the transaction's age counts from here
    read_before: float = field(default_factory=time.monotonic)  # every record in it was read before this

    def partitions(self) -> set[tuple[str, int]]:
        return {e.position[:2] for _, envs in self.writes for e in envs if isinstance(e.position, tuple)}


def drop_stale(chunk: list[Batch], ownership: Ownership) -> None:
    """Drop from `chunk` the records of partitions given up since their batch was read.

    Such a batch was abandoned by a revocation that outlasted `revoke_timeout`;
    if the partition came back to this worker, the same records are being
    fetched again from the committed offset — writing these too would
    duplicate them, and committing their position would skip the refetched
    ones.  (The committer forgot these batches, or kept them only for the
    partitions still owned: it reads no position of theirs any more.)
    """
    for batch in chunk:
        stale = {tp for tp in (batch.commit_position or {}) if ownership.revoked_at(tp) >= batch.read_at}
        if stale:
            batch.commit_position = {tp: o for tp, o in batch.commit_position.items() if tp not in stale}
            batch.good = [e for e in batch.good if e.position[:2] not in stale]
            batch.bad = [e for e in batch.bad if not isinstance(e.position, tuple) or e.position[:2] not in stale]
