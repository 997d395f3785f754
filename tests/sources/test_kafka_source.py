"""KafkaSource bookkeeping against an in-memory consumer: which offsets may be committed, and the lag."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from tetrapipe.clients.kafka import KafkaConnection
from tetrapipe.sources.kafka.config import KafkaSourceConfig
from tetrapipe.sources.kafka.source import KafkaSource

TP = TopicPartition("events", 0)


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.assigned: set[TopicPartition] = set()
        self.high: dict[TopicPartition, int] = {}
        self.group_offsets: dict[TopicPartition, int] = {}
        self.asked: list[TopicPartition] = []

    async def committed(self, tp: TopicPartition) -> int | None:
        self.asked.append(tp)
        return self.group_offsets.get(tp)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.high.get(tp)


def records(first: int, count: int) -> list[Any]:
    return [SimpleNamespace(offset=o, value=b"{}", key=None, headers=()) for o in range(first, first + count)]


def source_with(consumer: FakeConsumer) -> KafkaSource:
    source = KafkaSource(KafkaConnection(), KafkaSourceConfig(topics=["events"]))
    source._consumer = consumer  # type: ignore[assignment]
    return source


async def test_a_stale_offset_from_an_earlier_ownership_is_never_committed() -> None:
    consumer = FakeConsumer()
    source = source_with(consumer)
    source.assign({TP})
    consumer.assigned = {TP}
    source._push({TP: records(0, 500)})
    await source.revoke({TP})  # say the forced commit of {TP: 500} failed: the committer still holds it
    source.assign({TP})  # back to us after another member committed up to 800
    source._push({TP: records(800, 100)})
    await source.commit({TP: 500})
    assert consumer.commits == []  # 500 < 800: would move the group back over the other member's work
    await source.commit({TP: 900})
    assert consumer.commits == [{TP: 900}]


async def test_offsets_of_a_partition_not_fetched_since_its_assignment_wait() -> None:
    consumer = FakeConsumer()
    source = source_with(consumer)
    source.assign({TP})
    await source.commit({TP: 42})  # nothing fetched in this ownership: the offset cannot be ours
    assert consumer.commits == []


async def test_lag_is_high_watermark_minus_the_committed_offset() -> None:
    consumer = FakeConsumer()
    source = source_with(consumer)
    source.assign({TP})
    consumer.assigned = {TP}
    consumer.high[TP] = 1000
    assert source.lag() == {}  # where we start is not known before the first fetch
    source._push({TP: records(100, 50)})
    assert source.lag() == {("events", 0): 900}
    await source.commit({TP: 150})
    assert source.lag() == {("events", 0): 850}
    await source.revoke({TP})
    assert source.lag() == {}


async def test_a_partition_with_nothing_to_fetch_reports_its_lag_from_the_committed_offset() -> None:
    """A member given a partition whose records another member already processed fetches nothing from it:
    its lag base is the group's committed offset, asked once per ownership (was: no lag series at all)."""
    consumer = FakeConsumer()
    source = source_with(consumer)
    other = TopicPartition("events", 1)
    source.assign({TP, other})
    consumer.assigned = {TP, other}
    consumer.high.update({TP: 500, other: 70})
    consumer.group_offsets[TP] = 500  # nothing left to read on TP; `other` was never committed
    await source._learn_lag_bases(consumer)  # type: ignore[arg-type]
    assert source.lag() == {("events", 0): 0}
    await source._learn_lag_bases(consumer)  # type: ignore[arg-type]
    assert consumer.asked == [TP, other] or consumer.asked == [other, TP]  # once each
    source._push({other: records(60, 5)})
    assert source.lag() == {("events", 0): 0, ("events", 1): 10}
    await source.revoke({TP})
    source.assign({TP, other})
    await source._learn_lag_bases(consumer)  # type: ignore[arg-type]
    assert consumer.asked.count(TP) == 2  # a new ownership asks again
