"""`kafka` sink (routed, enriched events) and Kafka dead-letter topic.

`KafkaSink.write(envelopes)` returns only when every message it produced for
them is acknowledged by the brokers (`acks=all`): that return is what lets
the committer commit their input offsets.  Retriable broker errors (leader
moves, timeouts, a broker down) raise `SinkError(retryable=True)` and the
runner retries the whole write — messages that had already been acknowledged
are produced again (at-least-once: duplicates, never loss).  Fatal ones
(authorisation, a batch the broker refuses as too large) raise
`SinkError(retryable=False)`.

An event larger than `max_request_size` (uncompressed: key, value, headers)
is never produced — one poison event must not stop the stream: it goes to
`reject` (tetrapipe.sinks.rejections: the run's dead letter, bound by
delivery) as a bad record with reason `too_large_for_kafka`, or, without a
dead letter, is counted and reported as an ERROR.

Speed: no await per message.  A write groups its messages per destination
partition into aiokafka `BatchBuilder`s (the partition chosen as the Java
client would: murmur2 of the key; keyless messages stick to one random
partition per topic and write, like Kafka's sticky partitioner), submits each
full builder with `send_batch`, then awaits the futures together.  While it
waits, the pipeline's reader is already decoding the next batch.

`KafkaDeadLetter` writes each bad record's raw bytes unchanged with headers
`tetrapipe-error` (`reason: detail`), `tetrapipe-source-topic`,
`-partition`, `-offset` (plus the input's own key and headers).  A record
that cannot fit in one Kafka message is cut to fit and marked with a
`tetrapipe-truncated-from: <original bytes>` header (and an ERROR line),
rather than blocking every later record behind it.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.partitioner import murmur2

from tetrapipe.clients.kafka import (
    KafkaConnection,
    KafkaConnectionError,
    KafkaUnreachable,
    idempotence_refused,
    quiet_aiokafka,
    wait_until_reachable,
)
from tetrapipe.event.envelope import Envelope
from tetrapipe.formats import build_format
from tetrapipe.logs import emit
from tetrapipe.sinks.base import SELECT_ALL, DeadLetter, SinkError
from tetrapipe.sinks.kafka.config import KafkaDeadLetterConfig, KafkaSinkConfig, producer_options
from tetrapipe.sinks.kafka.routing import DEFAULT, DROPPED, Route, Router, check_topic
from tetrapipe.sinks.kafka.topics import ensure_topics
from tetrapipe.sinks.rejections import Rejections

_KEY_CACHE_LIMIT = 1 << 16
_RECORD_OVERHEAD = 128  # record and batch framing beyond key, value and headers (generous)
DLQ_MAX_REQUEST_SIZE = 1 << 20  # the producer's default; a dead-letter record is cut to fit under it


def record_size(key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]) -> int:
    """Upper bound of a record's size in a produce request, before compression."""
    return len(value) + len(key or b"") + sum(len(k) + len(v) + 8 for k, v in headers) + _RECORD_OVERHEAD


def sink_error(exc: BaseException, what: str) -> SinkError:
    """A SinkError for a Kafka failure: retryable when Kafka says the error is transient."""
    # aiokafka marks KafkaTimeoutError not retriable, yet during an outage it is what a send_batch()
    # waiting for the previous batch of a partition to drain raises: an outage, so retried.
    retryable = isinstance(exc, KafkaTimeoutError) or (
        isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False)))
    return SinkError(f"{what}: {type(exc).__name__}: {exc}", retryable=retryable)


class _Producer:
    """A started AIOKafkaProducer, its topics ensured, and their partition lists."""

    def __init__(self, name: str, connection: KafkaConnection, options: dict[str, Any]) -> None:
        self.name = name
        self.connection = connection
        self.options = options
        self.producer: AIOKafkaProducer | None = None
        self.partitions: dict[str, list[int]] = {}

    async def start(self, topics: Sequence[str], create: bool, partitions: int, replication: int) -> None:
        try:
            await wait_until_reachable(self.connection, self.name)  # a broker still starting: retried a while
            await ensure_topics(self.connection, topics, create=create, partitions=partitions,
                                replication_factor=replication)
            self.producer = AIOKafkaProducer(**self.options)
            try:
                with quiet_aiokafka():  # its "Unexpected error during InitProducerIdRequest" would precede ours
                    await self.producer.start()
            except KafkaError as exc:
                refused = idempotence_refused(exc, self.name) if self.options.get("enable_idempotence") else None
                if refused is not None:
                    raise SinkError(refused, retryable=False) from None
                raise
            for topic in topics:
                self.partitions[topic] = sorted(await self.producer.partitions_for(topic))
        except KafkaUnreachable as exc:
            await self.close()
            raise SinkError(str(exc), retryable=False) from exc  # the cause: same exit code as for the input
        except (KafkaError, KafkaConnectionError, OSError) as exc:
            await self.close()
            raise SinkError(f"{self.name}: {exc}", retryable=False) from None
        except SinkError:
            await self.close()
            raise

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()  # flushes what is queued
            self.producer = None


