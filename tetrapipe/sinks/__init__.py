"""Sinks and dead-letter targets, by `type` name: the registries of their config entries.

Each value names a msgspec struct, tagged on `type` with that name, whose `build(context)` makes
the sink (`tetrapipe.sinks.base.SinkConfig`) or dead letter (`DeadLetterConfig`).  The config
file's `sinks:` / `dead_letter:` entries and the short forms (`--format`, `--kafka-*`,
`--otlp-endpoint`, `--dead-letter`, the `kafka:`/`otlp:` keys) all become such structs
(`tetrapipe.config.resolve`); the run builds what it gets.  Adding a sink = its module(s) with
their config struct, and one line here.  The sinks themselves are imported by `build()`: a run
that writes stdout does not import the Kafka or gRPC clients.
"""

from __future__ import annotations

from typing import Any

from tetrapipe.registry import load_registered

SINKS: dict[str, str] = {
    "stdout": "tetrapipe.sinks.stdout:StdoutSinkConfig",
    "file": "tetrapipe.sinks.file_sink:FileSinkConfig",
    "kafka": "tetrapipe.sinks.kafka.entries:KafkaSinkEntry",
    "otlp": "tetrapipe.sinks.otlp.config:OtlpSinkEntry",
}
DEAD_LETTERS: dict[str, str] = {
    "file": "tetrapipe.sinks.file:FileDeadLetterConfig",
    "kafka": "tetrapipe.sinks.kafka.entries:KafkaDeadLetterEntry",
}



def sink_config(name: str) -> Any:
    """The config struct of the sink registered under `name`."""
    return load_registered(SINKS, "sink", name)


def dead_letter_config(name: str) -> Any:
    """The config struct of the dead-letter target registered under `name`."""
    return load_registered(DEAD_LETTERS, "dead-letter target", name)
