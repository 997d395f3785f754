"""Configuration of `otlp` sinks: config-file structs, OTEL_EXPORTER_OTLP_* variables, CLI flags.

Precedence for each setting of a sink (highest first): the sink's own entry
(config file, or the CLI flags for sinks named by `--otlp-endpoint`), then
`OTEL_EXPORTER_OTLP_LOGS_<X>`, then `OTEL_EXPORTER_OTLP_<X>`, then the default
— as the OpenTelemetry specification orders them ("OTLP Exporter
Configuration").  The variables never create a sink on their own: an OTLP
sink exists only when the config file lists one or `--otlp-endpoint` is given.

Endpoints: for gRPC, `scheme://host:port` (`http` = plaintext, `https` = TLS;
without a scheme, TLS unless `insecure`).  For HTTP, an endpoint with no path
(or `/`) gets `/v1/logs` appended, as the spec does for OTEL_EXPORTER_OTLP_ENDPOINT;
one with a path is used as is, as for OTEL_EXPORTER_OTLP_LOGS_ENDPOINT.
Protocol: when neither the entry nor the variables name one, port 4317 (the
OTLP/gRPC port) means `grpc`, anything else `http/protobuf` (the default; see
the README for the measurements behind it).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, Literal
from urllib.parse import unquote, urlsplit

import msgspec

from tetrapipe.sinks.base import Selection, SinkContext
from tetrapipe.transforms.filter_stage import DedupConfig, FilterLists, Items, RateLimitConfig, Redaction

if TYPE_CHECKING:
    from tetrapipe.formats.base import Format
    from tetrapipe.sinks.otlp.sink import DeadLetter, OtlpSink
    from tetrapipe.sinks.otlp.transport import TransportSettings

# The sink, its mapping, encoders and transport are imported by the functions that build a sink: a run
# without OTLP output does not load them (start-up time).  So the defaults the config structs need are
# repeated here; tests/sinks/test_otlp_config.py checks they equal the sink's and mapping's own.
DEFAULT_MAX_RECORDS = 2048
DEFAULT_MAX_BYTES = 3 * 1024 * 1024
DEFAULT_GROUP_SEVERITY: dict[str, str] = {"security": "WARN", "system": "INFO", "network": "INFO"}

Protocol = Literal["grpc", "http/protobuf", "http/json"]
PROTOCOLS: tuple[str, ...] = ("grpc", "http/protobuf", "http/json")
DEFAULT_PROTOCOL = "http/protobuf"
DEFAULT_TIMEOUT = 10.0


class OtlpTlsConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """TLS: `ca_file` to trust (default: system CAs), client certificate for mTLS, `insecure` for gRPC."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool | None = None


class OtlpSeverityConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """LogRecord severity from the event's categories: the highest of its categories' severities.

    A category's severity: `categories[id]`, else `groups[its group]`, else `default`;
    events without categories get `untagged`.  Texts: TRACE DEBUG INFO WARN ERROR FATAL.
    """

    untagged: str = "INFO"
    default: str = "INFO"
    groups: dict[str, str] = msgspec.field(default_factory=lambda: dict(DEFAULT_GROUP_SEVERITY))
    categories: dict[str, str] = {}


class OtlpSinkConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One OTLP logs destination (an entry of the config file's `otlp:` list)."""

    endpoint: str | None = None  # default: $OTEL_EXPORTER_OTLP_LOGS_ENDPOINT / $OTEL_EXPORTER_OTLP_ENDPOINT
    protocol: Protocol | None = None
    name: str | None = None  # in logs and counters; default "otlp <endpoint>"
    headers: dict[str, str] = {}
    compression: Literal["gzip", "none"] | None = None
    timeout: float | None = None  # seconds, per export request
    tls: OtlpTlsConfig = msgspec.field(default_factory=OtlpTlsConfig)
    select: Selection = msgspec.field(default_factory=Selection)
    body: Literal["string", "map"] = "string"
    format: str = "tetrapipe"  # the body's format (tetrapipe.formats); other than tetrapipe: a string body
    service_name: str = "tetrapipe"
    resource: dict[str, str] = {}  # extra resource attributes, e.g. deployment.environment.name
    severity: OtlpSeverityConfig = msgspec.field(default_factory=OtlpSeverityConfig)
    max_records: int = DEFAULT_MAX_RECORDS  # per export request
    max_bytes: int = DEFAULT_MAX_BYTES  # per export request, before compression
    max_concurrent_requests: int = 2
    # per-sink Tetragon filters, redaction, rate limit, dedup (tetrapipe.transforms.filter_stage)
    filters: FilterLists | None = None
    field_filters: Items = []
    redaction: Redaction = []
    rate_limit: RateLimitConfig | None = None
    dedup: DedupConfig | None = None


OtlpSection = list[OtlpSinkConfig]


class OtlpConfigError(ValueError):
    """An OTLP setting that cannot work; the message names it."""


def _env(environ: Mapping[str, str], name: str) -> str | None:
    """OTEL_EXPORTER_OTLP_LOGS_<name>, else OTEL_EXPORTER_OTLP_<name> (empty counts as unset)."""
    for var in (f"OTEL_EXPORTER_OTLP_LOGS_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
        value = environ.get(var, "").strip()
        if value:
            return value
    return None


def parse_headers(text: str) -> dict[str, str]:
    """`k1=v1,k2=v2` with URL-encoded values (the OTEL_EXPORTER_OTLP_HEADERS format)."""
    headers: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OtlpConfigError(f"header {item.strip()!r} is not KEY=VALUE")
        headers[unquote(key.strip())] = unquote(value.strip())
    return headers


def _protocol(cfg: OtlpSinkConfig, endpoint: str, environ: Mapping[str, str]) -> str:
    protocol = cfg.protocol or _env(environ, "PROTOCOL")
    if protocol is None:
        return "grpc" if urlsplit(endpoint if "://" in endpoint else f"//{endpoint}").port == 4317 else DEFAULT_PROTOCOL
    if protocol not in PROTOCOLS:
        raise OtlpConfigError(f"otlp protocol {protocol!r}: one of {', '.join(PROTOCOLS)}")
    return protocol


def _endpoint(cfg: OtlpSinkConfig, environ: Mapping[str, str]) -> tuple[str, bool]:
    """(endpoint, used as is): explicit and LOGS_ENDPOINT are signal-specific; ENDPOINT is a base URL."""
    if cfg.endpoint:
        return cfg.endpoint, False
    specific = environ.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "").strip()
    if specific:
        return specific, True
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if base:
        return base, False
    return "", False


def resolve_settings(cfg: OtlpSinkConfig, environ: Mapping[str, str] | None = None) -> TransportSettings:
    """The connection settings of one sink: its entry, then the environment, then defaults."""
    from tetrapipe.sinks.otlp.transport import TransportSettings
    environ = os.environ if environ is None else environ
    endpoint, as_is = _endpoint(cfg, environ)
    protocol = _protocol(cfg, endpoint or "http://localhost:4318", environ)
    if not endpoint:
        endpoint = "http://localhost:4317" if protocol == "grpc" else "http://localhost:4318"
    url = endpoint
    if protocol != "grpc":
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https"):
            raise OtlpConfigError(f"otlp endpoint {endpoint!r}: an http:// or https:// URL is required for {protocol}")
        if not as_is and parts.path in ("", "/"):
            url = endpoint.rstrip("/") + "/v1/logs"
    headers = parse_headers(_env(environ, "HEADERS") or "")
    headers.update(cfg.headers)
    compression = cfg.compression or _env(environ, "COMPRESSION") or "none"
    if compression not in ("gzip", "none"):
        raise OtlpConfigError(f"otlp compression {compression!r}: gzip or none")
    timeout = cfg.timeout
    if timeout is None:
        millis = _env(environ, "TIMEOUT")
        try:
            timeout = float(millis) / 1000 if millis else DEFAULT_TIMEOUT  # the variables are in milliseconds
        except ValueError:
            raise OtlpConfigError(f"OTEL_EXPORTER_OTLP_TIMEOUT {millis!r}: milliseconds expected") from None
    if timeout <= 0:
        raise OtlpConfigError(f"otlp timeout {timeout}: must be positive")
    insecure = cfg.tls.insecure
    if insecure is None:
        insecure = (_env(environ, "INSECURE") or "false").lower() == "true"
    return TransportSettings(
        url=url, protocol=protocol, headers=tuple(headers.items()), compression=compression, timeout=timeout,
        insecure=insecure, ca_file=cfg.tls.ca_file or _env(environ, "CERTIFICATE"),
        client_cert_file=cfg.tls.cert_file or _env(environ, "CLIENT_CERTIFICATE"),
        client_key_file=cfg.tls.key_file or _env(environ, "CLIENT_KEY"))


def build_sink(cfg: OtlpSinkConfig, dead_letter: DeadLetter | None = None, *,
               environ: Mapping[str, str] | None = None, group_of: dict[str, str] | None = None,
               scope_version: str = "") -> OtlpSink:
    """One `OtlpSink` from its config entry (validates everything; raises `OtlpConfigError`)."""
    from tetrapipe.sinks.otlp.mapping import LogMapper, Severity
    from tetrapipe.sinks.otlp.sink import OtlpSink
    settings = resolve_settings(cfg, environ)
    sev = cfg.severity
    try:
        severity = Severity(sev.untagged, sev.default, sev.groups, sev.categories, group_of)
        return OtlpSink(settings, name=cfg.name, selection=cfg.select, service_name=cfg.service_name,
                        mapper=LogMapper(severity, cfg.body, _format(cfg, group_of)), resource=cfg.resource,
                        dead_letter=dead_letter,
                        max_records=cfg.max_records, max_bytes=cfg.max_bytes,
                        max_concurrent_requests=cfg.max_concurrent_requests, scope_version=scope_version)
    except ValueError as exc:
        raise OtlpConfigError(f"otlp sink {cfg.name or settings.url}: {exc}") from None


def add_otlp_arguments(run_parser: argparse.ArgumentParser) -> None:
    """The `run` command's OTLP flags (the short form of the config file's `otlp:` entries)."""
    group = run_parser.add_argument_group("OpenTelemetry (OTLP logs) output")
    group.add_argument("--otlp-endpoint", action="append", default=[], metavar="URL",
                       help="also send events to this OTLP collector (repeatable; e.g. http://collector:4318; "
                            "port 4317 implies gRPC unless --otlp-protocol says otherwise)")
    group.add_argument("--otlp-protocol", choices=PROTOCOLS, default=None,
                       help=f"protocol for --otlp-endpoint (default: $OTEL_EXPORTER_OTLP_PROTOCOL, else "
                            f"{DEFAULT_PROTOCOL}, or grpc for port 4317)")
    group.add_argument("--otlp-header", action="append", default=[], metavar="K=V",
                       help="request header for --otlp-endpoint, e.g. an API key (repeatable)")


def cli_entries(args: argparse.Namespace) -> OtlpSection:
    """One config entry per `--otlp-endpoint`, carrying `--otlp-protocol` and `--otlp-header`."""
    headers: dict[str, str] = {}
    for item in getattr(args, "otlp_header", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OtlpConfigError(f"--otlp-header {item!r}: KEY=VALUE expected")
        headers[key.strip()] = value.strip()
    return [OtlpSinkConfig(endpoint=url, protocol=getattr(args, "otlp_protocol", None), headers=headers)
            for url in getattr(args, "otlp_endpoint", None) or []]


def build_otlp_sinks(args: argparse.Namespace, config_section: Sequence[OtlpSinkConfig] | None,
                     dead_letter: DeadLetter | None, *, environ: Mapping[str, str] | None = None,
                     group_of: dict[str, str] | None = None, scope_version: str = "") -> list[OtlpSink]:
    """The run's OTLP sinks: the config file's entries, then one per `--otlp-endpoint` (both may be used)."""
    entries = [*(config_section or []), *cli_entries(args)]
    if (getattr(args, "otlp_protocol", None) or getattr(args, "otlp_header", None)) and not cli_entries(args):
        raise OtlpConfigError("--otlp-protocol and --otlp-header apply to --otlp-endpoint, which is missing")
    sinks = [build_sink(cfg, dead_letter, environ=environ, group_of=group_of, scope_version=scope_version)
             for cfg in entries]
    names = [s.name for s in sinks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise OtlpConfigError(f"otlp sinks with the same name/endpoint: {', '.join(duplicates)} (set distinct names)")
    return sinks


def _format(cfg: OtlpSinkConfig, group_of: Mapping[str, str] | None) -> Format | None:
    """The body's format when it is not the output contract (which the processor already rendered)."""
    if cfg.format in ("tetrapipe", "json"):
        return None
    from tetrapipe.formats import build_format
    if cfg.body == "map":
        raise OtlpConfigError(f"otlp format {cfg.format!r} is sent as a string body: body: map works with "
                              "format: tetrapipe only")
    try:
        return build_format(cfg.format, category_groups=group_of)
    except ValueError as exc:
        raise OtlpConfigError(f"otlp {exc}") from None


class OtlpSinkEntry(OtlpSinkConfig, tag="otlp", tag_field="type", forbid_unknown_fields=True, omit_defaults=True):
    """`sinks: [{type: otlp, endpoint: ..., ...}]`: the keys of an `otlp:` entry."""

    category_bound: ClassVar[bool] = True  # grades severity by category: a reload that changes groups needs a restart

    def build(self, context: SinkContext) -> OtlpSink:
        try:
            return build_sink(self, context.dead_letter, environ=context.environ,
                              group_of=dict(context.category_groups), scope_version=context.scope_version)
        except OtlpConfigError as exc:
            raise ValueError(str(exc)) from None


def as_entry(cfg: OtlpSinkConfig) -> OtlpSinkEntry:
    """An `otlp:` list entry (or a `--otlp-endpoint`'s) as a `sinks:` entry."""
    return OtlpSinkEntry(**msgspec.structs.asdict(cfg))
