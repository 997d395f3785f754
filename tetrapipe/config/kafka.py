"""Kafka mode wiring: the `kafka:` config section, the `--kafka-*` flags, env vars, and `build_kafka`.

Precedence, per setting: CLI flag, else environment variable, else config
file, else the default.  Kafka input is on when topics (or a pattern) are
given; routed Kafka output when an output template is given; the Kafka
dead-letter topic when a DLQ topic is given — each independently, so
`--kafka-topic RAW` alone reads Kafka and writes to stdout.

Environment (for Kubernetes deployments; see also tetrapipe.clients.kafka):
KAFKA_BOOTSTRAP_SERVERS, KAFKA_GROUP_ID, KAFKA_TOPICS (comma-separated),
KAFKA_TOPIC_PATTERN, KAFKA_OUT_TEMPLATE, KAFKA_DEFAULT_TOPIC, KAFKA_DLQ_TOPIC,
and the SASL/TLS variables.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from tetrapipe.clients.kafka import KafkaConnection, KafkaConnectionError
from tetrapipe.sinks.base import SinkContext
from tetrapipe.sinks.kafka.config import KafkaDeadLetterConfig, KafkaSinkConfig
from tetrapipe.sinks.kafka.entries import KafkaDeadLetterEntry, KafkaSinkEntry
from tetrapipe.sinks.kafka.routing import RoutingError
from tetrapipe.sources.kafka.config import KafkaSourceConfig, KafkaSourceEntry

if TYPE_CHECKING:
    from tetrapipe.sinks.kafka.sink import KafkaDeadLetter, KafkaSink
    from tetrapipe.sources.kafka.source import KafkaSource


class KafkaSection(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The `kafka:` section of the config file."""

    connection: KafkaConnection = msgspec.field(default_factory=KafkaConnection)
    source: KafkaSourceConfig | None = None
    sink: KafkaSinkConfig | None = None
    dead_letter: KafkaDeadLetterConfig | None = None


class KafkaConfigError(ValueError):
    """Kafka settings that cannot work; the message names the setting."""


def add_kafka_arguments(run: argparse.ArgumentParser) -> None:
    """Add the `--kafka-*` options to the `run` parser."""
    g = run.add_argument_group("Kafka", "consume raw events from Kafka and/or produce routed topics "
                                        "(flags override KAFKA_* env vars, which override the config file)")
    g.add_argument("--kafka-bootstrap", metavar="HOST:PORT", help="bootstrap servers, comma-separated")
    g.add_argument("--kafka-topic", action="append", metavar="TOPIC", help="input topic (repeatable)")
    g.add_argument("--kafka-topic-pattern", metavar="REGEX", help="input topics by regex, instead of --kafka-topic")
    g.add_argument("--kafka-group", metavar="GROUP", help="consumer group id (default tetrapipe)")
    g.add_argument("--kafka-offset-reset", choices=("earliest", "latest", "none"),
                   help="where a new consumer group starts (default earliest)")
    g.add_argument("--kafka-out-template", metavar="TEMPLATE",
                   help="output topic per event, e.g. 'tetragon.{group}.{category}' ({event_type} also works)")
    g.add_argument("--kafka-default-topic", metavar="TOPIC", help="topic for untagged events (default: drop them)")
    g.add_argument("--kafka-multi-category", choices=("all", "first"),
                   help="events with several categories go to each topic (all, default) or the first")
    g.add_argument("--kafka-key", choices=("source", "node", "pod", "exec_id", "none"),
                   help="output message key (default: the input message's key)")
    g.add_argument("--kafka-dlq", metavar="TOPIC", help="dead-letter topic for records that cannot be decoded")
    g.add_argument("--kafka-no-create-topics", action="store_true",
                   help="do not create missing output topics: stop at startup naming them")
    g.add_argument("--kafka-no-idempotence", action="store_true",
                   help="plain acks=all producer (for brokers without idempotent-producer support)")


def _env_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _replace(struct: Any, **changes: Any) -> Any:
    """`struct` with the non-None `changes` applied."""
    changes = {k: v for k, v in changes.items() if v is not None}
    return msgspec.structs.replace(struct, **changes) if changes else struct


