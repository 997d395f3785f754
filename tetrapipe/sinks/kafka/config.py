"""Config of the Kafka sink and dead-letter topic (keys `kafka.sink`, `kafka.dead_letter`), and producer options.

Delivery settings are not configurable on purpose: `acks=all` always (a
message counts as delivered only once every in-sync replica has it — the
committer commits input offsets on that basis).  Idempotence is on by default
(no duplicates from producer retries); turn it off only for brokers that lack
InitProducerId support (e.g. Tansu).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from tetrapipe.clients.kafka import KafkaConnection
from tetrapipe.sinks.kafka.routing import KeyStrategy, MultiCategory
from tetrapipe.transforms.filter_stage import DedupConfig, FilterLists, Items, RateLimitConfig, Redaction

Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]


class TopicSettings(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """How output topics are created at startup when missing."""

    create_topics: bool = True  # false: a missing topic stops startup, naming it
    partitions: int = 6
    replication_factor: int = 1  # use 3 on a production cluster


class KafkaSinkConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Routed output (config key `kafka.sink`); env KAFKA_OUT_TEMPLATE, KAFKA_DEFAULT_TOPIC."""

    topic_template: str = "tetragon.{group}.{category}"  # fields: tetrapipe.sinks.kafka.routing
    peer_namespaces: list[str] = []  # with {peer_namespace}: the peer namespaces that get a topic
    default_topic: str | None = None  # untagged events; none: dropped (and counted)
    multi_category: MultiCategory = "all"  # an event with several categories: to each topic, or the first
    key: KeyStrategy = "source"  # source | node | pod | exec_id | none
    idempotence: bool = True
    compression: Compression = "lz4"
    linger_ms: int = 5  # tetrapipe already hands over whole batches; this only merges small ones
    batch_size: int = 512 << 10  # bytes per partition batch (keep below the broker's message.max.bytes)
    max_request_size: int = 1 << 20
    topics: TopicSettings = msgspec.field(default_factory=TopicSettings)
    format: str = "tetrapipe"  # the record value: a tetrapipe.formats name (tetrapipe, summary, ocsf, ecs)
    ocsf_findings: bool = False  # with format ocsf: a Detection Finding too (a second line of the value)
    # per-sink Tetragon filters, redaction, rate limit, dedup (tetrapipe.transforms.filter_stage)
    filters: FilterLists | None = None
    field_filters: Items = []
    redaction: Redaction = []
    rate_limit: RateLimitConfig | None = None
    dedup: DedupConfig | None = None


class KafkaDeadLetterConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Records that cannot be decoded, unchanged (config key `kafka.dead_letter`); env KAFKA_DLQ_TOPIC."""

    topic: str
    idempotence: bool = True
    topics: TopicSettings = msgspec.field(default_factory=lambda: TopicSettings(partitions=1))


def producer_options(connection: KafkaConnection, *, idempotence: bool, compression: Compression = "none",
                     linger_ms: int = 5, batch_size: int = 512 << 10,
                     max_request_size: int = 1 << 20) -> dict[str, Any]:
    """AIOKafkaProducer keyword arguments: acks=all always (raises KafkaConnectionError for bad credentials)."""
    options = connection.client_options()
    options.update(acks="all", enable_idempotence=idempotence,
                   compression_type=None if compression == "none" else compression,
                   linger_ms=linger_ms, max_batch_size=batch_size, max_request_size=max_request_size)
    return options
