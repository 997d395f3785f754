"""Sinks and dead-letter writers, by protocol name (imported on first use).

A run that writes stdout does not import the Kafka or gRPC clients.
"""

from __future__ import annotations

import importlib
from typing import Any

SINKS: dict[str, str] = {
    "stdout": "tetrapipe.sinks.stdout:StdoutSink",
    "kafka": "tetrapipe.sinks.kafka.sink:KafkaSink",
    "otlp": "tetrapipe.sinks.otlp.sink:OtlpSink",
}
DEAD_LETTERS: dict[str, str] = {
    "file": "tetrapipe.sinks.file:FileDeadLetter",
    "kafka": "tetrapipe.sinks.kafka.sink:KafkaDeadLetter",
}


def _load(registry: dict[str, str], kind: str, name: str) -> Any:
    if name not in registry:
        raise KeyError(f"unknown {kind} {name!r}; known: {', '.join(registry)}")
    module, _, attr = registry[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def sink_class(name: str) -> Any:
    return _load(SINKS, "sink", name)


def dead_letter_class(name: str) -> Any:
    return _load(DEAD_LETTERS, "dead-letter writer", name)