def resolve(args: argparse.Namespace, section: KafkaSection | None,
            environ: Mapping[str, str] | None = None) -> KafkaSection:
    """The effective Kafka settings: flags over environment over file (raises KafkaConfigError)."""
    env = os.environ if environ is None else environ
    section = section or KafkaSection()
    try:
        connection = _replace(section.connection.with_env(env), bootstrap_servers=args.kafka_bootstrap)
    except KafkaConnectionError as exc:
        raise KafkaConfigError(str(exc)) from None
    topics = args.kafka_topic or _env_list(env.get("KAFKA_TOPICS")) or None
    pattern = args.kafka_topic_pattern or env.get("KAFKA_TOPIC_PATTERN") or None
    source = section.source
    if topics or pattern or source is not None:
        source = _replace(source or KafkaSourceConfig(), group_id=args.kafka_group or env.get("KAFKA_GROUP_ID"),
                          auto_offset_reset=args.kafka_offset_reset)
        if topics:  # a list given here replaces the file's topics or pattern
            source = msgspec.structs.replace(source, topics=topics, topic_pattern=None)
        elif pattern:
            source = msgspec.structs.replace(source, topics=[], topic_pattern=pattern)
    template = args.kafka_out_template or env.get("KAFKA_OUT_TEMPLATE") or None
    sink = section.sink
    if template or sink is not None:
        sink = _replace(sink or KafkaSinkConfig(), topic_template=template,
                        default_topic=args.kafka_default_topic or env.get("KAFKA_DEFAULT_TOPIC") or None,
                        multi_category=args.kafka_multi_category, key=args.kafka_key,
                        idempotence=False if args.kafka_no_idempotence else None)
        if args.kafka_no_create_topics:
            sink = msgspec.structs.replace(sink, topics=_replace(sink.topics, create_topics=False))
    dlq_topic = args.kafka_dlq or env.get("KAFKA_DLQ_TOPIC") or None
    dead_letter = section.dead_letter
    if dlq_topic or dead_letter is not None:
        dead_letter = (_replace(dead_letter, topic=dlq_topic) if dead_letter is not None
                       else KafkaDeadLetterConfig(topic=dlq_topic))  # type: ignore[arg-type]
        if args.kafka_no_idempotence:
            dead_letter = msgspec.structs.replace(dead_letter, idempotence=False)
    return KafkaSection(connection=connection, source=source, sink=sink, dead_letter=dead_letter)


def kafka_entries(args: argparse.Namespace, section: KafkaSection | None, environ: Mapping[str, str] | None = None,
                  ) -> tuple[KafkaSourceEntry | None, KafkaSinkEntry | None, KafkaDeadLetterEntry | None]:
    """The `kafka:` section with the flags and env over it, as the registries' entries (raises KafkaConfigError).

    Each entry carries the section's connection: a `sources:` / `sinks:` / `dead_letter:` entry of its own.
    """
    cfg = resolve(args, section, environ)

    def entry(kind: type[Any], struct: Any) -> Any:
        return None if struct is None else kind(connection=cfg.connection, **msgspec.structs.asdict(struct))
    return (entry(KafkaSourceEntry, cfg.source), entry(KafkaSinkEntry, cfg.sink),
            entry(KafkaDeadLetterEntry, cfg.dead_letter))


def build_kafka(args: argparse.Namespace, section: KafkaSection | None, *, groups: Mapping[str, str],
                environ: Mapping[str, str] | None = None,
                **consumer_options: Any) -> tuple[KafkaSource | None, list[KafkaSink], KafkaDeadLetter | None]:
    """(source or None, sinks, dead letter or None) from flags, env and the config section.

    `groups` maps category id → group (`Tagger.groups`): every output topic is
    known, created or checked at startup.  Raises KafkaConfigError.  (`tetrapipe run`
    builds the same entries through tetrapipe.config.resolve; this is for tools and tests.)
    """
    source_entry, sink_entry, dead_letter_entry = kafka_entries(args, section, environ)
    # Imported here: only a run that uses Kafka pays for importing the client.
    from tetrapipe.sources.kafka.source import KafkaSource

    try:
        source = (KafkaSource(source_entry.connection, source_entry.source_config(), **consumer_options)
                  if source_entry else None)
        context = SinkContext(category_groups=groups, environ=environ)
        sinks = [sink_entry.build(context)] if sink_entry else []
        dead_letter = dead_letter_entry.build(context) if dead_letter_entry else None
    except (KafkaConnectionError, RoutingError) as exc:
        raise KafkaConfigError(str(exc)) from None
    return source, sinks, dead_letter