async def await_acks(futures: list[Any], unacknowledged: str) -> None:
    """Wait for every produce future; the first failure becomes a SinkError (retryable when transient)."""
    for result in await asyncio.gather(*futures, return_exceptions=True):
        if isinstance(result, BaseException):
            raise sink_error(result, unacknowledged)


class KafkaSink:
    """Routes enriched events to topics (see tetrapipe.sinks.kafka.routing) and acknowledges by returning.

    Counters (events, counted once a write is acknowledged): `routed` (sent
    to ≥1 routed topic), `defaulted`, `dropped_untagged`; `by_category`
    (category → events routed for it); `messages` (topic → messages).
    """

    def __init__(self, connection: KafkaConnection, config: KafkaSinkConfig, groups: dict[str, str]) -> None:
        self.name = "kafka"
        self.selection = SELECT_ALL  # routing, not selection, decides what goes where
        self.config = config
        self.router = Router(config.topic_template, groups, multi_category=config.multi_category,
                             default_topic=config.default_topic, key=config.key,
                             peer_namespaces=config.peer_namespaces, record_format=config.format)
        self._connection = connection
        self._client: _Producer | None = None
        self._hashes: dict[bytes, int] = {}
        self.routed = self.defaulted = self.dropped_untagged = 0
        self.too_large = 0  # events over max_request_size, sent to the dead letter (or dropped without one)
        self.reject = Rejections()  # events too large for a message: the run's dead letter (bound by delivery)
        self.by_category: Counter[str] = Counter()
        self.messages: Counter[str] = Counter()
        # The default format's value is what the processor already rendered: no call per event.
        self.format = None if config.format == "tetrapipe" else build_format(
            config.format, findings=config.ocsf_findings, category_groups=groups)
        self.no_record = 0  # events the format had nothing to say about (e.g. summary of an untagged one)

    async def start(self) -> None:
        cfg = self.config
        try:
            options = producer_options(self._connection, idempotence=cfg.idempotence, compression=cfg.compression,
                                       linger_ms=cfg.linger_ms, batch_size=cfg.batch_size,
                                       max_request_size=cfg.max_request_size)
        except KafkaConnectionError as exc:
            raise SinkError(str(exc), retryable=False) from None
        self._client = _Producer("kafka sink", self._connection, options)
        await self._client.start(self.router.topics(), cfg.topics.create_topics, cfg.topics.partitions,
                                 cfg.topics.replication_factor)

    def _partition(self, topic: str, key: bytes | None, sticky: dict[str, int]) -> int:
        partitions = self._client.partitions[topic]  # type: ignore[union-attr]
        if key is None:
            chosen = sticky.get(topic)
            if chosen is None:
                chosen = sticky[topic] = random.choice(partitions)
            return chosen
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= _KEY_CACHE_LIMIT:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return partitions[hashed % len(partitions)]

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        assert self._client is not None and self._client.producer is not None, "start() first"
        producer = self._client.producer
        route_of, key_of, headers_of = self.router.route, self.router.key, self.router.headers
        builders: dict[tuple[str, int], Any] = {}
        sticky: dict[str, int] = {}
        shapes: Counter[Route] = Counter()
        futures: list[asyncio.Future[Any]] = []
        oversized: list[tuple[Envelope, int]] = []
        limit = self.config.max_request_size
        fmt = self.format
        needs_record = self.router.needs_record  # the template names a field of the record ({ocsf_class}, …)
        try:
            for env in envelopes:
                value = fmt.record(env) if needs_record and fmt is not None else None
                route = route_of(env, value)
                if not route.topics:
                    shapes[route] += 1
                    continue
                if value is None:
                    value = env.out if fmt is None else fmt.record(env)
                if value is None:
                    self.no_record += 1
                    continue
                key, headers = key_of(env), headers_of(env, route)
                size = record_size(key, value, headers)
                if size > limit:
                    oversized.append((env, size))
                    continue
                shapes[route] += 1
                for topic in route.topics:
                    partition = self._partition(topic, key, sticky)
                    builder = builders.get((topic, partition))
                    if builder is None:
                        builder = builders[(topic, partition)] = producer.create_batch()
                    if builder.append(key=key, value=value, timestamp=None, headers=headers) is None:
                        futures.append(await producer.send_batch(builder, topic, partition=partition))
                        builder = builders[(topic, partition)] = producer.create_batch()
                        builder.append(key=key, value=value, timestamp=None, headers=headers)
            for (topic, partition), builder in builders.items():
                futures.append(await producer.send_batch(builder, topic, partition=partition))
            await await_acks(futures, "Kafka did not acknowledge a batch")
        except KafkaError as exc:
            # Batches already sent resolve later: collect them, so no future is left with an unread exception.
            await asyncio.gather(*futures, return_exceptions=True)
            raise sink_error(exc, "producing to Kafka failed") from None
        if oversized:
            await self._divert(oversized)
        self._count(shapes)

    @property
    def dead_letter(self) -> DeadLetter | None:
        return self.reject.dead_letter

    @dead_letter.setter
    def dead_letter(self, dead_letter: DeadLetter | None) -> None:  # used on its own: where rejected events go
        self.reject = Rejections(dead_letter)

    async def _divert(self, oversized: list[tuple[Envelope, int]]) -> None:
        """Events too large for one Kafka message: rejected (dead-lettered by tetrapipe.sinks.rejections)."""
        limit = self.config.max_request_size
        await self.reject(self.name, [(env, "too_large_for_kafka", f"{size} bytes enriched > "
                                       f"kafka.sink.max_request_size {limit} bytes") for env, size in oversized])
        self.too_large += len(oversized)

    @property
    def counters(self) -> dict[str, int]:
        """For the metrics endpoint (`tetrapipe_sink_operations_total`)."""
        return {"routed": self.routed, "defaulted": self.defaulted, "dropped_untagged": self.dropped_untagged,
                "too_large": self.too_large, "messages": sum(self.messages.values())}

    def _count(self, shapes: Counter[Route]) -> None:
        for route, n in shapes.items():
            if route.outcome == DROPPED:
                self.dropped_untagged += n
                continue
            if route.outcome == DEFAULT:
                self.defaulted += n
            else:
                self.routed += n
                categories = route.headers[0][1].decode().split(",")
                for category in categories[:1] if self.config.multi_category == "first" else categories:
                    self.by_category[category] += n
            for topic in route.topics:
                self.messages[topic] += n

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


