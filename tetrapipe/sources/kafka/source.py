"""`kafka` source: a consumer-group member that yields one Batch per fetch and commits only acknowledged work.

Guarantees (at-least-once):
- Auto-commit is off.  `commit(position)` commits `{partition: next offset}`
  as computed by the committer from acknowledged batches only, and only for
  partitions this member still owns, at offsets not below where its current
  ownership began (a stale position — e.g. left by a commit that failed during
  a revocation — must never move the group's offset back over another
  member's progress).  A commit the broker refuses is retried with
  the next one (positions merge, the later wins); one refused because the group
  rebalanced is dropped: the partition's owner redoes that range.
- Revocation: the rebalance listener first drops fetched batches of the
  revoked partitions that were not yet handed to the pipeline, then asks the
  pipeline (`bind_drain`) to deliver, acknowledge and commit its in-flight
  batches of those partitions within `revoke_timeout`; what is not done by then
  is abandoned — never committed here — and redone by the next owner.  A
  fetch spans partitions: such a batch keeps its place in the commit order for
  the partitions still owned, so no later commit skips its records of those.
- Exactly-once mode (`transactional`, set by tetrapipe.config.kafka): `commit`
  commits nothing — offsets go into the output transactions
  (tetrapipe.sinks.kafka.transactions), which ask `owns` and
  `transaction_offsets` while holding `ownership_lock`; a revocation gives
  its partitions up under that same lock, so no transaction can commit a
  partition's offsets once it was given up.
- Backpressure without leaving the group: aiokafka leaves the group when
  `getmany()` is not called for `max_poll_interval_ms` (its "fetcher idle
  time"), yet a full pipeline is exactly when nobody asks this source for a
  batch.  So a poller task owns the consumer: it keeps at most `prefetch`
  batches ready; while they wait it pauses every assigned partition and keeps
  polling (empty polls), so a sink outage of any length holds consumption
  without a rebalance.  Memory stays bounded: the pipeline's queue, `prefetch`
  batches, and aiokafka's fetch buffer (≤ `fetch_max_bytes`; aiokafka discards
  the buffered records of paused partitions and refetches them on resume).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from tetrapipe.clients.connectivity import ConnectivityProbe
from tetrapipe.clients.kafka import KafkaConnection, KafkaConnectionError, KafkaUnreachable, wait_until_reachable
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.logs import emit
from tetrapipe.sources.base import DrainFn, SourceError
from tetrapipe.sources.kafka.config import KafkaSourceConfig


def _touches(batch: Batch, partitions: set[TopicPartition]) -> bool:
    position = batch.commit_position
    return isinstance(position, dict) and not partitions.isdisjoint(position)


def _without(batch: Batch, partitions: set[TopicPartition]) -> dict[TopicPartition, int]:
    """The batch's position for the partitions not in `partitions` (empty when none is left)."""
    return {tp: offset for tp, offset in batch.commit_position.items() if tp not in partitions}


