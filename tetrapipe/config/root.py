"""The config file: declarative, validated once at load, unknown keys rejected with their path.

Layout (every section optional; `tetrapipe run` needs no file at all):

    input:
      max_depth: 64     # deepest JSON nesting accepted (deeper: dead-lettered as too_deep)
      hint_after_events: 100000  # then one INFO line if a type some category needs never came; 0: off
    library:            # see tetrapipe.rules.library.LibraryConfig
      categories: [...] # additions / overrides by id
      disable: [...]
      path: FILE        # replace the shipped library
    egress:
      pod_cidrs: [10.244.0.0/16]
      service_cidrs: [10.96.0.0/12]
      zones:
        - {name: corp-vpn, cidrs: [10.8.0.0/16], internal: true}
    sources:            # what to read: one entry, a tagged union on `type` (config/example-sinks.yaml)
      - {type: stdin}   # or {type: file, path: FILE}, {type: follow, path: FILE, checkpoint: PATH,
                        # start_at: beginning}, {type: kafka, connection: {...}, topics: [...], ...}
    sinks:              # where events go: a list of tagged unions on `type`; each takes `format:`
      - {type: stdout, format: tetrapipe, select: {...}}       # (any tetrapipe.formats name)
      - {type: file, path: FILE, format: ecs, fsync: false}    # append formatted lines (sinks/file_sink.py)
      - {type: kafka, connection: {...}, topic_template: ..., format: ...}   # keys of kafka.sink
      - {type: otlp, endpoint: ..., format: ...}                             # keys of an otlp: entry
    dead_letter: {type: file, path: FILE}  # or {type: kafka, connection: {...}, topic: TOPIC}
    kafka: {connection: ..., source: ..., sink: ..., dead_letter: ...}   # config/example-kafka.yaml
    otlp: [{endpoint: ..., protocol: ..., select: ...}]                 # config/example-otlp.yaml
    filters: {allow: [...], deny: [...]}  # Tetragon's export filters, redaction, field filters, for every
    field_filters: [...]                  # sink (each OTLP entry and kafka.sink also take them, and
    redaction: [...]                      # rate_limit/dedup): tetrapipe.transforms.filter_stage, build_filters
    rate_limit: {...}                     # (top level: keyed after tagging)
    dedup: {...}
    peers:              # who is on the other end (tetrapipe.transforms.peers); off: learn false, nothing else
      learn: true       # learn pod addresses from the stream's own source addresses (--no-peers-learn: off)
      learn_idle: 600
      static_file: FILE # address -> peer table, re-read on SIGHUP
      snapshot: FILE    # kubectl get pods,services,endpointslices,nodes -A -o json: the API's view, from a file
      labels: [app.kubernetes.io/name, ...]
      grace: 60
      kubernetes: {enabled: false, kubeconfig: FILE, context: NAME, node_name: NODE, require_sync: true}

`sources:`/`sinks:`/`dead_letter:` and the short forms: the `kafka:` and `otlp:` sections and the
flags (`--input`, `--follow`, `--format`, `--dead-letter`, `--kafka-*`, `--otlp-*`) keep working and
translate into the same entries, by one resolver (tetrapipe.config.resolve: flag > env > file).  The
registries in tetrapipe.sources / tetrapipe.sinks name each `type`'s struct; `tetrapipe run` builds
what the resolver returns, nothing else.  When no sink is given at all, stdout is the sink.

CIDR precedence (one source of truth for classification and, later, policy
rendering): `--pod-cidr`/`--service-cidr` flags, else the `POD_CIDR` /
`SERVICE_CIDR` environment variables (comma-separated), else the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import msgspec
import yaml

from tetrapipe.config.entries import EntryError, decode_dead_letter, decode_sinks, decode_sources
from tetrapipe.config.kafka import KafkaSection
from tetrapipe.event.decode import DEFAULT_MAX_DEPTH, MAX_DEPTH_LIMIT
from tetrapipe.event.model import LeanEvent
from tetrapipe.rules.conditions import RuleError
from tetrapipe.rules.library import SAFE_LOADER, LibraryConfig, LibraryError, load_library
from tetrapipe.rules.summary import TemplateError
from tetrapipe.sinks.kafka.config import KafkaSinkConfig
from tetrapipe.sinks.otlp.config import OtlpSinkConfig
from tetrapipe.transforms.classify import Classifier, ConfigError, ZoneSpec
from tetrapipe.transforms.filter_errors import FilterConfigError
from tetrapipe.transforms.filter_stage import (
    DedupConfig,
    FilterLists,
    Items,
    RateLimitConfig,
    Redaction,
    Stage,
    compile_sink_stage,
)
from tetrapipe.transforms.peer_model import LabelPicker
from tetrapipe.transforms.peer_snapshot import SnapshotError, convert, read_items
from tetrapipe.transforms.peers import PeerConfig
from tetrapipe.transforms.redact_view import view_for
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
    # After this many events, one INFO line names the Tetragon setting likely hiding a needed event type
    # (tetrapipe.pipeline.hints); 0: never.
    hint_after_events: Annotated[int, msgspec.Meta(ge=0)] = 100_000


class PeersKubernetesConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`peers.kubernetes`: list+watch Pods/Services/EndpointSlices/Nodes (deploy/rbac grants exactly that)."""

    enabled: bool = False
    kubeconfig: str | None = None  # None: in-cluster service account in a pod, else $KUBECONFIG / ~/.kube/config
    context: str | None = None
    node_name: str | None = None  # None: $NODE_NAME (the DaemonSet sets it from spec.nodeName); watch its pods only
    require_sync: bool = True  # /readyz not ready until the first list of every resource completed


class PeersConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`peers:` — see tetrapipe.transforms.peers.PeerConfig for what each option does."""

    # None: on (the default), except with several worker processes (their chunks carry no learned state)
    learn: bool | None = None
    learn_idle: Annotated[float, msgspec.Meta(ge=0)] = 600.0
    static_file: str | None = None
    snapshot: str | None = None  # a Kubernetes List file, read at start and on SIGHUP (offline replay)
    labels: list[str] | None = None  # None: the default label keys
    grace: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    kubernetes: PeersKubernetesConfig = msgspec.field(default_factory=PeersKubernetesConfig)


def build_peer_config(peers: PeersConfig, *, learn: bool | None = None, kubernetes: bool | None = None,
                      environ: Mapping[str, str] | None = None, learn_default: bool = True) -> PeerConfig | None:
    """The resolver's config, or None when nothing would answer (no learning, no API, no static file).

    `learn` / `kubernetes` override the file (`--peers-learn`/`--no-peers-learn`, `--peers-kubernetes`);
    learning is `learn_default` when neither the flag nor the file says; the node name defaults to $NODE_NAME.
    """
    environ = os.environ if environ is None else environ
    kube = peers.kubernetes
    learn = peers.learn if learn is None else learn
    learn = learn_default if learn is None else learn
    watch = kube.enabled if kubernetes is None else kubernetes
    if not (learn or watch or peers.static_file or peers.snapshot):
        return None
    if watch and peers.snapshot:  # one index: a relist would drop the snapshot's objects, a reload the API's
        raise ConfigFileError("peers.snapshot and the Kubernetes watch (peers.kubernetes.enabled, "
                              "--peers-kubernetes) exclude each other: the snapshot stands in for the API")
    values: dict[str, object] = {"learn": learn, "learn_idle": peers.learn_idle, "grace": peers.grace,
                                 "kubernetes": watch, "kubeconfig": kube.kubeconfig, "context": kube.context,
                                 "node_name": kube.node_name or environ.get("NODE_NAME") or None,
                                 "require_sync": kube.require_sync, "static_file": peers.static_file,
                                 "snapshot": peers.snapshot}
    if peers.labels is not None:
        values["labels"] = peers.labels
    try:
        return PeerConfig.from_mapping(values)
    except ValueError as exc:
        raise ConfigFileError(str(exc)) from None


def check_peer_snapshot(peers: PeersConfig) -> None:
    """check-config: the `peers.snapshot` file reads and every item converts (the run loads it the same way)."""
    if peers.snapshot:
        try:
            convert(read_items(peers.snapshot), LabelPicker())
        except SnapshotError as exc:
            raise ConfigFileError(f"peers.snapshot: {exc}") from None


class Config(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    input: InputConfig = msgspec.field(default_factory=InputConfig)
    library: LibraryConfig = msgspec.field(default_factory=LibraryConfig)
    egress: EgressConfig = msgspec.field(default_factory=EgressConfig)
    # Tagged unions on `type` over the registries (tetrapipe.config.entries): raw here, decoded by load_config.
    sources: list[Any] = []
    sinks: list[Any] = []
    dead_letter: Any = None
    kafka: KafkaSection | None = None  # Kafka source / routed sink / dead-letter topic (tetrapipe.config.kafka)
    otlp: list[OtlpSinkConfig] = []  # OTLP log destinations, each with its own selection (tetrapipe.sinks.otlp.config)
    peers: PeersConfig = msgspec.field(default_factory=PeersConfig)  # tetrapipe.transforms.peers
    # Tetragon-style filters for every event and sink (tetrapipe.transforms.filter_stage); per sink: in the sink
    filters: FilterLists | None = None
    field_filters: Items = []
    redaction: Redaction = []
    rate_limit: RateLimitConfig | None = None
    dedup: DedupConfig | None = None


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
        config = msgspec.convert(raw if raw is not None else {}, Config)
        return msgspec.structs.replace(config, sources=decode_sources(config.sources),
                                       sinks=decode_sinks(config.sinks),
                                       dead_letter=decode_dead_letter(config.dead_letter))
    except (msgspec.ValidationError, EntryError) as exc:
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


class Filters(msgspec.Struct, frozen=True):
    """The compiled filters of a config: the top level's and each sink's, by the sink's key path."""

    top: Stage | None = None  # None: no per-event call at all
    sinks: dict[str, Stage] = {}  # "otlp[0]", "kafka.sink", "sinks[2]" -> its stage (only those with one)

    @property
    def view(self) -> type[LeanEvent] | None:
        """The model to decode events into (`LineDecoder.use_view`): with what redaction reads when a stage
        redacts (tetrapipe.transforms.redact_view), else None (the plain lean view)."""
        return view_for([self.top, *self.sinks.values()])


def build_filters(config: Config) -> Filters:
    """Compile every filter/redaction/rate-limit section; a bad one raises ConfigFileError naming its key path."""
    try:
        top = compile_sink_stage("", config)  # the top level carries the same keys as a sink
        scoped: list[tuple[str, object]] = [(f"otlp[{i}]", cfg) for i, cfg in enumerate(config.otlp)]
        if config.kafka is not None and config.kafka.sink is not None:
            scoped.append(("kafka.sink", config.kafka.sink))
        # `sinks:` entries of the types that carry the per-sink keys (filters, redaction, rate_limit, dedup)
        scoped += [(f"sinks[{i}]", entry) for i, entry in enumerate(config.sinks)
                   if isinstance(entry, (OtlpSinkConfig, KafkaSinkConfig))]
        sinks = {path: stage for path, cfg in scoped if (stage := compile_sink_stage(path, cfg)) is not None}
    except FilterConfigError as exc:
        raise ConfigFileError(str(exc)) from None
    return Filters(top, sinks)
