"""Decoding the config file's `sources:`, `sinks:` and `dead_letter:` entries: tagged unions on `type`.

Each entry's `type` picks a config struct from a registry (tetrapipe.sources.SOURCES,
tetrapipe.sinks.SINKS, tetrapipe.sinks.DEAD_LETTERS); the union of the registered structs
decodes it, unknown keys rejected.  The union is made from the registries when a file is
loaded, not when this module is imported, so a type registered by a plugin (or a test)
is known without touching this module.  Errors name the key path (`sinks[1].format`).
"""

from __future__ import annotations

import re
from typing import Any, Union

import msgspec

from tetrapipe.sinks import DEAD_LETTERS, SINKS, dead_letter_config, sink_config
from tetrapipe.sources import SOURCES, source_config


class EntryError(ValueError):
    """An entry that does not decode; the message starts with its key path."""


def _union(registry: dict[str, str], load: Any) -> Any:
    types = tuple(load(name) for name in registry)
    return types[0] if len(types) == 1 else Union[types]  # noqa: UP007 - a union built at run time


def _decode(path: str, raw: Any, registry: dict[str, str], load: Any, kind: str) -> Any:
    kind_of = raw.get("type") if isinstance(raw, dict) else None
    if not isinstance(raw, dict):
        raise EntryError(f"{path}: a mapping with a `type` expected, not {type(raw).__name__}")
    if kind_of not in registry:
        raise EntryError(f"{path}.type: {kind} type {kind_of!r} unknown; known: {', '.join(registry)}")
    try:
        return msgspec.convert(raw, _union(registry, load))
    except msgspec.ValidationError as exc:
        raise EntryError(_with_path(str(exc), path)) from None


def _with_path(message: str, path: str) -> str:
    """msgspec's "… - at `$.x`" with `$` replaced by the entry's own path (which it lacks at the top)."""
    if "- at `$" not in message:
        return f"{message} - at `{path}`"
    return re.sub(r"`\$", f"`{path}", message)


def decode_sources(raw: list[Any]) -> list[Any]:
    """The `sources:` list (one entry at most: a run reads one source)."""
    if len(raw) > 1:
        raise EntryError(f"sources: one entry expected (a run reads one source), not {len(raw)}")
    return [_decode(f"sources[{i}]", entry, SOURCES, source_config, "source") for i, entry in enumerate(raw)]


def decode_sinks(raw: list[Any]) -> list[Any]:
    """The `sinks:` list; the first bad entry raises (`decode_sink` one by one reports each)."""
    return [decode_sink(i, entry) for i, entry in enumerate(raw)]


def decode_sink(index: int, raw: Any) -> Any:
    """Entry `index` of the `sinks:` list (its errors name `sinks[index]`)."""
    return _decode(f"sinks[{index}]", raw, SINKS, sink_config, "sink")


def decode_dead_letter(raw: Any) -> Any:
    return None if raw is None else _decode("dead_letter", raw, DEAD_LETTERS, dead_letter_config, "dead-letter")
