"""Contract tests of the test broker itself, through aiokafka.

They pin down what later source/sink tests rely on: keyed produce with
acks=all (+ idempotence where Broker.supports_idempotence says it works),
consumer groups with manual commit that resume after the committed offsets,
and every compression codec aiokafka can write.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import UnknownError
from brokers import FAST_GROUP, Broker, create_topic, unique_name

pytestmark = pytest.mark.integration

MESSAGES = 1_000
PARTITIONS = 3


async def consume_n(consumer: AIOKafkaConsumer, n: int, timeout_s: float = 60.0) -> list[ConsumerRecord]:
    """Return exactly the first *n* records fetched; fail after *timeout_s* or on excess."""
    records: list[ConsumerRecord] = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    for _batch in range(10_000):  # count bound besides the time bound
        if len(records) >= n or asyncio.get_running_loop().time() > deadline:
            break
        for batch in (await consumer.getmany(timeout_ms=500, max_records=500)).values():
            records.extend(batch)
    assert len(records) == n, f"consumed {len(records)} records, expected {n} within {timeout_s}s"
    return records


async def produce_keyed(producer: AIOKafkaProducer, topic: str, prefix: str, count: int) -> dict[bytes, tuple[int, int]]:
    """Send *count* records keyed ``prefix-i``; return key -> (partition, offset) as acked."""
    futures = [await producer.send(topic, key=f"{prefix}-{i}".encode(), value=f"value-{i}".encode())
               for i in range(count)]
    metadata = await asyncio.gather(*futures)
    return {f"{prefix}-{i}".encode(): (m.partition, m.offset) for i, m in enumerate(metadata)}


def group_consumer(broker: Broker, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group,
                            enable_auto_commit=False, auto_offset_reset="earliest", **FAST_GROUP)


async def test_keyed_produce_group_commit_and_resume(kafka_broker: Broker) -> None:
    topic, group = unique_name("smoke"), unique_name("smoke-group")
    await create_topic(kafka_broker.bootstrap, topic, PARTITIONS)

    async with AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all", linger_ms=5,
                                enable_idempotence=kafka_broker.supports_idempotence) as producer:
        acked = await produce_keyed(producer, topic, "first", MESSAGES)
    assert len({p for p, _ in acked.values()}) == PARTITIONS, "keys should spread over all partitions"
    end = {TopicPartition(topic, p): 1 + max(o for q, o in acked.values() if q == p) for p in range(PARTITIONS)}

    async with group_consumer(kafka_broker, topic, group) as first:
        records = await consume_n(first, MESSAGES)
        await first.commit()
        committed = {tp: await first.committed(tp) for tp in end}

    # Every record once, in the partition and at the offset the producer was told.
    assert {r.key: (r.partition, r.offset) for r in records} == acked
    by_partition: dict[int, list[int]] = defaultdict(list)
    for r in records:
        by_partition[r.partition].append(r.offset)
    assert all(offsets == sorted(offsets) for offsets in by_partition.values()), "per-partition order lost"
    # >= rather than ==: Tansu may report a committed offset past the end.
    assert all(committed[tp] is not None and committed[tp] >= end[tp] for tp in end), (committed, end)

    async with AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all",
                                enable_idempotence=kafka_broker.supports_idempotence) as producer:
        later = await produce_keyed(producer, topic, "second", 30)
    async with group_consumer(kafka_broker, topic, group) as second:
        resumed = await consume_n(second, len(later))
        extra = await second.getmany(timeout_ms=1000)
    assert {r.key for r in resumed} == set(later), "second consumer must start after the committed offsets"
    assert not any(extra.values()), f"unexpected extra records: {extra}"


async def test_idempotent_producer_support_is_as_declared(kafka_broker: Broker) -> None:
    """Pins Broker.supports_idempotence: if Tansu starts accepting aiokafka's
    InitProducerId v0, this fails and the flag (and its users) must change."""
    topic = unique_name("idempotence")
    await create_topic(kafka_broker.bootstrap, topic, 1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all", enable_idempotence=True)
    try:
        if kafka_broker.supports_idempotence:
            await producer.start()
            assert (await producer.send_and_wait(topic, b"v", key=b"k")).offset == 0
        else:
            with pytest.raises(UnknownError):
                await producer.start()
    finally:
        await producer.stop()


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_compression_codec_roundtrip(kafka_broker: Broker, codec: str) -> None:
    topic = unique_name(f"codec-{codec}")
    await create_topic(kafka_broker.bootstrap, topic, 1)
    # Repetitive JSON-ish payloads, like Tetragon events: compressible, so
    # the codec really shrinks the batch rather than storing it verbatim.
    values = [(f'{{"process_exec":{{"pid":{i},"binary":"/usr/bin/curl"}}}}' * 20).encode() for i in range(200)]

    async with AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, compression_type=codec,
                                acks="all", linger_ms=20) as producer:
        futures = [await producer.send(topic, key=str(i).encode(), value=v) for i, v in enumerate(values)]
        await asyncio.gather(*futures)

    tp = TopicPartition(topic, 0)
    async with AIOKafkaConsumer(bootstrap_servers=kafka_broker.bootstrap, group_id=None,
                                enable_auto_commit=False) as consumer:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        records = await consume_n(consumer, len(values), timeout_s=30)
    assert [r.value for r in records] == values
    assert [r.key for r in records] == [str(i).encode() for i in range(len(values))]
