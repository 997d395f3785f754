"""The one place that decides what a run reads and writes: flags > environment > config file.

`resolve_wiring(args, config)` turns every way of naming a source, sink or dead
letter into the registries' config entries (tetrapipe.sources.SOURCES,
tetrapipe.sinks.SINKS / DEAD_LETTERS); `build_wiring` builds them.  Nothing
else in a run constructs a source or a sink.

The ways, and which wins:
- source: `--follow FILE` (with `--checkpoint`, `--follow-from`), `--input FILE`, a
  Kafka source (`--kafka-topic`/`--kafka-topic-pattern`, KAFKA_TOPICS/
  KAFKA_TOPIC_PATTERN, the file's `kafka.source`), then the file's `sources:`
  entry, else stdin.  Two of the first three, or `kafka.source` with `sources:`,
  are errors (they name each other).  `--checkpoint`/`--follow-from` without
  `--follow` apply to a `sources:` follow entry, else they are errors.
- sinks, all of them: the `kafka:` section's sink (with `--kafka-*` and KAFKA_*
  over it: tetrapipe.config.kafka.resolve), the `otlp:` entries and one per
  `--otlp-endpoint`, the `sinks:` entries; then stdout when none was given or
  `--format` was — `--format`/`--ocsf-findings`/`--only` override a `sinks:`
  stdout entry instead of adding a second stdout.  Kafka entries of `sinks:`,
  `sources:` and `dead_letter:` take the KAFKA_* connection variables and
  `--kafka-bootstrap` on top of their `connection`, like `kafka.connection`.
- dead letter: `--dead-letter FILE`, else the Kafka topic (`--kafka-dlq`,
  KAFKA_DLQ_TOPIC, `kafka.dead_letter`), else the file's `dead_letter:`.  A file
  and a Kafka topic given together (`--dead-letter` with any Kafka dead letter), or
  `dead_letter:` with `kafka.dead_letter`, are errors: one dead letter per run.

Each sink carries its config key path ("kafka.sink", "otlp[0]", "sinks[2]"),
which is how per-sink filters (tetrapipe.config.root.build_filters) find it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

import msgspec

from tetrapipe.clients.kafka import KafkaConnection, KafkaConnectionError
from tetrapipe.config.kafka import KafkaConfigError, build_exactly_once, kafka_entries
from tetrapipe.config.kafka import resolve as resolve_kafka
from tetrapipe.config.root import Config, ConfigFileError
from tetrapipe.sinks.base import Selection, SinkContext
from tetrapipe.sinks.file import FileDeadLetter, FileDeadLetterConfig
from tetrapipe.sinks.kafka.entries import KafkaDeadLetterEntry, KafkaSinkEntry
from tetrapipe.sinks.otlp.config import OtlpConfigError, as_entry, cli_entries
from tetrapipe.sinks.stdout import StdoutSinkConfig
from tetrapipe.sources.follow.config import FollowSourceConfig
from tetrapipe.sources.kafka.config import KafkaSourceEntry
from tetrapipe.sources.stream import FileSourceConfig, StdinSourceConfig


class Wiring(NamedTuple):
    """What a run reads and writes, as config entries (nothing built yet)."""

    source: Any  # a SOURCES entry
    sinks: list[tuple[str, Any]]  # (config key path, SINKS entry), in delivery order
    dead_letter: Any  # a DEAD_LETTERS entry, or None


class Built(NamedTuple):
    """The wiring built: the run's source, its sinks by config key path, its dead letter."""

    source: Any
    sinks: list[tuple[str, Any]]
    dead_letter: Any


def resolve_wiring(args: argparse.Namespace, config: Config,
                   environ: Mapping[str, str] | None = None) -> Wiring:
    """The run's source, sinks and dead letter from the flags, the environment and the file (see above)."""
    env = os.environ if environ is None else environ
    try:
        kafka_source, kafka_sink, kafka_dlq = kafka_entries(args, config.kafka, env)
        file_entries = [_with_kafka_env(e, args, env) for e in (*config.sources, *config.sinks, config.dead_letter)]
        otlp = [(f"otlp[{i}]", as_entry(cfg)) for i, cfg in enumerate(config.otlp)]
        otlp += [(f"--otlp-endpoint[{i}]", as_entry(cfg)) for i, cfg in enumerate(cli_entries(args))]
    except (KafkaConfigError, KafkaConnectionError, OtlpConfigError) as exc:
        raise ConfigFileError(str(exc)) from None
    if (getattr(args, "otlp_protocol", None) or getattr(args, "otlp_header", None)) and not cli_entries(args):
        raise ConfigFileError("--otlp-protocol and --otlp-header apply to --otlp-endpoint, which is missing")
    sources = file_entries[:len(config.sources)]
    sinks_file = file_entries[len(config.sources):-1]
    dead_letter_file = file_entries[-1]
    if config.kafka is not None and config.kafka.source is not None and sources:
        raise ConfigFileError("kafka.source and sources: exclude each other: choose one")
    source = _source(args, kafka_source, sources[0] if sources else None)
    sinks = [*([("kafka.sink", kafka_sink)] if kafka_sink is not None else []), *otlp,
             *((f"sinks[{i}]", entry) for i, entry in enumerate(sinks_file))]
    return Wiring(source, _with_stdout(args, sinks), _dead_letter(args, config, kafka_dlq, dead_letter_file))