class KafkaDeadLetter:
    """Bad records, unchanged, to one topic; usable as the Pipeline's `dead_letter`."""

    def __init__(self, connection: KafkaConnection, config: KafkaDeadLetterConfig) -> None:
        self.name = f"kafka dead letter {config.topic}"
        self.selection = SELECT_ALL
        self.config = config
        self.topic = check_topic(config.topic)
        self._connection = connection
        self._client: _Producer | None = None
        self.written = 0
        self.truncated = 0

    async def start(self) -> None:
        try:
            options = producer_options(self._connection, idempotence=self.config.idempotence)
        except KafkaConnectionError as exc:
            raise SinkError(str(exc), retryable=False) from None
        self._client = _Producer(self.name, self._connection, options)
        t = self.config.topics
        await self._client.start([self.topic], t.create_topics, t.partitions, t.replication_factor)

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        assert self._client is not None and self._client.producer is not None, "start() first"
        producer = self._client.producer
        try:
            # Bad records are rare: one send per record is simple and cheap enough.
            futures = [await producer.send(self.topic, value=value, key=key, headers=headers)
                       for key, value, headers in map(self._fitted, envelopes)]
            await await_acks(futures, "Kafka did not acknowledge a dead-letter record")
        except KafkaError as exc:
            raise sink_error(exc, "producing to the dead-letter topic failed") from None
        self.written += len(envelopes)

    def _fitted(self, env: Envelope) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
        """(key, value, headers) of a dead-letter record, the value cut to fit one message if needed."""
        key, value, headers = _source_key(env), env.raw, dead_letter_headers(env)
        size = record_size(key, value, headers)
        if size <= DLQ_MAX_REQUEST_SIZE:
            return key, value, headers
        keep = max(0, len(value) - (size - DLQ_MAX_REQUEST_SIZE) - 64)
        self.truncated += 1
        emit(None, "error", f"dead-letter record from {env.position} is {len(value)} bytes, more than one Kafka "
             f"message holds; written cut to {keep} bytes with header tetrapipe-truncated-from",
             sink=self.name, position=str(env.position), bytes=len(value))
        return key, value[:keep], [*headers, ("tetrapipe-truncated-from", str(len(value)).encode())]

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


def _source_key(env: Envelope) -> bytes | None:
    return env.meta[0] if env.meta is not None else None


def dead_letter_headers(env: Envelope) -> list[tuple[str, bytes]]:
    """The input's headers plus the error and where the record came from (when it came from Kafka)."""
    headers = list(env.meta[1]) if env.meta is not None and env.meta[1] else []
    error = env.error
    headers.append(("tetrapipe-error", (f"{error.reason}: {error.detail}" if error else "unknown").encode()))
    position = env.position
    if isinstance(position, tuple) and len(position) == 3:
        topic, partition, offset = position
        headers += [("tetrapipe-source-topic", str(topic).encode()),
                    ("tetrapipe-source-partition", str(partition).encode()),
                    ("tetrapipe-source-offset", str(offset).encode())]
    return headers
