"""Transaction bookkeeping of exactly-once mode (tetrapipe.sinks.kafka.transactions), with in-memory stand-ins.

The stand-ins: the source's `Ownership` (which partitions are owned), the
runner's `Delivery` (one `deliver` per group, writing through a sink that
goes through `Transactions.write`), and a producer that keeps what each
transaction held and whether it was committed or aborted.  What is checked:
a committed transaction holds every record of its group once and its
offsets; a failure aborts and redoes without delivering (filtering) again;
a revoked partition's records and offsets leave the transaction; fatal
errors, the shutdown deadline and cancellation abort and acknowledge nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import RequestTimedOutError
from hypothesis import given
from hypothesis import strategies as st

from tetrapipe.clients.kafka import KafkaConnection
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.sinks.base import SinkError
from tetrapipe.sinks.kafka.transactions import Bounds, Transactions, chunks, group_position
from tetrapipe.sources.kafka.config import KafkaSourceConfig
from tetrapipe.sources.kafka.source import KafkaSource


class Producer:
    """Keeps the records and offsets of the open transaction; `done` lists (outcome, records, offsets)."""

    def __init__(self) -> None:
        self.open = False
        self.fatal = False
        self.records: list[Any] = []
        self.offsets: dict[TopicPartition, int] = {}
        self.done: list[tuple[str, list[Any], dict[TopicPartition, int]]] = []
        self.fail_commit: list[Exception] = []
        self.state = None  # aiokafka's TransactionState: only ABORTABLE_ERROR is read
        self._txn_manager = self

    def is_fatal_error(self) -> bool:
        return self.fatal

    def is_in_transaction(self) -> bool:
        return self.open

    async def begin_transaction(self) -> None:
        assert not self.open
        self.open, self.records, self.offsets = True, [], {}

    async def send_offsets_to_transaction(self, offsets: dict[TopicPartition, int], group_id: str) -> None:
        assert self.open and group_id == "g"
        self.offsets.update(offsets)

    async def commit_transaction(self) -> None:
        assert self.open
        if self.fail_commit:
            raise self.fail_commit.pop(0)
        self.open = False
        self.done.append(("committed", self.records, self.offsets))

    async def abort_transaction(self) -> None:
        assert self.open
        self.open = False
        self.done.append(("aborted", self.records, self.offsets))


class Owner:
    """The source's side: owned partitions; offsets allowed for owned partitions only."""

    def __init__(self, owned: set[tuple[str, int]]) -> None:
        self.owned = owned
        self.revoked: dict[tuple[str, int], float] = {}
        self.committed: list[dict[TopicPartition, int]] = []
        self.ownership_lock = asyncio.Lock()

    def owns(self, partition: tuple[str, int]) -> bool:
        return partition in self.owned

    def revoked_at(self, partition: tuple[str, int]) -> float:
        return self.revoked.get(partition, float("-inf"))

    def transaction_offsets(self, position: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
        return {tp: o for tp, o in position.items() if tp in self.owned}

    def transaction_committed(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.append(offsets)


class Sink:
    """A sink inside the transaction: its raw write appends to the producer's open transaction."""

    def __init__(self, transactions: Transactions, producer: Producer, name: str = "kafka") -> None:
        self.transactions, self.producer, self.name = transactions, producer, name
        self.fail: list[SinkError] = []  # raised by the next raw writes, in turn
        self.divert: Sink | None = None  # a second sink this one writes through (oversized → dead letter)

    async def raw(self, envelopes: Sequence[Envelope]) -> None:
        if self.fail:
            raise self.fail.pop(0)
        self.producer.records.extend((self.name, e.position) for e in envelopes)
        if self.divert is not None:
            await self.divert.write(envelopes[:1])

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        await self.transactions.write(envelopes, self.raw)


class Delivery:
    def __init__(self, sinks: list[Sink], deadline: float | None = None) -> None:
        self.sinks, self.failing, self.delivered = sinks, {}, 0
        self.deadline = lambda: deadline

    async def deliver(self, group: list[Batch]) -> None:
        self.delivered += 1  # filters and rate limits run here, once per group
        envelopes = [e for b in group for e in b.envelopes]
        await asyncio.gather(*(sink.write(envelopes) for sink in self.sinks))


def batch(partition: int, first: int, count: int) -> Batch:
    envelopes = [Envelope(b"x" * 10, ("in", partition, o)) for o in range(first, first + count)]
    return Batch(envelopes, {TopicPartition("in", partition): first + count})


def setup(owned: set[tuple[str, int]] | None = None) -> tuple[Transactions, Producer, Sink, Owner]:
    owner = Owner(owned if owned is not None else {("in", 0), ("in", 1)})
    transactions = Transactions(KafkaConnection(), {}, "t", "g", owner, backoff=0.0)
    producer = Producer()
    transactions.producer = producer  # type: ignore[assignment]
    return transactions, producer, Sink(transactions, producer), owner


def retryable(what: str = "broker gone") -> SinkError:
    return SinkError(what, retryable=True)


async def test_a_group_commits_its_records_and_offsets_in_one_transaction() -> None:
    transactions, producer, sink, owner = setup()
    await transactions.run([batch(0, 0, 3), batch(1, 10, 2)], Delivery([sink]))
    [(outcome, records, offsets)] = producer.done
    assert outcome == "committed"
    assert sorted(p for _, p in records) == [("in", 0, 0), ("in", 0, 1), ("in", 0, 2), ("in", 1, 10), ("in", 1, 11)]
    assert offsets == {TopicPartition("in", 0): 3, TopicPartition("in", 1): 12}
    assert transactions.committed_records == 5
    assert owner.committed == [offsets]  # the source's lag base


async def test_a_failed_write_aborts_and_the_group_is_redone_without_delivering_again() -> None:
    transactions, producer, sink, _ = setup()
    dead_letter = Sink(transactions, producer, "dlq")
    sink.fail = [retryable()]
    delivery = Delivery([sink, dead_letter])
    await transactions.run([batch(0, 0, 4)], delivery)
    assert [outcome for outcome, _, _ in producer.done] == ["aborted", "committed"]
    committed = producer.done[-1][1]
    assert sorted(committed) == sorted([("kafka", ("in", 0, o)) for o in range(4)]
                                       + [("dlq", ("in", 0, o)) for o in range(4)])  # each once
    assert delivery.delivered == 1 and transactions.aborted == 1
    assert not delivery.failing  # cleared once committed


async def test_a_failed_commit_is_redone_and_a_write_made_by_a_write_only_by_its_caller() -> None:
    transactions, producer, sink, _ = setup()
    sink.divert = Sink(transactions, producer, "dlq")  # as the Kafka sink writes oversized events to the DLQ
    producer.fail_commit = [RequestTimedOutError()]
    await transactions.run([batch(0, 0, 2)], Delivery([sink]))
    assert [outcome for outcome, _, _ in producer.done] == ["aborted", "committed"]
    committed = producer.done[-1][1]
    assert committed.count(("dlq", ("in", 0, 0))) == 1
    assert committed.count(("kafka", ("in", 0, 1))) == 1


async def test_a_revoked_partition_leaves_the_transaction_records_and_offsets() -> None:
    transactions, producer, sink, owner = setup()

    class Revoking(Delivery):
        async def deliver(self, group: list[Batch]) -> None:
            await super().deliver(group)
            owner.owned.discard(("in", 1))  # a rebalance gave partition 1 up while the transaction was open
            owner.revoked[("in", 1)] = time.monotonic()

    await transactions.run([batch(0, 0, 2), batch(1, 0, 2)], Revoking([sink]))
    assert [outcome for outcome, _, _ in producer.done] == ["aborted", "committed"]
    _, records, offsets = producer.done[-1]
    assert sorted(p for _, p in records) == [("in", 0, 0), ("in", 0, 1)]
    assert offsets == {TopicPartition("in", 0): 2}


async def test_a_batch_read_before_its_partition_was_given_up_and_got_back_is_not_written() -> None:
    """Abandoned by a revocation that timed out; the partition came back: it is being refetched, not redone."""
    transactions, producer, sink, owner = setup()
    stale, fresh = batch(1, 0, 2), batch(0, 0, 2)
    stale.read_at = fresh.read_at = time.monotonic()
    stale.good, fresh.good = list(stale.envelopes), list(fresh.envelopes)
    owner.revoked[("in", 1)] = time.monotonic()  # given up, then assigned again (still in `owned`)

    class Good(Delivery):
        async def deliver(self, group: list[Batch]) -> None:
            await asyncio.gather(*(s.write([e for b in group for e in b.good]) for s in self.sinks))

    await transactions.run([stale, fresh], Good([sink]))
    [(outcome, records, offsets)] = producer.done
    assert outcome == "committed"
    assert sorted(p for _, p in records) == [("in", 0, 0), ("in", 0, 1)]
    assert offsets == {TopicPartition("in", 0): 2}


async def test_a_fatal_error_aborts_and_stops() -> None:
    transactions, producer, sink, _ = setup()
    sink.fail = [SinkError("not authorised", retryable=False)]
    with pytest.raises(SinkError) as raised:
        await transactions.run([batch(0, 0, 2)], Delivery([sink]))
    assert not raised.value.retryable
    assert [outcome for outcome, _, _ in producer.done] == ["aborted"]


async def test_past_the_shutdown_deadline_the_transaction_is_aborted_and_nothing_acknowledged() -> None:
    transactions, producer, sink, _ = setup()
    sink.fail = [retryable()]
    with pytest.raises(SinkError) as raised:
        await transactions.run([batch(0, 0, 2)], Delivery([sink], deadline=time.monotonic() - 1))
    assert raised.value.retryable
    assert [outcome for outcome, _, _ in producer.done] == ["aborted"]


async def test_cancelled_mid_transaction_it_is_aborted() -> None:
    transactions, producer, _, _ = setup()
    started = asyncio.Event()

    class Stuck(Delivery):
        async def deliver(self, group: list[Batch]) -> None:
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(transactions.run([batch(0, 0, 2)], Stuck([])))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [outcome for outcome, _, _ in producer.done] == ["aborted"]
    assert not producer.open


async def test_a_transaction_older_than_max_seconds_is_redone_in_a_new_one() -> None:
    transactions, producer, sink, _ = setup()
    transactions.bounds = Bounds(max_seconds=-1.0)  # every commit finds it too old: redone until the deadline
    with pytest.raises(SinkError):
        await transactions.run([batch(0, 0, 1)], Delivery([sink], deadline=time.monotonic() + 0.05))
    assert {outcome for outcome, _, _ in producer.done} == {"aborted"}
    assert len(producer.done) >= 1


@given(st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=30),
       st.integers(min_value=1, max_value=120))
def test_chunks_keep_order_and_bounds(sizes: list[int], max_records: int) -> None:
    group = [batch(0, sum(sizes[:i]), n) for i, n in enumerate(sizes)]
    parts = chunks(group, Bounds(max_records=max_records, max_bytes=1 << 30))
    assert [b for part in parts for b in part] == group
    for part in parts:
        assert len(part) == 1 or sum(len(b.envelopes) for b in part) <= max_records
    assert group_position(group) == {TopicPartition("in", 0): sum(sizes)}


async def test_the_source_commits_nothing_itself_and_gives_partitions_up_under_the_lock() -> None:
    source = KafkaSource(KafkaConnection(), KafkaSourceConfig(topics=["in"], revoke_timeout=5.0))
    source._consumer = object()  # type: ignore[assignment]  # commit() must not touch it
    source.transactional = True
    tp = TopicPartition("in", 0)
    source.assign({tp})
    source._resumed_at[tp] = 0
    await source.commit({tp: 10})  # would raise on the stand-in consumer if it committed
    assert source.transaction_offsets({tp: 10}) == {tp: 10}
    async with source.ownership_lock:  # a transaction is committing
        revoke = asyncio.create_task(source.revoke({tp}))
        await asyncio.sleep(0.01)
        assert source.owns(("in", 0))  # not given up while the commit runs
    await revoke
    assert not source.owns(("in", 0))
    assert source.transaction_offsets({tp: 10}) == {}
