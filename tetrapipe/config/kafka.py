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

Exactly once (`kafka.exactly_once: true` / `--kafka-exactly-once`): the sink
and the dead-letter topic write inside Kafka transactions that also carry the
consumed offsets (tetrapipe.sinks.kafka.transactions).  `exactly_once_options`
refuses a run that cannot keep that promise — another output (stdout asked
for with --format, OTLP, a --dead-letter FILE), a source that is not Kafka,
or a broker without transactions — naming the reason and the alternative.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
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


class TransactionSettings(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Exactly-once transactions (config key `kafka.transactions`); used with `kafka.exactly_once: true`."""

    transactional_id: str | None = None  # default tetrapipe-<group>-<hostname>: unique per worker, stable
    max_records: int = 20_000  # a delivery group larger than this is split into several transactions
    max_bytes: int = 32 << 20  # input bytes per transaction, likewise
    max_seconds: float = 30.0  # a transaction older than this when it would commit is aborted and redone
    timeout_ms: int = 60_000  # the producer's transaction.timeout.ms (broker max: transaction.max.timeout.ms)
    probe_timeout: float = 15.0  # seconds for the startup check that the brokers grant transactions

    def validate(self) -> None:
        if self.max_records < 1 or self.max_bytes < 1:
            raise KafkaConfigError("kafka.transactions.max_records and max_bytes must be positive")
        if not 0 < self.max_seconds * 1000 < self.timeout_ms <= 900_000:
            raise KafkaConfigError("kafka.transactions: need 0 < max_seconds*1000 < timeout_ms <= 900000 "
                                   "(the broker's default transaction.max.timeout.ms)")


class KafkaSection(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The `kafka:` section of the config file."""

    connection: KafkaConnection = msgspec.field(default_factory=KafkaConnection)
    source: KafkaSourceConfig | None = None
    sink: KafkaSinkConfig | None = None
    dead_letter: KafkaDeadLetterConfig | None = None
    exactly_once: bool = False  # Kafka → Kafka in transactions (see the module doc); at-least-once otherwise
    transactions: TransactionSettings = msgspec.field(default_factory=TransactionSettings)


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
    g.add_argument("--kafka-exactly-once", action="store_true",
                   help="exactly once, Kafka to Kafka: outputs and input offsets in one transaction "
                        "(Apache Kafka; read the outputs with isolation.level=read_committed)")
    g.add_argument("--kafka-startup-timeout", type=_seconds, metavar="SECONDS",
                   help="at startup, retry an unreachable cluster this long, then exit 4 "
                        "(default 30; kafka.connection.startup_timeout)")


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also NaN
        raise argparse.ArgumentTypeError("must be a number of seconds, 0 or more")
    return value


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
        connection = _replace(section.connection.with_env(env), bootstrap_servers=args.kafka_bootstrap,
                              startup_timeout=getattr(args, "kafka_startup_timeout", None))
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
    exactly_once = bool(getattr(args, "kafka_exactly_once", False)) or section.exactly_once
    section.transactions.validate()
    return KafkaSection(connection=connection, source=source, sink=sink, dead_letter=dead_letter,
                        exactly_once=exactly_once, transactions=section.transactions)


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
    cfg = resolve(args, section, environ)
    if cfg.exactly_once:
        return build_exactly_once(cfg, groups, **consumer_options)
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


def _refuse(reason: str) -> KafkaConfigError:
    return KafkaConfigError(f"kafka.exactly_once (--kafka-exactly-once) cannot be kept: {reason}. Run without it "
                            "for at-least-once delivery (the default: nothing lost, duplicates possible)")


def build_exactly_once(cfg: KafkaSection, groups: Mapping[str, str], **consumer_options: Any,
                       ) -> tuple[KafkaSource, list[KafkaSink], KafkaDeadLetter | None]:
    """The Kafka source, sink and dead-letter topic of an exactly-once run: one transactional producer shared."""
    from tetrapipe.sinks.kafka.config import producer_options
    from tetrapipe.sinks.kafka.transactional import TransactionalDeadLetter, TransactionalKafkaSink
    from tetrapipe.sinks.kafka.transactions import Bounds, Transactions
    from tetrapipe.sources.kafka.source import KafkaSource

    if cfg.source is None:
        raise _refuse("the input is not a Kafka topic (give --kafka-topic / kafka.source)")
    if cfg.sink is None:
        raise _refuse("the output is not Kafka (give --kafka-out-template / kafka.sink)")
    t = cfg.transactions
    try:
        source = KafkaSource(cfg.connection, cfg.source, **{"isolation_level": "read_committed", **consumer_options})
        source.transactional = True
        options = producer_options(cfg.connection, idempotence=True, compression=cfg.sink.compression,
                                   linger_ms=cfg.sink.linger_ms, batch_size=cfg.sink.batch_size,
                                   max_request_size=cfg.sink.max_request_size)
        transactional_id = t.transactional_id or f"tetrapipe-{cfg.source.group_id}-{socket.gethostname()}"
        transactions = Transactions(cfg.connection, options, transactional_id, cfg.source.group_id, source,
                                    bounds=Bounds(t.max_records, t.max_bytes, t.max_seconds), timeout_ms=t.timeout_ms)
        transactions.probe_timeout = t.probe_timeout
        sink = TransactionalKafkaSink(cfg.connection, cfg.sink, dict(groups), transactions)
        dead_letter = (TransactionalDeadLetter(cfg.connection, cfg.dead_letter, transactions)
                       if cfg.dead_letter else None)
    except (KafkaConnectionError, RoutingError) as exc:
        raise KafkaConfigError(str(exc)) from None
    return source, [sink], dead_letter


def exactly_once_options(source: Any, sinks: list[Any], dead_letter: Any, *,
                         probe: bool = True) -> dict[str, Any]:
    """The Pipeline's keyword arguments for this run: {} at-least-once; in exactly-once mode the transaction
    step and a committer that commits nothing.  Raises KafkaConfigError for a run that cannot be exactly once
    (another output or input alongside, or brokers without transactions — checked now when `probe`)."""
    transactions = getattr(sinks[0], "transactions", None) if sinks else None
    if transactions is None:
        return {}
    others = [s.name for s in sinks if getattr(s, "transactions", None) is not transactions]
    if others:
        raise _refuse(f"output(s) other than Kafka in the same run: {', '.join(others)}")
    if dead_letter is not None and getattr(dead_letter, "transactions", None) is not transactions:
        raise _refuse(f"the dead letter {dead_letter.name} is not a Kafka topic (use --kafka-dlq TOPIC)")
    if source is not transactions.ownership:
        raise _refuse(f"the input {source.name} is not the Kafka source")
    if probe:
        from tetrapipe.sinks.kafka.transactional import probe_transactions

        why = asyncio.run(probe_transactions(transactions.options, transactions.transactional_id,
                                             transactions.probe_timeout))
        if why is not None:
            raise _refuse(f"the brokers at {transactions.connection.bootstrap_servers} do not grant a "
                          f"transactional producer ({why}); transactions need Apache Kafka (not e.g. Tansu)")
    from tetrapipe.pipeline.commit import Committer

    return {"transaction": transactions, "committer": Committer(None)}
