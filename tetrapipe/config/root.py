"""The config file: declarative, validated once at load, unknown keys rejected with their path.

Layout (every section optional; `tetrapipe run` needs no file at all):

    input:
      max_depth: 64     # deepest JSON nesting accepted (deeper: dead-lettered as too_deep)
    library:            # see tetrapipe.rules.library.LibraryConfig
      categories: [...] # additions / overrides by id
      disable: [...]
      path: FILE        # replace the shipped library
    egress:
      pod_cidrs: [10.244.0.0/16]
      service_cidrs: [10.96.0.0/12]
      zones:
        - {name: corp-vpn, cidrs: [10.8.0.0/16], internal: true}
    kafka: {connection: ..., source: ..., sink: ..., dead_letter: ...}   # config/example-kafka.yaml
    otlp: [{endpoint: ..., protocol: ..., select: ...}]                 # config/example-otlp.yaml

CIDR precedence (one source of truth for classification and, later, policy
rendering): `--pod-cidr`/`--service-cidr` flags, else the `POD_CIDR` /
`SERVICE_CIDR` environment variables (comma-separated), else the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

import msgspec
import yaml

from tetrapipe.config.kafka import KafkaSection
from tetrapipe.event.decode import DEFAULT_MAX_DEPTH, MAX_DEPTH_LIMIT
from tetrapipe.rules.conditions import RuleError
from tetrapipe.rules.library import SAFE_LOADER, LibraryConfig, LibraryError, load_library
from tetrapipe.rules.summary import TemplateError
from tetrapipe.sinks.otlp.config import OtlpSinkConfig
from tetrapipe.transforms.classify import Classifier, ConfigError, ZoneSpec
from tetrapipe.transforms.tag import Tagger

_RESERVED_ZONES = frozenset({"pod", "service", "public", "private", "loopback", "metadata", "link-local",
                             "multicast", "unspecified"})


class ZoneConfig(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    cidrs: list[str]
    internal: bool = False


class EgressConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    pod_cidrs: list[str] = []
    service_cidrs: list[str] = []
    zones: list[ZoneConfig] = []


class InputConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """How input records are decoded (`--max-depth` overrides `max_depth`)."""

    max_depth: Annotated[int, msgspec.Meta(ge=1, le=MAX_DEPTH_LIMIT)] = DEFAULT_MAX_DEPTH


class Config(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    input: InputConfig = msgspec.field(default_factory=InputConfig)
    library: LibraryConfig = msgspec.field(default_factory=LibraryConfig)
    egress: EgressConfig = msgspec.field(default_factory=EgressConfig)
    kafka: KafkaSection | None = None  # Kafka source / routed sink / dead-letter topic (tetrapipe.config.kafka)
    otlp: list[OtlpSinkConfig] = []  # OTLP log destinations, each with its own selection (tetrapipe.sinks.otlp.config)


class ConfigFileError(ValueError):
    """An invalid config; the message names the file and the key path."""


def load_config(path: str | os.PathLike[str] | None) -> Config:
    if path is None:
        return Config()
    try:
        raw = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigFileError(f"{path}: {exc}") from None
    try:
        return msgspec.convert(raw if raw is not None else {}, Config)
    except msgspec.ValidationError as exc:
        raise ConfigFileError(f"{path}: {exc}") from None


def split_env_cidrs(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def resolve_cidrs(flag_values: Sequence[str] | None, env_name: str, file_values: Sequence[str],
                  environ: Mapping[str, str] | None = None) -> list[str]:
    """Flags, else the environment variable, else the config file."""
    environ = os.environ if environ is None else environ
    if flag_values:
        return [c for value in flag_values for c in split_env_cidrs(value)]
    from_env = split_env_cidrs(environ.get(env_name))
    return from_env if from_env else list(file_values)


def build_classifier(egress: EgressConfig, pod_cidrs: Sequence[str], service_cidrs: Sequence[str]) -> Classifier:
    for zone in egress.zones:
        if zone.name in _RESERVED_ZONES:
            raise ConfigFileError(f"egress.zones: zone name {zone.name!r} is reserved for a built-in zone")
    try:
        return Classifier(pod_cidrs, service_cidrs,
                          [ZoneSpec(z.name, tuple(z.cidrs), z.internal) for z in egress.zones])
    except ConfigError as exc:
        raise ConfigFileError(f"egress: {exc}") from None


def build_tagger(library: LibraryConfig) -> Tagger:
    try:
        return Tagger(load_library(library))
    except (LibraryError, RuleError, TemplateError) as exc:
        raise ConfigFileError(str(exc)) from None
