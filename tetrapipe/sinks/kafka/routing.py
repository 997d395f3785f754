"""Where each event goes in Kafka: destination topics, message key and headers — pure, no I/O.

Topics: `topic_template` is rendered with `{category}`, `{group}` and
`{event_type}` (and the per-event fields of tetrapipe.sinks.kafka.event_keys:
`{peer_namespace}`, `{peer_kind}`, `{ocsf_class}`, `{ocsf_class_uid}`,
`{ocsf_category}`, `{ecs_category}`, `{ecs_dataset}`) for each of the event's categories (`multi_category: all`, the
default) or only for its first in id order (`first`); duplicates collapse, so
`tetragon.{group}` sends an event once per group.  An untagged event goes to
`default_topic`, or is dropped when none is set — counted either way by the
sink — except with a template that names a peer field (`{peer_namespace}`,
`{peer_kind}`): there every event with a peer is routed, an untagged one with
category and group `untagged` (connections inside the cluster are untagged by the
shipped library, and are what peer routing is for).  An event whose type is not
one Tetragon defines, with a template that names `{event_type}`, also goes to the
default topic: every destination topic is known at startup, so it can be created
(or found missing) before the first event rather than at the first unlucky one.
For the same reason an event without
a value for a per-event field the template names (no peer, a peer namespace not in
`peer_namespaces`, …; see event_keys) goes to the default topic, or is dropped.

Keys (`key`): `source` keeps the input message's key; `node` is the event's
`node_name`; `pod` is `namespace/name` of the process's pod; `exec_id` is the
process's exec_id (all events of one process, in order, in one partition);
`none` lets the producer spread events.  When the chosen field is absent the
source key is used.

Headers: the input message's headers are kept, then `tetrapipe-categories`
(comma-separated ids, empty when untagged), `tetragon-event-type`, for
events with a classified destination, `tetrapipe-zone`, and for those whose
destination the peer resolver named, `tetrapipe-peer: <kind>/<namespace>/<name>`
and `tetrapipe-peer-workload: <workload_kind>/<workload>` (event_keys).
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import msgspec

from tetrapipe.event.envelope import Envelope
from tetrapipe.event.model import KNOWN_TYPES
from tetrapipe.sinks.kafka.event_keys import (
    EVENT_FIELDS,
    HEADER_PEER,
    HEADER_PEER_WORKLOAD,
    PEER_FIELDS,
    EventKeyError,
    EventKeys,
    PeerHeaders,
)

KeyStrategy = Literal["source", "node", "pod", "exec_id", "none"]
MultiCategory = Literal["all", "first"]
Headers = list[tuple[str, bytes]]

TEMPLATE_FIELDS = frozenset({"category", "group", "event_type"}) | EVENT_FIELDS
HEADER_CATEGORIES = "tetrapipe-categories"
HEADER_ZONE = "tetrapipe-zone"
HEADER_EVENT_TYPE = "tetragon-event-type"
_OURS = frozenset({HEADER_CATEGORIES, HEADER_ZONE, HEADER_EVENT_TYPE, HEADER_PEER, HEADER_PEER_WORKLOAD})
_TOPIC_CHARS = frozenset(string.ascii_letters + string.digits + "._-")

ROUTED, DEFAULT, DROPPED = "routed", "default", "dropped"
UNTAGGED = "untagged"  # {category} and {group} of an untagged event routed by its peer


class RoutingError(ValueError):
    """A template or topic name that cannot work; the message names it."""


def template_fields(template: str) -> frozenset[str]:
    """The `{fields}` a topic template uses; raises RoutingError for unknown ones or bad syntax."""
    try:
        fields = frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name is not None)
    except ValueError as exc:
        raise RoutingError(f"topic template {template!r}: {exc}") from None
    unknown = fields - TEMPLATE_FIELDS
    if unknown:
        raise RoutingError(f"topic template {template!r}: unknown field(s) {', '.join(sorted(unknown))}; "
                           f"use {', '.join('{' + f + '}' for f in sorted(TEMPLATE_FIELDS))}")
    return fields


def check_topic(name: str) -> str:
    """Return `name` if Kafka accepts it as a topic name, else raise RoutingError naming it."""
    if not name or len(name) > 249 or name in (".", "..") or not set(name) <= _TOPIC_CHARS:
        raise RoutingError(f"invalid Kafka topic name {name!r} (1-249 of [a-zA-Z0-9._-])")
    return name


class Route:
    """The decision for one (categories, event type) shape, computed once and shared."""

    __slots__ = ("topics", "outcome", "headers")

    def __init__(self, topics: tuple[str, ...], outcome: str, headers: Headers) -> None:
        self.topics = topics
        self.outcome = outcome  # ROUTED, DEFAULT or DROPPED
        self.headers = headers  # the tetrapipe-categories and tetragon-event-type headers


class Router:
    """Compiled routing rules; `route(env)` is a dict lookup after an event shape's first event."""

    def __init__(self, template: str, groups: Mapping[str, str], *, multi_category: MultiCategory = "all",
                 default_topic: str | None = None, key: KeyStrategy = "source",
                 event_types: Iterable[str] = KNOWN_TYPES, peer_namespaces: Iterable[str] = (),
                 record_format: str = "tetrapipe") -> None:
        self.template = template
        self.fields = template_fields(template)
        try:
            self.event_keys = EventKeys(self.fields & EVENT_FIELDS, peer_namespaces=peer_namespaces, fmt=record_format)
        except EventKeyError as exc:
            raise RoutingError(f"topic template {template!r}: {exc}") from None
        # the sink renders the record first and passes it to route() when a field comes from it ({ocsf_class}, …)
        self.needs_record = self.event_keys.needs_record
        self._peer_headers = PeerHeaders()
        self.groups = dict(groups)
        self.multi_category = multi_category
        self.default_topic = check_topic(default_topic) if default_topic else None
        self.key_strategy = key
        self.event_types = tuple(event_types)
        self.routes_untagged = any(f in self.fields for f in PEER_FIELDS)  # by the peer: see the module docstring
        self._routes: dict[tuple[tuple[str, ...], str, tuple[str, ...] | None], Route] = {}
        self._zones: dict[str, tuple[str, bytes]] = {}
        for topic in self.topics():
            check_topic(topic)

    def _render(self, category: str, etype: str, extra: tuple[str, ...] = ()) -> str:
        more = dict(zip(self.event_keys.names, extra, strict=True)) if extra else {}
        group = self.groups.get(category, UNTAGGED if category == UNTAGGED else "other")
        return self.template.format(category=category, group=group, event_type=etype, **more)

    def topics(self) -> list[str]:
        """Every topic an event can be sent to (sorted): what startup creates or checks."""
        types = self.event_types if "event_type" in self.fields else self.event_types[:1]
        names_of = self.event_keys.names
        extras = [tuple(c[n] for n in names_of) for c in self.event_keys.possible()] if names_of else [()]
        categories = [*self.groups, UNTAGGED] if self.routes_untagged else list(self.groups)
        names = {self._render(c, t, x) for c in categories for t in types for x in extras}
        if self.default_topic:
            names.add(self.default_topic)
        return sorted(names)

    def route(self, env: Envelope, record: bytes | None = None) -> Route:
        """The topics, outcome and shape headers for a decoded envelope (`record`: its value, when
        `needs_record`)."""
        categories = env.tags.categories
        etype = env.decoded.etype if env.decoded is not None else ""
        # () = no per-event field in the template; None = one the event has no routable value for
        extra = self.event_keys.values(env, record) if self.event_keys.names else ()
        key = (categories, etype, extra)
        route = self._routes.get(key)
        if route is None:
            route = self._routes[key] = self._compute(categories, etype, extra)
        return route

    def _compute(self, categories: tuple[str, ...], etype: str, extra: tuple[str, ...] | None) -> Route:
        headers: Headers = [(HEADER_CATEGORIES, ",".join(categories).encode()),
                            (HEADER_EVENT_TYPE, etype.encode())]
        routable = ("event_type" not in self.fields or etype in self.event_types) and extra is not None
        if routable and (categories or self.routes_untagged):
            assert extra is not None
            chosen = categories if self.multi_category == "all" else categories[:1]
            chosen = chosen or (UNTAGGED,)
            topics = tuple(dict.fromkeys(self._render(c, etype, extra) for c in chosen))
            return Route(topics, ROUTED, headers)
        if self.default_topic:
            return Route((self.default_topic,), DEFAULT, headers)
        return Route((), DROPPED, headers)

    def headers(self, env: Envelope, route: Route) -> Headers:
        """Source headers (minus ours, which are recomputed) + the shape headers + the zone."""
        meta = env.meta
        source = meta[1] if meta is not None else None
        if source:
            headers = [h for h in source if h[0] not in _OURS]
            headers.extend(route.headers)
        else:
            headers = list(route.headers)
        decoded = env.decoded
        egress = decoded.egress if decoded is not None else None
        if egress is not None:
            zone = self._zones.get(egress.zone)
            if zone is None:
                zone = self._zones[egress.zone] = (HEADER_ZONE, egress.zone.encode())
            headers.append(zone)
            peer = decoded.peer  # type: ignore[union-attr]
            if peer is not None:
                headers.extend(self._peer_headers.of(peer))
        return headers

    def key(self, env: Envelope) -> bytes | None:
        """The message key by the configured strategy; the source key when that field is absent."""
        source_key = env.meta[0] if env.meta is not None else None
        strategy = self.key_strategy
        if strategy == "source" or env.decoded is None:
            return source_key
        if strategy == "none":
            return None
        value = event_key(env.decoded, strategy)
        return value.encode() if value else source_key


