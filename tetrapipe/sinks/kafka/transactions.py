"""Kafka → Kafka exactly once: one producer transaction per delivery group (`kafka.exactly_once: true`).

Contract.  `Transactions.run(group, deliver)` is the runner's delivery step in
this mode.  It begins a transaction on the worker's one transactional
producer, lets the ordinary delivery write the group (the routed sink and
the dead-letter topic are `TransactionalKafkaSink` / `TransactionalDeadLetter`,
which share that producer), adds the group's consumed offsets with
`send_offsets_to_transaction`, and commits.  It returns only once the
transaction is committed: output records and input offsets became visible
together, for a `read_committed` reader, or not at all.  The regular
committer commits nothing in this mode (the pipeline gets `Committer(None)`,
and the source's own `commit` refuses to).

Failure.  A write inside a transaction never raises to the delivery: it
records what it was asked to write and, on failure, marks the transaction
lost (so the delivery neither retries a write into a dead transaction nor
cancels its siblings half-way).  Then the transaction is aborted and the
group is redone from memory in a new one — the same records from the last
committed offsets, i.e. the rewind, without refetching: earlier groups are
all committed, so the group starts exactly at the committed offsets, and the
batches queued behind it follow it in order.  Retried with backoff for as
long as it takes (an outage never becomes a drop); a fatal error (refused
authorisation, a fenced producer) aborts and stops the run; past the
shutdown deadline, or when cancelled, the transaction is aborted and nothing
is acknowledged.  The group's filters/rate limits/dedup ran once, in the
first delivery; a redo replays the records the sinks were given.

Bounds.  A group larger than `max_records` / `max_bytes` is split into
several transactions (in order).  A transaction older than `max_seconds`
when it would commit is aborted and redone, so none stays open near the
producer's `transaction.timeout.ms` (`timeout_ms`, ≤ the broker's
`transaction.max.timeout.ms`, 15 min by default) — past it the coordinator
aborts it itself and fences the producer (the run then stops, fatal).

Fencing (why this rule).  aiokafka 0.14 sends TxnOffsetCommit v0: no group
generation or member id, so KIP-447 (fencing by consumer-group metadata) is
not available; the group coordinator cannot tell a zombie's offset commit
from the owner's.  What it supports is the KIP-98 rule: a zombie is fenced
when its successor initialises the same `transactional_id`.  tetrapipe uses
one id per worker (`kafka.transactions.transactional_id`, default
`tetrapipe-<group>-<hostname>`: stable across restarts of the same pod of a
StatefulSet, or the same host): a restarted worker fences its killed
predecessor and aborts its open transaction at once.  Across workers (a
takeover), ownership is guarded instead of fenced: on revocation the source
drains — the in-flight transaction is committed within `revoke_timeout` or
aborted — and gives partitions up under `ownership_lock`, the lock this
module holds while it checks ownership and commits; a transaction touching a
partition no longer owned is aborted and redone without it.  A dead
worker's open transaction blocks nothing for correctness (its offsets were
never committed, so the new owner starts from the last committed ones) and
is aborted by the coordinator after `timeout_ms`.  What only per-input-
partition ids or KIP-447 would close: a worker evicted from the group (e.g.
frozen past `session_timeout_ms`) that commits before it notices.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.producer.transaction_manager import TransactionState

from tetrapipe.clients.kafka import KafkaConnection, KafkaConnectionError
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.logs import emit
from tetrapipe.sinks.base import SinkError
from tetrapipe.sinks.kafka.sink import _Producer, sink_error
from tetrapipe.sinks.kafka.topics import ensure_topics
from tetrapipe.sinks.kafka.transaction_groups import (
    Attempt,
    Bounds,
    Delivery,
    Ownership,
    RawWrite,
    chunks,
    drop_stale,
    group_position,
)

__all__ = ["Bounds", "Delivery", "Ownership", "Transactions", "chunks", "group_position"]

_nested = contextvars.ContextVar("tetrapipe_txn_nested", default=False)  # a write made by a recorded write


class Transactions:
    """The worker's transactional producer, shared by the sink and the dead letter; see the module doc."""

    def __init__(self, connection: KafkaConnection, options: dict[str, Any], transactional_id: str, group_id: str,
                 ownership: Ownership, *,
                 bounds: Bounds | None = None, timeout_ms: int = 60_000, backoff: float = 0.2) -> None:
        self.options = {**options, "transactional_id": transactional_id, "enable_idempotence": True,
                        "acks": "all", "transaction_timeout_ms": timeout_ms}
        self.connection = connection
        self.transactional_id = transactional_id
        self.group_id = group_id
        self.ownership = ownership
        self.bounds = bounds or Bounds()
        self.probe_timeout = 15.0  # seconds the startup check waits for a transactional producer id
        self.backoff = backoff
        self.producer: AIOKafkaProducer | None = None
        self._users = 0
        self._attempt: Attempt | None = None
        self.committed = self.aborted = 0  # transactions (for tests and telemetry)
        self.committed_records = 0  # input records whose transaction committed

    # -- lifecycle: the sink and the dead letter attach; the last to close stops the producer -----
    async def attach(self, name: str, topics: Sequence[str], create: bool, partitions: int,
                     replication: int) -> _Producer:
        client = _Producer(name, self.connection, self.options)  # shares our producer
        try:
            if self.producer is None:
                producer = AIOKafkaProducer(**self.options)
                await producer.start()
                self.producer = producer
            client.producer = self.producer
            await ensure_topics(self.connection, topics, create=create, partitions=partitions,
                                replication_factor=replication)
            for topic in topics:
                client.partitions[topic] = sorted(await self.producer.partitions_for(topic))
        except (KafkaError, KafkaConnectionError, OSError) as exc:
            raise SinkError(f"{name}: {exc}", retryable=False) from None
        self._users += 1
        return client

    async def release(self) -> None:
        self._users -= 1
        if self._users <= 0 and self.producer is not None:
            producer, self.producer = self.producer, None
            await producer.stop()  # an open transaction is left to the coordinator (aborted on timeout/next init)

    # -- the writes the delivery makes ---------------------------------------------------------
    async def write(self, envelopes: Sequence[Envelope], raw: RawWrite) -> None:
        """Called by the transactional sink and dead letter: recorded; a failure is the transaction's."""
        attempt = self._attempt
        if attempt is None or _nested.get():  # a write made by a write (oversized → dead letter): its caller's
            await raw(envelopes)
            return
        attempt.writes.append((raw, list(envelopes)))
        if attempt.error is not None:
            return  # the transaction is lost already: this part is redone with the rest
        token = _nested.set(True)
        try:
            await raw(envelopes)
        except SinkError as exc:
            attempt.error = exc
        finally:
            _nested.reset(token)

    # -- the runner's delivery step -----------------------------------------------------------
    async def run(self, group: list[Batch], delivery: Delivery) -> None:
        """Deliver `group` in transaction(s) with its offsets; returns once committed (see the module doc)."""
        for chunk in chunks(group, self.bounds):
            await self._transact(chunk, delivery)

    async def _transact(self, chunk: list[Batch], delivery: Delivery) -> None:
        assert self.producer is not None, "start the sinks first"
        read_before = time.monotonic()
        drop_stale(chunk, self.ownership)
        await self._begin()
        attempt = self._attempt = Attempt(read_before=read_before)
        try:
            await delivery.deliver(chunk)
            tries = 0
            while not await self._try_commit(attempt, chunk):
                delivery.failing["kafka transaction"] = str(attempt.error)
                attempt = self._attempt = await self._redo(attempt, tries, delivery.deadline())
                tries += 1
            delivery.failing.pop("kafka transaction", None)
        except BaseException:
            await self._abort_quietly()
            raise
        finally:
            self._attempt = None

    async def _try_commit(self, attempt: Attempt, chunk: list[Batch]) -> bool:
        producer = self.producer
        assert producer is not None
        if attempt.error is not None:
            return False
        if time.monotonic() - attempt.started > self.bounds.max_seconds:
            attempt.error = SinkError(f"transaction open longer than {self.bounds.max_seconds}s", retryable=True)
            return False
        try:
            async with self.ownership.ownership_lock:  # no revocation completes between this check and the commit
                if not all(self._live(tp, attempt.read_before) for tp in attempt.partitions()):
                    attempt.error = SinkError("input partitions were revoked", retryable=True)
                    return False
                offsets = self.ownership.transaction_offsets(group_position(chunk))
                if offsets:
                    await producer.send_offsets_to_transaction(offsets, self.group_id)
                await producer.commit_transaction()
                self.ownership.transaction_committed(offsets)
        except KafkaError as exc:
            attempt.error = sink_error(exc, "committing the transaction failed")
            return False
        self.committed += 1
        self.committed_records += sum(len(batch.envelopes) for batch in chunk)
        return True

    async def _redo(self, failed: Attempt, tries: int, deadline: float | None) -> Attempt:
        """Abort `failed`, wait, and replay its writes (of partitions still owned) in a new transaction."""
        error = failed.error
        assert error is not None and self.producer is not None
        await self._abort()
        if not error.retryable or self.producer._txn_manager.is_fatal_error():
            raise SinkError(f"transaction aborted: {error}", retryable=False)
        if deadline is not None and time.monotonic() >= deadline:
            raise SinkError(f"transaction aborted: {error}", retryable=True)
        if tries == 0 or tries % 10 == 0:
            emit(None, "warning", f"kafka transaction aborted ({error}); redoing it (attempt {tries + 1})",
                 sink="kafka", attempt=tries + 1)
        await asyncio.sleep(min(5.0, self.backoff * (2 ** min(tries, 5))))
        await self._begin()
        attempt = Attempt(read_before=failed.read_before)
        token = _nested.set(True)  # the replayed writes' own nested writes are part of them
        try:
            for raw, envelopes in failed.writes:
                kept = [e for e in envelopes
                        if not isinstance(e.position, tuple) or self._live(e.position[:2], failed.read_before)]
                attempt.writes.append((raw, kept))
                if kept and attempt.error is None:
                    try:
                        await raw(kept)
                    except SinkError as exc:
                        attempt.error = exc
        finally:
            _nested.reset(token)
        return attempt

    def _live(self, partition: tuple[str, int], read_before: float) -> bool:
        """Records of `partition` read before `read_before` may still be committed: owned, never given up since."""
        return self.ownership.owns(partition) and self.ownership.revoked_at(partition) < read_before

    async def _begin(self) -> None:
        assert self.producer is not None
        try:
            await self.producer.begin_transaction()
        except KafkaError as exc:  # e.g. fenced: another worker initialised our transactional id
            raise SinkError(f"cannot begin a Kafka transaction: {type(exc).__name__}: {exc}", retryable=False) from None

    async def _abort(self) -> None:
        producer = self.producer
        assert producer is not None
        if producer._txn_manager.is_fatal_error():
            return
        try:
            await producer.abort_transaction()
        except KafkaError as exc:
            raise SinkError(f"aborting the transaction failed: {exc}", retryable=False) from None
        self.aborted += 1

    async def _abort_quietly(self) -> None:
        """Abort what is open (cancelled, or failed for good); what cannot be aborted expires on the broker."""
        producer = self.producer
        if producer is None:
            return
        txn = producer._txn_manager
        if not (txn.is_in_transaction() or txn.state == TransactionState.ABORTABLE_ERROR):
            return
        with contextlib.suppress(asyncio.CancelledError, TimeoutError, SinkError, KafkaError):
            await asyncio.wait_for(asyncio.shield(self._abort()), 0.4)  # within the runner's CANCEL_TIMEOUT