def build_wiring(wiring: Wiring, context: SinkContext) -> Built:
    """Build the entries (dead letter first: a file dead letter spools oversized lines for the source)."""
    dead_letter = _build("dead_letter", wiring.dead_letter, context) if wiring.dead_letter is not None else None
    context = msgspec.structs.replace(context, dead_letter=dead_letter)
    sinks = [(path, _build(path, entry, context)) for path, entry in wiring.sinks]
    names = [sink.name for _, sink in sinks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigFileError(f"sinks with the same name: {', '.join(duplicates)} (give them distinct names; "
                              "stdout and a Kafka sink can each be given once)")
    spill = dead_letter.spool if isinstance(dead_letter, FileDeadLetter) else None
    try:
        source = wiring.source.build(spill)
    except ValueError as exc:
        raise ConfigFileError(str(exc)) from None
    return Built(source, sinks, dead_letter)


def build_transactional(args: argparse.Namespace, config: Config, wiring: Wiring, context: SinkContext,
                        environ: Mapping[str, str] | None = None) -> Built | None:
    """With `kafka.exactly_once` / `--kafka-exactly-once`, the run built around one transactional producer that
    the Kafka source, sink and dead-letter topic share (tetrapipe.config.kafka.build_exactly_once); else None.

    Any other sink or dead letter of the wiring is built as usual, so that
    tetrapipe.config.kafka.exactly_once_options can name it when it refuses the run.
    """
    try:
        cfg = resolve_kafka(args, config.kafka, os.environ if environ is None else environ)
        if not cfg.exactly_once:
            return None
        source, kafka_sinks, kafka_dlq = build_exactly_once(cfg, context.category_groups)
    except (KafkaConfigError, KafkaConnectionError) as exc:
        raise ConfigFileError(str(exc)) from None
    dead_letter = kafka_dlq if kafka_dlq is not None else (
        _build("dead_letter", wiring.dead_letter, context) if wiring.dead_letter is not None else None)
    context = msgspec.structs.replace(context, dead_letter=dead_letter)
    others = [(path, _build(path, entry, context)) for path, entry in wiring.sinks if path != "kafka.sink"]
    return Built(source, [*(("kafka.sink", sink) for sink in kafka_sinks), *others], dead_letter)


def _build(path: str, entry: Any, context: SinkContext) -> Any:
    try:
        return entry.build(context)
    except ValueError as exc:  # KafkaConnectionError, RoutingError, OtlpConfigError, an unknown format, ...
        message = str(exc)
        raise ConfigFileError(message if path.startswith(("kafka.", "otlp[", "--")) else f"{path}: {message}") from None


def _source(args: argparse.Namespace, kafka: KafkaSourceEntry | None, from_file: Any) -> Any:
    if args.follow:
        if args.input or kafka is not None:
            raise ConfigFileError("--follow excludes --input and a Kafka source")
        if not args.checkpoint:
            raise ConfigFileError("--follow needs --checkpoint PATH (a writable place that survives restarts)")
        return FollowSourceConfig(args.follow, args.checkpoint, start_at=args.follow_from or "beginning")
    if args.checkpoint or args.follow_from:
        if kafka is None and not args.input and isinstance(from_file, FollowSourceConfig):
            return msgspec.structs.replace(from_file, checkpoint=args.checkpoint or from_file.checkpoint,
                                           start_at=args.follow_from or from_file.start_at)
        raise ConfigFileError("--checkpoint and --follow-from apply only with --follow")
    if kafka is not None:
        if args.input:
            raise ConfigFileError("--input and a Kafka source (--kafka-topic / kafka.source) exclude each other")
        return kafka
    if args.input:
        return FileSourceConfig(args.input)
    return from_file if from_file is not None else StdinSourceConfig()


def _with_stdout(args: argparse.Namespace, sinks: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """stdout is the default output, and `--format` asks for it (or sets the `sinks:` stdout entry's format)."""
    only = frozenset(getattr(args, "only", None) or ())
    fmt = getattr(args, "format", None)
    given = bool(getattr(args, "format_given", fmt is not None))
    findings = bool(getattr(args, "ocsf_findings", False))
    flagged: dict[str, Any] = {}
    if given:
        flagged["format"] = fmt
    if findings:
        flagged["ocsf_findings"] = True
    if only:
        flagged["select"] = Selection(categories=only, untagged=False)
    if any(isinstance(entry, StdoutSinkConfig) for _, entry in sinks):
        return [(path, msgspec.structs.replace(entry, **flagged) if isinstance(entry, StdoutSinkConfig) else entry)
                for path, entry in sinks]
    if sinks and not given:
        return sinks
    return [*sinks, ("stdout", StdoutSinkConfig(format=fmt or "json", ocsf_findings=findings,
                                                select=Selection(categories=only, untagged=not only)))]


def _dead_letter(args: argparse.Namespace, config: Config, kafka: KafkaDeadLetterEntry | None,
                 from_file: Any) -> Any:
    if args.dead_letter and (kafka is not None or isinstance(from_file, KafkaDeadLetterEntry)):
        raise ConfigFileError("--dead-letter FILE and a Kafka dead-letter topic (--kafka-dlq / kafka.dead_letter) "
                              "exclude each other: choose one")
    if from_file is not None and config.kafka is not None and config.kafka.dead_letter is not None:
        raise ConfigFileError("dead_letter and kafka.dead_letter exclude each other: choose one")
    if args.dead_letter:
        return FileDeadLetterConfig(args.dead_letter)
    return kafka if kafka is not None else from_file


def _with_kafka_env(entry: Any, args: argparse.Namespace, env: Mapping[str, str]) -> Any:
    """A Kafka entry of the file with KAFKA_* and `--kafka-bootstrap` over its connection; other entries as given."""
    if not isinstance(entry, (KafkaSourceEntry, KafkaSinkEntry, KafkaDeadLetterEntry)):
        return entry
    connection: KafkaConnection = entry.connection.with_env(env)
    if getattr(args, "kafka_bootstrap", None):
        connection = msgspec.structs.replace(connection, bootstrap_servers=args.kafka_bootstrap)
    return msgspec.structs.replace(entry, connection=connection)
