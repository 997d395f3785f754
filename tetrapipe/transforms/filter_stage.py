"""The config of Tetragon-style filters, redaction and rate limits, and their compiled form (a `Stage`).

Config keys (the top level of the file, and each sink: every `otlp:` entry, `kafka.sink`):

    filters: {allow: [...], deny: [...], enable_pid_set: false}
                                           # Tetragon's --export-allowlist / --export-denylist items;
                                           # enable_pid_set: its --enable-pid-set-filter (pid_set items)
    field_filters: [...]                   # Tetragon's --field-filters items
    redaction: [...]                       # Tetragon's --redaction-filters items, or, with options:
    redaction: {filters: [...], replacement: "*****", string_args: false}
    rate_limit: {rate: 100, burst: 200, keys: [categories, node_name, process.binary], interval: 60}
    dedup: {window: 10, keys: [process.binary, process.arguments], max_keys: 100000}

Every list may also be given as Tetragon's flag/Helm string form (JSON objects one after another,
e.g. a pasted `exportAllowList: |-` value).  `replacement` replaces each captured group (Tetragon's
fixed `*****` by default); `string_args: true` also redacts the `string_arg` values of kprobe,
tracepoint, uprobe, LSM and USDT `args` (Tetragon never does; see tetrapipe.transforms.redact).
`rate_limit` and `dedup` at the top level see every event (keyed after tagging, so `categories`
is known); per sink, the events that sink selected.  Their summary records: tetrapipe.pipeline.summaries.

`compile_stage(...)` compiles one scope once (at load, again on SIGHUP), raising
`FilterConfigError` whose message starts with the key path (`otlp[0].filters.allow[2].binary_regex[0]:
...`); it returns None when nothing is configured, so an unconfigured run never calls a filter.
Where a stage runs: `tetrapipe.pipeline.filtering`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .dedup import Dedup
from .filter import ExportFilter, compile_filters, parse_filter_list
from .filter_errors import FilterConfigError
from .filter_fields import FieldFilters, compile_field_filters
from .ratelimit import RateLimiter
from .redact import Redactor, compile_redaction

Items = list[dict[str, Any]] | str  # a list of Tetragon objects, or Tetragon's flag/Helm string form
DEFAULT_RATE_KEYS = ("categories", "node_name", "process.binary")


class FilterLists(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    allow: Items = []
    deny: Items = []
    enable_pid_set: bool = False  # Tetragon's --enable-pid-set-filter: without it a pid_set item is an error


class RedactionConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`redaction:` with options; the plain list form is `filters` alone."""

    filters: Items = []
    replacement: str = "*****"
    string_args: bool = False


Redaction = Items | RedactionConfig  # the plain list (or Tetragon's string form), or the object with options


class RateLimitConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    rate: float  # events per second, per key
    burst: int
    keys: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_RATE_KEYS))
    interval: float = 60.0
    max_keys: int = 100_000


class DedupConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    window: float  # seconds
    keys: list[str]
    max_keys: int = 100_000


class Stage:
    """One scope's compiled steps; each None when not configured (never called then)."""

    __slots__ = ("export", "redact", "fields", "rate", "dedup", "changes_event", "keyed")

    def __init__(self, export: ExportFilter | None, redact: Redactor | None, fields: FieldFilters | None,
                 rate: RateLimiter | None = None, dedup: Dedup | None = None) -> None:
        self.export, self.redact, self.fields, self.rate, self.dedup = export, redact, fields, rate, dedup
        self.changes_event = redact is not None or fields is not None
        self.keyed = rate is not None or dedup is not None  # has state, and summary records to deliver


def _items(value: Items, path: str) -> list[Any]:
    return parse_filter_list(value, path) if isinstance(value, str) else list(value)


def _redactor(value: Redaction, path: str) -> Redactor:
    if isinstance(value, RedactionConfig):
        return compile_redaction(_items(value.filters, f"{path}.filters"), replacement=value.replacement,
                                 string_args=value.string_args, path=f"{path}.filters")
    return compile_redaction(_items(value, path), path=path)


def compile_stage(path: str, filters: FilterLists | None = None, field_filters: Items = "",
                  redaction: Redaction = "", rate_limit: RateLimitConfig | None = None,
                  dedup: DedupConfig | None = None) -> Stage | None:
    """Compile one scope (`path` is its key path prefix, "" for the top level); None if empty."""
    prefix = f"{path}." if path else ""
    export = None
    if filters is not None:
        allow = _items(filters.allow, f"{prefix}filters.allow")
        deny = _items(filters.deny, f"{prefix}filters.deny")
        compiled = compile_filters(allow, deny, path=f"{prefix}filters", enable_pid_set=filters.enable_pid_set)
        export = None if compiled.is_noop else compiled
    fields = compile_field_filters(_items(field_filters, f"{prefix}field_filters"), path=f"{prefix}field_filters")
    redact = _redactor(redaction, f"{prefix}redaction")
    rate = None if rate_limit is None else RateLimiter(
        rate=rate_limit.rate, burst=rate_limit.burst, keys=rate_limit.keys, interval=rate_limit.interval,
        max_keys=rate_limit.max_keys, path=f"{prefix}rate_limit")
    dd = None if dedup is None else Dedup(window=dedup.window, keys=dedup.keys, max_keys=dedup.max_keys,
                                          path=f"{prefix}dedup")
    stage = Stage(export, None if redact.is_noop else redact, None if fields.is_noop else fields, rate, dd)
    if stage.export is None and not stage.changes_event and rate is None and dd is None:
        return None
    return stage


def compile_sink_stage(path: str, cfg: Any) -> Stage | None:
    """The stage of a sink config struct carrying the per-sink keys (OTLP entry, kafka.sink)."""
    return compile_stage(path, cfg.filters, cfg.field_filters, cfg.redaction, cfg.rate_limit, cfg.dedup)


__all__ = ["DedupConfig", "FilterConfigError", "FilterLists", "Items", "RateLimitConfig", "Redaction",
           "RedactionConfig", "Stage",
           "compile_sink_stage", "compile_stage"]
