"""Registries: a name -> "module:attr" table, imported on first use.

Sources, sinks and dead letters are registered by name (tetrapipe.sources.SOURCES,
tetrapipe.sinks.SINKS / DEAD_LETTERS); the config names them by `type`.  The value is a string, not
the object, so that a run imports only what it builds: a run that reads stdin never imports the
Kafka client.  This module sits at the bottom of the layers so that both sources and sinks (which
may not import each other) share it.
"""

from __future__ import annotations

import importlib
from typing import Any


def load_registered(registry: dict[str, str], kind: str, name: str) -> Any:
    """The object `registry` names under `name` ("module:attr", imported now); KeyError lists the known names."""
    if name not in registry:
        raise KeyError(f"unknown {kind} {name!r}; known: {', '.join(registry)}")
    module, _, attr = registry[name].partition(":")
    return getattr(importlib.import_module(module), attr)
