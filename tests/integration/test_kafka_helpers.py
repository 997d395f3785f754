"""Helpers for the Kafka integration tests (no tests here): produce inputs, read outputs, read commits.

Every wait is bounded in time and in count.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from brokers import FAST_GROUP, Broker

SEQ = "seq"  # input header: the input message's sequence number, forwarded to every output


def worker_config(path: Path, broker: Broker, **sink: Any) -> Path:
    """Write a `kafka:` config for a worker: fast group timings, idempotence as the broker allows."""
    section: dict[str, Any] = {
        "source": {"session_timeout_ms": FAST_GROUP["session_timeout_ms"],
                   "heartbeat_interval_ms": FAST_GROUP["heartbeat_interval_ms"], "revoke_timeout": 10.0},
        "sink": {"idempotence": broker.supports_idempotence, "topics": {"partitions": 3}, **sink},
        "dead_letter": {"topic": "unused-overridden-by-flag", "idempotence": broker.supports_idempotence},
    }
    path.write_text(yaml.safe_dump({"kafka": section}))
    return path


async def produce(bootstrap: str, topic: str, values: Sequence[bytes], *, keys: Sequence[bytes | None] | None = None,
                  compression: str | None = None, first_seq: int = 0, partition_of: Callable[[int], int] | None = None,
                  ) -> None:
    """Send `values` (acks=all) with header seq=first_seq+i; keys and explicit partitions optional."""
    async with AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10, compression_type=compression,
                                max_batch_size=256 << 10) as producer:
        for start in range(0, len(values), 5000):
            futures = []
            for i in range(start, min(start + 5000, len(values))):
                futures.append(await producer.send(
                    topic, values[i], key=keys[i] if keys else None,
                    partition=partition_of(i) if partition_of else None,
                    headers=[(SEQ, str(first_seq + i).encode())]))
            await asyncio.gather(*futures)


async def read_all(bootstrap: str, topics: Sequence[str], timeout_s: float = 60.0) -> list[ConsumerRecord]:
    """Every record currently in `topics` (all partitions, from the beginning), in partition order."""
    async with AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                max_partition_fetch_bytes=4 << 20, fetch_max_bytes=32 << 20) as consumer:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(await _partitions(consumer, t))]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        records: list[ConsumerRecord] = []
        deadline = asyncio.get_running_loop().time() + timeout_s
        for _ in range(100_000):
            if all([await consumer.position(tp) >= end[tp] for tp in tps]):
                return records
            assert asyncio.get_running_loop().time() < deadline, f"reading {topics} timed out"
            for batch in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                records.extend(batch)
        raise AssertionError("read_all: too many polls")


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    for _ in range(50):
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return set(parts)
        await consumer._client.force_metadata_update()  # noqa: SLF001 - test helper: refresh now
        await asyncio.sleep(0.1)
    return set()


async def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offset per partition (0 when none), read without joining the group."""
    async with AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False) as consumer:
        return {p: (await consumer.committed(TopicPartition(topic, p))) or 0 for p in range(partitions)}


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    async with AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None) as consumer:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}


async def wait_until(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str, step: float = 0.5) -> None:
    """Poll `check` until it returns True; fail naming `what` after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    for _ in range(int(timeout_s / step) + 2):
        if await check():
            return
        if loop.time() > deadline:
            break
        await asyncio.sleep(step)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


async def all_committed(bootstrap: str, group: str, topic: str, partitions: int) -> bool:
    """True when the group's commits reached the end of every partition (>=: Tansu may overshoot)."""
    ends = await end_offsets(bootstrap, topic, partitions)
    done = await committed(bootstrap, group, topic, partitions)
    return all(done[p] >= ends[p] for p in ends)


def header(record: ConsumerRecord, name: str) -> bytes | None:
    return next((v for k, v in (record.headers or ()) if k == name), None)
