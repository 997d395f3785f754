"""Sinks and dead-letter writers, by protocol name (imported on first use).

A run that writes stdout does not import the Kafka or gRPC clients.
"""

from __future__ import annotations

import importlib
from typing import Any

SINKS: dict[str, str] = {
    "stdout": "sinks.stdout:StdoutSink",
    "kafka": "sinks.kafka:KafkaSink",
    "otlp": "sinks.otlp:OtlpSink",
}
DEAD_LETTERS: dict[str, str] = {
    "file": "pipeline.deadletter:FileDeadLetter",
    "kafka": "sinks.kafka:KafkaDeadLetter",
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
