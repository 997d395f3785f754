"""Sources, by protocol name.  Each yields `Batch`es and commits the positions the committer hands back.

The registry names each class by module path and imports it on first use, so a
run that reads stdin does not pay for importing the Kafka client.
"""

from __future__ import annotations

import importlib
from typing import Any

from tetrapipe.sources.stream import FileSource, StdinSource

SOURCES: dict[str, str] = {
    "stdin": "tetrapipe.sources.stream:StdinSource",
    "file": "tetrapipe.sources.stream:FileSource",
    "follow": "tetrapipe.sources.follow.source:FollowSource",
    "kafka": "tetrapipe.sources.kafka.source:KafkaSource",
}


def source_class(name: str) -> Any:
    """The source class registered under `name` (KeyError lists the known names)."""
    if name not in SOURCES:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")
    module, _, attr = SOURCES[name].partition(":")
    return getattr(importlib.import_module(module), attr)


__all__ = ["SOURCES", "FileSource", "StdinSource", "source_class"]
