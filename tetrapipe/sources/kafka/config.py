"""The Kafka source's config struct, apart from the client so that loading a config does not import aiokafka."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from tetrapipe.clients.kafka import KafkaConnection, KafkaConnectionError

if TYPE_CHECKING:
    from tetrapipe.sources.kafka.source import KafkaSource


class KafkaSourceConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What to consume (config key `kafka.source`); env KAFKA_TOPICS, KAFKA_TOPIC_PATTERN, KAFKA_GROUP_ID."""

    topics: list[str] = []  # input topics; or topic_pattern
    topic_pattern: str | None = None  # a regex, e.g. "tetragon\\.raw\\..*" (re-checked on metadata refresh)
    group_id: str = "tetrapipe"
    auto_offset_reset: Literal["earliest", "latest", "none"] = "earliest"  # where a new group starts
    max_records: int = 1000  # records per batch (one getmany)
    poll_timeout_ms: int = 500  # how long one poll waits for records
    prefetch: int = 1  # batches fetched ahead of the pipeline
    fetch_max_bytes: int = 16 << 20  # aiokafka's fetch buffer bound across partitions
    max_partition_fetch_bytes: int = 1 << 20
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000  # also the rebalance timeout
    revoke_timeout: float = 20.0  # seconds to finish in-flight work of revoked partitions

    def validate(self) -> None:
        if bool(self.topics) == bool(self.topic_pattern):
            raise KafkaConnectionError("kafka.source: give either topics or topic_pattern")
        if self.topic_pattern:
            try:
                re.compile(self.topic_pattern)
            except re.error as exc:
                raise KafkaConnectionError(f"kafka.source.topic_pattern: {exc}") from None
        if self.revoke_timeout * 1000 >= self.max_poll_interval_ms:
            raise KafkaConnectionError("kafka.source.revoke_timeout must be shorter than max_poll_interval_ms")


class KafkaSourceEntry(KafkaSourceConfig, tag="kafka", tag_field="type", forbid_unknown_fields=True,
                       omit_defaults=True):
    """`sources: [{type: kafka, connection: {...}, topics: [...]}]` — `kafka.source` with its own connection.

    The connection takes the KAFKA_* environment variables and `--kafka-bootstrap` on top, as `kafka:`'s does.
    """

    connection: KafkaConnection = msgspec.field(default_factory=KafkaConnection)

    def source_config(self) -> KafkaSourceConfig:
        """The plain `kafka.source` settings (without `connection`)."""
        fields = msgspec.structs.asdict(self)
        del fields["connection"]
        return KafkaSourceConfig(**fields)

    def build(self, spill: Any = None) -> KafkaSource:  # noqa: ARG002 - a Kafka record is never spooled
        from tetrapipe.sources.kafka.source import KafkaSource

        return KafkaSource(self.connection, self.source_config())
