"""Sources, by `type` name: the registry of their config entries (`sources:` in the config file).

Each value names a msgspec struct, tagged on `type` with that name, whose `build(spill)` makes the
source (`tetrapipe.sources.base.Source`).  The config file's `sources:` entry and the short forms
(`--input`, `--follow`, `--kafka-topic`, ...) both become one of these structs
(`tetrapipe.config.resolve`); the run builds what it gets.  Adding a source = its module(s) with
their config struct, and one line here.  The sources themselves are imported by `build()`, so a
run that reads stdin does not pay for importing the Kafka client.
"""

from __future__ import annotations

from typing import Any

from tetrapipe.registry import load_registered
from tetrapipe.sources.stream import FileSource, StdinSource

SOURCES: dict[str, str] = {
    "stdin": "tetrapipe.sources.stream:StdinSourceConfig",
    "file": "tetrapipe.sources.stream:FileSourceConfig",
    "follow": "tetrapipe.sources.follow.config:FollowSourceConfig",
    "kafka": "tetrapipe.sources.kafka.config:KafkaSourceEntry",
}


def source_config(name: str) -> Any:
    """The config struct of the source registered under `name`."""
    return load_registered(SOURCES, "source", name)


__all__ = ["SOURCES", "FileSource", "StdinSource", "source_config"]