def event_key(decoded: Any, strategy: str) -> str | None:
    """The node name, `namespace/name` of the pod, or exec_id of a decoded event (None when absent).

    Read from the one decoded view (`Decoded.view`/`vbody`: the lean model, or plain dicts for an event
    that fits no model), never from the full typed model: `node_name` and the pod are in the lean model.
    Its process has no exec_id (a string per event for every run), so that key reads it alone from the
    event's bytes (`_exec_id`); either way the values are those of the full model, which types them alike.
    """
    if strategy == "node":
        return _field(decoded.view, "node_name")
    if strategy == "exec_id":
        return _exec_id(decoded)
    pod = _field(_field(decoded.vbody, "process"), "pod")
    namespace, name = _field(pod, "namespace"), _field(pod, "name")
    return f"{namespace}/{name}" if namespace and name else None


class _ProcessExecId(msgspec.Struct, gc=False):
    exec_id: str | None = None


class _BodyExecId(msgspec.Struct, gc=False):
    process: _ProcessExecId | None = None


@functools.cache
def _exec_id_reader(etype: str) -> Callable[[bytes], Any]:
    """{etype: {process: {exec_id}}}: msgspec skips every other field without building it (made by the first
    `--kafka-key exec_id` event of each type, not at start-up)."""
    model = msgspec.defstruct(f"_ExecIdOf_{etype}", [(etype, _BodyExecId | None, None)], gc=False)
    return msgspec.json.Decoder(model).decode


def _exec_id(decoded: Any) -> str | None:
    if type(decoded.view) is dict:  # the generic view holds every field already
        return _field(_field(decoded.vbody, "process"), "exec_id")
    etype = decoded.etype  # a lean view's type is one of KNOWN_TYPES
    try:
        body = getattr(_exec_id_reader(etype)(decoded.raw), etype)
    except msgspec.ValidationError:
        body = _NOT_TYPED
    if body is not _NOT_TYPED:
        process = body.process if body is not None else None
        return process.exec_id if process is not None else None
    # a shape the small model does not type (an unexpected type in the path): what the full model says
    return _field(_field(decoded.body, "process"), "exec_id")


_NOT_TYPED = object()


def _field(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    return obj.get(name) if type(obj) is dict else getattr(obj, name, None)
