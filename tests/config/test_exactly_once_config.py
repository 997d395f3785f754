"""The exactly-once settings (`kafka.exactly_once`, `kafka.transactions`, `--kafka-exactly-once`) and refusals."""

from __future__ import annotations

import argparse

import msgspec
import pytest

from tetrapipe.config.kafka import (
    KafkaConfigError,
    KafkaSection,
    TransactionSettings,
    add_kafka_arguments,
    build_kafka,
    exactly_once_options,
)
from tetrapipe.pipeline.commit import Committer
from tetrapipe.sinks.stdout import StdoutSink

GROUPS = {"ssh": "access"}


def args(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_kafka_arguments(parser)
    return parser.parse_args(["--kafka-bootstrap", "127.0.0.1:9", *flags])


def test_the_flag_builds_a_transactional_run_and_a_committer_that_commits_nothing() -> None:
    source, sinks, dead_letter = build_kafka(args("--kafka-topic", "in", "--kafka-out-template", "o.{category}",
                                                  "--kafka-dlq", "dlq", "--kafka-exactly-once"), None,
                                             groups=GROUPS, environ={})
    assert source is not None and source.transactional and source._extra["isolation_level"] == "read_committed"
    transactions = sinks[0].transactions  # type: ignore[attr-defined]
    assert dead_letter is not None and dead_letter.transactions is transactions  # type: ignore[attr-defined]
    assert transactions.options["transactional_id"].startswith("tetrapipe-tetrapipe-")
    options = exactly_once_options(source, sinks, dead_letter, probe=False)
    assert options["transaction"] is transactions
    assert isinstance(options["committer"], Committer) and options["committer"]._commit_fn is None


def test_without_the_mode_nothing_changes() -> None:
    source, sinks, dead_letter = build_kafka(args("--kafka-topic", "in", "--kafka-out-template", "o.{category}"),
                                             None, groups=GROUPS, environ={})
    assert source is not None and not source.transactional and "isolation_level" not in source._extra
    assert type(sinks[0]).__name__ == "KafkaSink"
    assert exactly_once_options(source, sinks, dead_letter) == {}


def test_another_output_is_refused_naming_it_and_the_alternative() -> None:
    source, sinks, dead_letter = build_kafka(args("--kafka-topic", "in", "--kafka-out-template", "o.{category}",
                                                  "--kafka-exactly-once"), None, groups=GROUPS, environ={})
    with pytest.raises(KafkaConfigError, match="other than Kafka.*stdout.*at-least-once"):
        exactly_once_options(source, [*sinks, StdoutSink()], dead_letter, probe=False)


def test_no_kafka_input_or_output_is_refused() -> None:
    with pytest.raises(KafkaConfigError, match="input is not a Kafka topic"):
        build_kafka(args("--kafka-out-template", "o.{category}", "--kafka-exactly-once"), None, groups=GROUPS,
                    environ={})
    with pytest.raises(KafkaConfigError, match="output is not Kafka"):
        build_kafka(args("--kafka-topic", "in", "--kafka-exactly-once"), None, groups=GROUPS, environ={})


def test_the_config_key_and_the_transaction_bounds() -> None:
    section = msgspec.convert({"exactly_once": True, "transactions": {"transactional_id": "w-0", "max_records": 500},
                               "source": {"topics": ["in"]}, "sink": {}}, KafkaSection)
    _, sinks, _ = build_kafka(args(), section, groups=GROUPS, environ={})
    transactions = sinks[0].transactions  # type: ignore[attr-defined]
    assert transactions.transactional_id == "w-0" and transactions.bounds.max_records == 500
    with pytest.raises(KafkaConfigError, match="max_seconds"):
        TransactionSettings(max_seconds=120.0, timeout_ms=60_000).validate()
    with pytest.raises(KafkaConfigError, match="max_seconds"):
        TransactionSettings(timeout_ms=1_000_000).validate()
    with pytest.raises(msgspec.ValidationError, match="transactions"):
        msgspec.convert({"transactions": {"bogus": 1}}, KafkaSection)
