"""The Kafka sink's and dead-letter topic's config entries: `kafka.sink` / `kafka.dead_letter` with a connection.

    sinks:
      - {type: kafka, connection: {bootstrap_servers: kafka:9092}, topic_template: "tetragon.{group}.{category}"}
    dead_letter: {type: kafka, connection: {bootstrap_servers: kafka:9092}, topic: tetragon.dlq}

The keys are those of `kafka.sink` / `kafka.dead_letter` (tetrapipe.sinks.kafka.config) plus `connection`
(tetrapipe.clients.kafka.KafkaConnection; the KAFKA_* environment variables and `--kafka-bootstrap` apply on
top, as for `kafka.connection`).  The `kafka:` section and the `--kafka-*` flags translate into these
(tetrapipe.config.kafka).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from tetrapipe.clients.kafka import KafkaConnection
from tetrapipe.sinks.base import SinkContext
from tetrapipe.sinks.kafka.config import KafkaDeadLetterConfig, KafkaSinkConfig

if TYPE_CHECKING:
    from tetrapipe.sinks.kafka.sink import KafkaDeadLetter, KafkaSink


def _without_connection(entry: Any, plain: type[Any]) -> Any:
    fields = msgspec.structs.asdict(entry)
    del fields["connection"]
    return plain(**fields)


class KafkaSinkEntry(KafkaSinkConfig, tag="kafka", tag_field="type", forbid_unknown_fields=True,
                     omit_defaults=True):
    """`sinks: [{type: kafka, ...}]`: events routed to topics by category."""

    connection: KafkaConnection = msgspec.field(default_factory=KafkaConnection)
    category_bound: ClassVar[bool] = True  # routes by category: a reload that changes the groups needs a restart

    def sink_config(self) -> KafkaSinkConfig:
        return _without_connection(self, KafkaSinkConfig)

    def build(self, context: SinkContext) -> KafkaSink:
        from tetrapipe.sinks.kafka.sink import KafkaSink

        sink = KafkaSink(self.connection, self.sink_config(), dict(context.category_groups))
        sink.dead_letter = context.dead_letter  # events too large for a Kafka message go there
        return sink


class KafkaDeadLetterEntry(KafkaDeadLetterConfig, tag="kafka", tag_field="type", forbid_unknown_fields=True,
                           omit_defaults=True):
    """`dead_letter: {type: kafka, topic: TOPIC, ...}`: bad records, unchanged, to one topic."""

    connection: KafkaConnection = msgspec.field(default_factory=KafkaConnection)

    def dead_letter_config(self) -> KafkaDeadLetterConfig:
        return _without_connection(self, KafkaDeadLetterConfig)

    def build(self, context: SinkContext) -> KafkaDeadLetter:  # noqa: ARG002 - needs nothing from the run
        from tetrapipe.sinks.kafka.sink import KafkaDeadLetter

        return KafkaDeadLetter(self.connection, self.dead_letter_config())