class _Listener(ConsumerRebalanceListener):
    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._source.revoke(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._source.assign(set(assigned))


class KafkaSource:
    """Envelope(raw=value, position=(topic, partition, offset), meta=(key, headers)); batch position {tp: next}."""

    def __init__(self, connection: KafkaConnection, config: KafkaSourceConfig, *, log: TextIO | None = None,
                 probe_interval: float = 10.0, **consumer_options: Any) -> None:
        config.validate()
        self.connection = connection
        self.config = config
        self.name = f"kafka {config.topic_pattern or ','.join(config.topics)}"
        self._extra = consumer_options  # e.g. tests' fast group timings
        self._log = log  # None: stderr (tetrapipe.logs)
        self._consumer: AIOKafkaConsumer | None = None
        self._poller: asyncio.Task[None] | None = None
        self._probe: ConnectivityProbe | None = None
        self._probe_interval = probe_interval
        self._ready: deque[Batch] = deque()
        self._wake = asyncio.Event()  # a batch is ready, the poller ended, or stop() was called
        self._room = asyncio.Event()  # the pipeline took a batch
        self._stopping = False
        self._owned: set[TopicPartition] = set()
        self._retry_commit: dict[TopicPartition, int] = {}
        self._drain: DrainFn | None = None
        # Per owned partition, the committed offset (or, before our first commit, the offset we
        # resumed from): the base of the consumer lag exported as a metric.
        self._lag_base: dict[TopicPartition, int] = {}
        self._lag_asked: set[TopicPartition] = set()  # owned partitions whose committed offset was asked for
        # Per owned partition, the first offset fetched since it was (re)assigned: an offset below it
        # is a leftover of an earlier ownership (e.g. a commit that failed during a revocation) and
        # committing it would move the group backwards over another owner's progress.
        self._resumed_at: dict[TopicPartition, int] = {}
        self._revoked_at: dict[TopicPartition, float] = {}  # monotonic time each partition was last given up
        self.transactional = False  # exactly once: offsets are committed only inside output transactions
        self.ownership_lock = asyncio.Lock()  # held by a transaction's commit; taken to give partitions up
        self.revocations = 0  # rebalances seen (for tests and telemetry)
        self.dropped_on_revoke = 0  # fetched records dropped before the pipeline saw them

    def bind_drain(self, drain: DrainFn) -> None:
        """Called by the Pipeline: how to finish in-flight batches on revocation."""
        self._drain = drain

    def describe(self, position: Any) -> str:
        topic, partition, offset = position
        return f"kafka topic {topic} partition {partition} offset {offset}"

    async def start(self) -> None:
        cfg = self.config
        try:
            options = self.connection.client_options()
        except KafkaConnectionError as exc:
            raise SourceError(str(exc)) from None
        options.update(group_id=cfg.group_id, enable_auto_commit=False, auto_offset_reset=cfg.auto_offset_reset,
                       fetch_max_bytes=cfg.fetch_max_bytes, max_partition_fetch_bytes=cfg.max_partition_fetch_bytes,
                       max_poll_records=cfg.max_records, session_timeout_ms=cfg.session_timeout_ms,
                       heartbeat_interval_ms=cfg.heartbeat_interval_ms, max_poll_interval_ms=cfg.max_poll_interval_ms,
                       rebalance_timeout_ms=cfg.max_poll_interval_ms)
        options.update(self._extra)
        try:
            await wait_until_reachable(self.connection, "kafka input", self._log)  # a broker still starting
        except KafkaUnreachable as exc:
            raise SourceError(str(exc)) from exc  # the cause: same exit code as for an output
        self._consumer = AIOKafkaConsumer(**options)
        try:
            await self._consumer.start()
        except KafkaError as exc:
            await self._consumer.stop()
            raise SourceError(f"cannot connect to Kafka at {self.connection.bootstrap_servers}: {exc}") from None
        listener = _Listener(self)
        if cfg.topic_pattern:
            self._consumer.subscribe(pattern=cfg.topic_pattern, listener=listener)
        else:
            self._consumer.subscribe(topics=cfg.topics, listener=listener)
            missing = sorted(set(cfg.topics) - await self._consumer.topics())
            if missing:
                self._say(f"input topic(s) {', '.join(missing)} do not exist yet; waiting for them")
        self._poller = asyncio.create_task(self._poll(), name="tetrapipe-kafka-poller")
        # A metadata request now and then: the consumer itself does not tell when brokers are gone.
        self._probe = ConnectivityProbe(f"kafka {self.connection.bootstrap_servers}", self._consumer.topics,
                                        interval=self._probe_interval, log=self._log)
        self._probe.start()

    # -- handing batches to the pipeline ------------------------------------
    async def batches(self) -> AsyncIterator[Batch]:
        assert self._poller is not None, "start() first"
        while True:  # until stopped or the poller ends; each turn waits for an event
            if self._stopping:
                return
            if self._ready:
                batch = self._ready.popleft()
                self._room.set()
                yield batch
                continue
            if self._poller.done():
                break
            self._wake.clear()
            await self._wake.wait()
        exc = None if self._poller.cancelled() else self._poller.exception()
        if exc is not None:
            raise SourceError(f"reading Kafka failed: {exc}")

    async def _poll(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        # Under load the pipeline takes a batch within milliseconds, so only a
        # wait longer than this pauses the partitions (pausing makes aiokafka
        # discard and later refetch what it had buffered for them).
        keepalive = min(5.0, self.config.max_poll_interval_ms / 3000)
        try:
            while not self._stopping:
                if len(self._ready) >= self.config.prefetch:
                    self._room.clear()
                    if not await _wait(self._room, keepalive) and not self._stopping:
                        self._set_paused(consumer, True)
                        # An empty poll (partitions paused): it only tells aiokafka we
                        # are alive, so a long sink outage does not cost our membership.
                        self._push(await consumer.getmany(timeout_ms=0))
                    continue
                self._set_paused(consumer, False)
                self._push(await consumer.getmany(timeout_ms=self.config.poll_timeout_ms,
                                                  max_records=self.config.max_records))
                if self._owned - self._lag_base.keys() - self._lag_asked:
                    await self._learn_lag_bases(consumer)
        finally:
            self._wake.set()

    @staticmethod
    def _set_paused(consumer: AIOKafkaConsumer, paused: bool) -> None:
        if paused:
            missing = consumer.assignment() - consumer.paused()
            if missing:
                consumer.pause(*missing)
        elif consumer.paused():
            consumer.resume(*consumer.paused())

    def _push(self, fetched: dict[TopicPartition, list[Any]]) -> None:
        if not fetched:
            return
        envelopes: list[Envelope] = []
        position: dict[TopicPartition, int] = {}
        for tp, records in fetched.items():
            topic, partition = tp.topic, tp.partition
            envelopes.extend([Envelope(r.value if r.value is not None else b"", (topic, partition, r.offset),
                                       (r.key, r.headers)) for r in records])
            position[tp] = records[-1].offset + 1
            self._lag_base.setdefault(tp, records[0].offset)
            self._resumed_at.setdefault(tp, records[0].offset)
        self._ready.append(Batch(envelopes, position))
        self._wake.set()

    async def _learn_lag_bases(self, consumer: AIOKafkaConsumer) -> None:
        """The group's committed offset as the lag base of owned partitions nothing was fetched from yet: a
        member given a partition with nothing new to read still reports its lag (0), not no series at all.
        Asked once per ownership; a failed request is asked again on the next poll."""
        for tp in self._owned - self._lag_base.keys() - self._lag_asked:
            try:
                committed = await consumer.committed(tp)
            except KafkaError:
                return
            self._lag_asked.add(tp)
            if committed is not None and tp in self._owned:
                self._lag_base.setdefault(tp, committed)  # a fetch or a commit meanwhile knows better

    # -- rebalance ---------------------------------------------------------
    def assign(self, assigned: set[TopicPartition]) -> None:
        self._owned = set(assigned)
        self._lag_asked -= assigned  # a new ownership: its committed offset may have moved

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        """Drop unhanded batches of `revoked`, then drain and commit in-flight ones (bounded)."""
        if not revoked:
            return
        self.revocations += 1
        self._drop_ready(revoked)
        if self._drain is not None:
            # A fetch spans partitions: an abandoned batch keeps its place for the ones still owned.
            await self._drain(lambda batch: _touches(batch, revoked), self.config.revoke_timeout,
                              lambda batch: _without(batch, revoked))
        await self._give_up(revoked)
        for tp in revoked:
            self._lag_base.pop(tp, None)
            self._resumed_at.pop(tp, None)

    async def _give_up(self, revoked: set[TopicPartition]) -> None:
        """Stop owning `revoked` — once no transaction is committing (bounded: the rebalance must go on)."""
        try:
            await asyncio.wait_for(self.ownership_lock.acquire(), self.config.revoke_timeout)
        except TimeoutError:
            self._say("revocation: a transaction commit still running after revoke_timeout; giving up anyway")
            self._owned -= revoked
            self._mark_revoked(revoked)
            return
        try:
            self._owned -= revoked
        finally:
            self.ownership_lock.release()
        self._mark_revoked(revoked)

    def _mark_revoked(self, revoked: set[TopicPartition]) -> None:
        now = time.monotonic()
        self._revoked_at.update(dict.fromkeys(revoked, now))

    def owns(self, partition: tuple[str, int]) -> bool:
        return partition in self._owned

    def revoked_at(self, partition: tuple[str, int]) -> float:
        """When `partition` was last given up (monotonic), -inf if never: records read before it are stale."""
        return self._revoked_at.get(TopicPartition(*partition), -math.inf)

    def transaction_offsets(self, position: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        """The offsets of `position` this member may commit (owned, not below its ownership's start)."""
        return {tp: offset for tp, offset in position.items()
                if tp in self._owned and offset >= self._resumed_at.get(tp, offset + 1)}

    def transaction_committed(self, offsets: dict[TopicPartition, int]) -> None:
        """Offsets committed by a transaction: the new base of the consumer lag."""
        self._lag_base.update(offsets)

    def _drop_ready(self, revoked: set[TopicPartition]) -> None:
        kept: deque[Batch] = deque()
        for batch in self._ready:
            envelopes = [e for e in batch.envelopes if e.position[:2] not in revoked]
            self.dropped_on_revoke += len(batch.envelopes) - len(envelopes)
            position = _without(batch, revoked)
            if position:
                kept.append(Batch(envelopes, position))
        self._ready = kept
        self._room.set()

    # -- commits and shutdown -----------------------------------------------
    async def commit(self, position: Any) -> None:
        """Commit `{TopicPartition: next offset}` for the partitions still owned (see the module doc)."""
        assert self._consumer is not None
        if self.transactional:
            return
        offsets = self.transaction_offsets({**self._retry_commit, **position})
        self._retry_commit = {}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
            self._lag_base.update(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            self._say(f"commit refused after a rebalance ({exc}); the partitions' owner redoes that work")
        except KafkaError as exc:
            if not getattr(exc, "retriable", False):
                raise SourceError(f"committing offsets failed: {exc}") from None
            self._retry_commit = offsets
            self._say(f"commit failed ({exc}); retrying with the next commit")

    @property
    def ready(self) -> bool:
        """Connected: the consumer started, its poller runs, and the brokers answered the last probe."""
        return (self._consumer is not None and self._poller is not None and not self._poller.done()
                and (self._probe is None or self._probe.connected))

    def lag(self) -> dict[tuple[str, int], int]:
        """Consumer lag per owned partition: the broker's high watermark (as of the last fetch) minus
        the committed offset — what a lag-driven autoscaler sees.  Partitions whose high watermark or
        start is not known yet are left out."""
        consumer = self._consumer
        if consumer is None:
            return {}
        out = {}
        assigned = consumer.assignment()
        for tp in self._owned & assigned:
            high, base = consumer.highwater(tp), self._lag_base.get(tp)
            if high is not None and base is not None:
                out[(tp.topic, tp.partition)] = max(0, high - base)
        return out

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._room.set()

    async def close(self) -> None:
        self.stop()
        if self._probe is not None:
            await self._probe.stop()
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        if self._consumer is not None:
            if self._retry_commit:
                await self.commit({})
            self._owned = set()  # leaving the group revokes everything; nothing is left to drain
            await self._consumer.stop()
            self._consumer = None

    def _say(self, message: str) -> None:
        emit(self._log, "warning", f"{self.name}: {message}", source=self.name)


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """True if `event` was set within `timeout` seconds."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True
