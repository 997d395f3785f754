"""OTLP sink configuration: precedence of entry / OTEL_EXPORTER_OTLP_* variables / defaults, CLI flags, example."""

from __future__ import annotations

import argparse
from pathlib import Path

import msgspec
import pytest
import yaml

from tetrapipe.config.root import Config
from tetrapipe.sinks.base import Selection
from tetrapipe.sinks.otlp.config import (
    OtlpConfigError,
    OtlpSection,
    OtlpSinkConfig,
    add_otlp_arguments,
    build_otlp_sinks,
    parse_headers,
    resolve_settings,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example-otlp.yaml"


def test_defaults_without_environment() -> None:
    s = resolve_settings(OtlpSinkConfig(), environ={})
    assert (s.url, s.protocol, s.compression, s.timeout, s.headers) == (
        "http://localhost:4318/v1/logs", "http/protobuf", "none", 10.0, ())


def test_port_4317_means_grpc_unless_a_protocol_is_named() -> None:
    assert resolve_settings(OtlpSinkConfig(endpoint="http://collector:4317"), environ={}).protocol == "grpc"
    named = resolve_settings(OtlpSinkConfig(endpoint="http://collector:4317", protocol="http/json"), environ={})
    assert (named.protocol, named.url) == ("http/json", "http://collector:4317/v1/logs")
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    assert resolve_settings(OtlpSinkConfig(endpoint="http://c:4317"), environ=env).protocol == "http/protobuf"


def test_environment_follows_the_spec_precedence() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://base:4318/",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s%20ecret,x-a=1",
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "x-b=2",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
        "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "gzip",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": "/etc/ca.pem",
    }
    s = resolve_settings(OtlpSinkConfig(), environ=env)
    assert s.url == "https://base:4318/v1/logs"  # the generic endpoint is a base URL
    assert dict(s.headers) == {"x-b": "2"}  # the signal-specific variable wins as a whole
    assert (s.timeout, s.compression, s.ca_file) == (2.5, "gzip", "/etc/ca.pem")
    env["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"] = "https://logs:9999/custom/path"
    assert resolve_settings(OtlpSinkConfig(), environ=env).url == "https://logs:9999/custom/path"  # as is
    entry = OtlpSinkConfig(endpoint="http://mine:4318", headers={"x-c": "3"}, timeout=1.0, compression="none")
    s = resolve_settings(entry, environ=env)
    assert (s.url, dict(s.headers), s.timeout, s.compression) == (
        "http://mine:4318/v1/logs", {"x-b": "2", "x-c": "3"}, 1.0, "none")
    assert parse_headers("a=1, b = x%3Dy ,") == {"a": "1", "b": "x=y"}


@pytest.mark.parametrize("env, message", [
    ({"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}, "protocol"),
    ({"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}, "milliseconds"),
    ({"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, "compression"),
    ({"OTEL_EXPORTER_OTLP_HEADERS": "novalue"}, "KEY=VALUE"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "http"),
])
def test_bad_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(OtlpConfigError, match=message):
        resolve_settings(OtlpSinkConfig(), environ=env)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_otlp_arguments(parser)
    return parser.parse_args(argv)


def test_cli_flags_add_sinks_next_to_the_config_file_entries() -> None:
    args = parse(["--otlp-endpoint", "http://a:4317", "--otlp-endpoint", "http://b:4318",
                  "--otlp-protocol", "http/json", "--otlp-header", "api-key=k=1"])
    section = [OtlpSinkConfig(endpoint="http://c:4317", name="security",
                              select=Selection(groups=frozenset({"security"}), untagged=False))]
    sinks = build_otlp_sinks(args, section, None, environ={})
    assert [(s.name, s.settings.protocol, s.settings.url) for s in sinks] == [
        ("security", "grpc", "http://c:4317"),
        ("otlp http://a:4317/v1/logs", "http/json", "http://a:4317/v1/logs"),
        ("otlp http://b:4318/v1/logs", "http/json", "http://b:4318/v1/logs")]
    assert dict(sinks[1].settings.headers) == {"api-key": "k=1"}
    assert sinks[0].selection.groups == frozenset({"security"}) and not sinks[0].selection.untagged
    assert build_otlp_sinks(parse([]), None, None, environ={}) == []
    with pytest.raises(OtlpConfigError, match="--otlp-endpoint"):
        build_otlp_sinks(parse(["--otlp-protocol", "grpc"]), None, None, environ={})
    with pytest.raises(OtlpConfigError, match="same name"):
        build_otlp_sinks(parse(["--otlp-endpoint", "http://a:1", "--otlp-endpoint", "http://a:1"]), None, None,
                         environ={})


def test_example_config_validates() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    section = msgspec.convert(raw.pop("otlp"), OtlpSection)
    msgspec.convert(raw, Config)  # the rest is the ordinary config file
    sinks = build_otlp_sinks(parse([]), section, None, environ={})
    assert len(sinks) >= 2
    with pytest.raises(msgspec.ValidationError, match=r"\$\[0\]"):
        msgspec.convert([{"endpoint": "http://x:4318", "bodyy": "map"}], OtlpSection)


def test_config_defaults_are_the_sinks_own() -> None:
    # sinks/otlp/config.py repeats these so a run without OTLP output does not import the sink at start-up
    from tetrapipe.sinks.otlp import config as otlp_config
    from tetrapipe.sinks.otlp import mapping, sink

    assert otlp_config.DEFAULT_MAX_RECORDS == sink.DEFAULT_MAX_RECORDS
    assert otlp_config.DEFAULT_MAX_BYTES == sink.DEFAULT_MAX_BYTES
    assert otlp_config.DEFAULT_GROUP_SEVERITY == mapping.DEFAULT_GROUP_SEVERITY
    assert OtlpSinkConfig().max_bytes == sink.DEFAULT_MAX_BYTES
