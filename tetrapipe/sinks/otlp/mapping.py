"""Tetragon event → OpenTelemetry LogRecord fields (protocol-neutral).

`LogMapper.record(env)` reads one processed envelope and returns a `LogFields`:
timestamps, severity, event name, the body and the attributes, named as the
OpenTelemetry semantic conventions name them (see the README's mapping table).
`LogMapper.resource(env)` returns the key of the per-node Resource.  Encoders
(`tetrapipe.sinks.otlp.encode`) turn these into OTLP protobuf or OTLP/JSON bytes.

Speed matters here (it runs once per event at ≥ 50,000 events/s): fields are
read straight from the typed model (`tetrapipe.event.model`) when the event fit it,
and from the plain dicts otherwise; anything derived from a small set of
values (severity per category set, image name/tag split, container id
prefix) is memoised in bounded dicts.

Address and peer attributes of a connection: tetrapipe.sinks.otlp.peer_attributes.
"""

from __future__ import annotations

import calendar
from typing import Any

from tetrapipe.event.envelope import Envelope
from tetrapipe.formats.base import Format
from tetrapipe.sinks.otlp.peer_attributes import AttributeGroup, PeerAttributes, address_attributes

# OTLP SeverityNumber values (logs data model) for the texts users may configure.
SEVERITIES: dict[str, int] = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17, "FATAL": 21}
DEFAULT_GROUP_SEVERITY: dict[str, str] = {"security": "WARN", "system": "INFO", "network": "INFO"}
_MEMO_LIMIT = 4096

AttrValue = str | int | bool | float | tuple[str, ...]
Attribute = tuple[str, AttrValue]


class LogFields:
    """One LogRecord, protocol-neutral.  `body` is the output-contract JSON (bytes) or a decoded map.

    `shared`: more attributes, in groups that many records share (the same `AttributeGroup` each time,
    e.g. a peer's): encoders encode each group once and reuse the bytes.  `all_attributes()` is both.
    """

    __slots__ = ("time_ns", "observed_ns", "severity", "severity_text", "event_name", "body", "attributes",
                 "shared")

    def __init__(self, time_ns: int, observed_ns: int, severity: int, severity_text: str, event_name: str,
                 body: Any, attributes: list[Attribute], shared: tuple[AttributeGroup, ...] = ()) -> None:
        self.time_ns = time_ns
        self.observed_ns = observed_ns
        self.severity = severity
        self.severity_text = severity_text
        self.event_name = event_name
        self.body = body
        self.attributes = attributes
        self.shared = shared

    def all_attributes(self) -> list[Attribute]:
        return [*self.attributes, *(a for group in self.shared for a in group.attributes)]


class Severity:
    """Severity of an event from its categories: the highest among them; `untagged` when it has none.

    A category's severity is `categories[id]` if configured, else `groups[its group]`,
    else `default`.  Results are memoised per categories tuple (a handful exist).
    """

    def __init__(self, untagged: str = "INFO", default: str = "INFO", groups: dict[str, str] | None = None,
                 categories: dict[str, str] | None = None, group_of: dict[str, str] | None = None) -> None:
        for text in (untagged, default, *(groups or {}).values(), *(categories or {}).values()):
            if text.upper() not in SEVERITIES:
                raise ValueError(f"unknown severity {text!r} (one of {', '.join(SEVERITIES)})")
        self.untagged = (SEVERITIES[untagged.upper()], untagged.upper())
        self.default = default.upper()
        self.groups = {k: v.upper() for k, v in (DEFAULT_GROUP_SEVERITY if groups is None else groups).items()}
        self.categories = {k: v.upper() for k, v in (categories or {}).items()}
        self.group_of = group_of or {}
        self._memo: dict[tuple[str, ...], tuple[int, str]] = {}

    def of(self, categories: tuple[str, ...], groups: tuple[str, ...]) -> tuple[int, str]:
        hit = self._memo.get(categories)
        if hit is not None:
            return hit
        if not categories:
            return self.untagged
        texts = [self.categories.get(c) or self._by_group(c, groups) for c in categories]
        text = max(texts, key=SEVERITIES.__getitem__)
        result = (SEVERITIES[text], text)
        if len(self._memo) < _MEMO_LIMIT:
            self._memo[categories] = result
        return result

    def _by_group(self, category: str, groups: tuple[str, ...]) -> str:
        group = self.group_of.get(category)
        if group is not None:
            return self.groups.get(group, self.default)
        # Without the library's category → group table, use the event's groups (an upper bound).
        found = [self.groups[g] for g in groups if g in self.groups]
        return max(found, key=SEVERITIES.__getitem__) if found else self.default


def parse_time(text: Any, _cache: dict[str, int] = {}) -> int:  # noqa: B006 (a deliberate bounded memo)
    """RFC 3339 UTC time as Tetragon writes it (`2024-05-14T09:00:00.123456789Z`) → unix nanoseconds.

    Returns 0 (OTLP: "unknown") for a missing or unparsable time rather than failing the event.
    The seconds part is memoised: consecutive events share it.
    """
    if type(text) is not str or len(text) < 20:
        return 0
    head = text[:19]
    secs = _cache.get(head)
    if secs is None:
        try:
            secs = calendar.timegm((int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]),
                                    int(text[14:16]), int(text[17:19]), 0, 0, 0))
        except ValueError:
            return 0
        if len(_cache) >= _MEMO_LIMIT:
            _cache.clear()
        _cache[head] = secs
    rest = text[19:]
    if rest == "Z":
        return secs * 1_000_000_000
    if rest[:1] != "." or rest[-1:] != "Z":
        return _parse_time_slow(text)
    digits = rest[1:-1]
    if not digits.isdigit() or len(digits) > 9:
        return _parse_time_slow(text)
    return secs * 1_000_000_000 + int(digits.ljust(9, "0"))


def _parse_time_slow(text: str) -> int:
    """Offsets other than Z (never written by Tetragon, accepted anyway); microsecond precision."""
    from datetime import datetime

    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return 0
    if stamp.tzinfo is None:
        return 0
    return int(stamp.timestamp()) * 1_000_000_000 + stamp.microsecond * 1000


def _split_image(name: str, _cache: dict[str, tuple[str, str | None]] = {}) -> tuple[str, str | None]:  # noqa: B006
    """`registry:5000/repo/app:1.2` → (`registry:5000/repo/app`, `1.2`); digests stay in the name."""
    hit = _cache.get(name)
    if hit is not None:
        return hit
    result: tuple[str, str | None] = (name, None)
    if "@" not in name:
        colon = name.rfind(":")
        if colon > name.rfind("/"):
            result = (name[:colon], name[colon + 1:])
    if len(_cache) >= _MEMO_LIMIT:
        _cache.clear()
    _cache[name] = result
    return result


def _get(obj: Any, name: str) -> Any:
    """A field of a typed struct or a plain dict (events that did not fit the typed model)."""
    if obj is None:
        return None
    return obj.get(name) if type(obj) is dict else getattr(obj, name, None)


class _Fields:
    """Attribute-style access to a plain dict, so one code path reads typed structs and dicts alike.

    Typed structs (the common case) are read with plain attribute access, the fastest
    Python offers; only events that did not fit the typed model pay for this wrapper.
    """

    __slots__ = ("_d",)

    def __init__(self, d: dict[str, Any]) -> None:
        self._d = d

    def __getattr__(self, name: str) -> Any:
        value = self._d.get(name)
        return _Fields(value) if type(value) is dict else value


def _view(obj: Any) -> Any:
    return _Fields(obj) if type(obj) is dict else obj


_TRANSPORTS = {"IPPROTO_TCP": "tcp", "IPPROTO_UDP": "udp", "TCP": "tcp", "UDP": "udp", "IPPROTO_SCTP": "sctp"}


def _transport(body: Any) -> str | None:
    """`network.transport` from the first socket argument's protocol (kprobes) or `protocol` (older types)."""
    args = _get(body, "args")
    if args:
        for arg in args:
            if type(arg) is dict:
                sock = arg.get("sock_arg") or arg.get("skb_arg")
                if type(sock) is dict and sock.get("protocol"):
                    return _TRANSPORTS.get(sock["protocol"])
        return None
    if type(body) is dict and type(body.get("protocol")) is str:
        return _TRANSPORTS.get(body["protocol"])
    return None


def _process_attributes(out: list[Attribute], proc: Any) -> None:
    """Process and Kubernetes attributes of the event's `process` (typed struct or `_Fields`)."""
    v = proc.exec_id
    if v:
        out.append(("tetragon.exec_id", v))
    v = proc.pid
    if type(v) is int:
        out.append(("process.pid", v))
    binary = proc.binary
    if binary and type(binary) is str:
        out.append(("process.executable.path", binary))
        out.append(("process.executable.name", binary.rpartition("/")[2]))
        args = proc.arguments
        out.append(("process.command_line", f"{binary} {args}" if args and type(args) is str else binary))
    v = proc.cwd
    if v and type(v) is str:
        out.append(("process.working_directory", v))
    v = proc.uid
    if type(v) is int:
        out.append(("process.user.id", v))
    pod = proc.pod
    if pod is not None:
        _pod_attributes(out, pod)


def _pod_attributes(out: list[Attribute], pod: Any) -> None:
    v = pod.namespace
    if v and type(v) is str:
        out.append(("k8s.namespace.name", v))
    v = pod.name
    if v and type(v) is str:
        out.append(("k8s.pod.name", v))
    container = pod.container
    if container is None:
        return
    v = container.name
    if v and type(v) is str:
        out.append(("k8s.container.name", v))
    cid = container.id
    if cid and type(cid) is str:
        runtime, sep, bare = cid.partition("://")
        if sep:
            out.append(("container.id", bare))
            out.append(("container.runtime.name", runtime))
        else:
            out.append(("container.id", cid))
    image = container.image
    image = image.name if image is not None else None
    if image and type(image) is str:
        name, tag = _split_image(image)
        out.append(("container.image.name", name))
        if tag:
            out.append(("container.image.tags", (tag,)))


class LogMapper:
    """Builds `LogFields` from processed envelopes; one per sink (holds its severity table and body mode).

    `body_mode`: "string" — the output-contract JSON line (event + `tetrapipe` key, as stdout
    writes it); "map" — the same document as a structured map (kvlist; costs a full decode).
    `fmt`: another format's record as the string body instead (`format:` of the sink: ocsf, ecs, …).
    """

    def __init__(self, severity: Severity | None = None, body_mode: str = "string", fmt: Format | None = None) -> None:
        if body_mode not in ("string", "map"):
            raise ValueError(f"unknown body mode {body_mode!r} (string, map)")
        self.severity = severity or Severity()
        self.body_mode = body_mode
        self.format = fmt  # None: the output contract (what the processor rendered); else its record, as a string
        self._event_names: dict[str, str] = {}
        self._peer, self._source = PeerAttributes("destination"), PeerAttributes("source")

    def resource_key(self, env: Envelope) -> tuple[str | None, str | None]:
        """(node_name, cluster_name): records sharing it share one ResourceLogs."""
        decoded = env.decoded
        assert decoded is not None, "only decoded events reach sinks"
        root = decoded.root
        return _get(root, "node_name"), _get(root, "cluster_name")

    def record(self, env: Envelope) -> LogFields:
        decoded = env.decoded
        assert decoded is not None, "only decoded events reach sinks"
        root, body, etype = decoded.root, decoded.body, decoded.etype
        tags = env.tags
        attrs: list[Attribute] = [("tetragon.event_type", etype)]
        view = _view(body)
        proc = view.process if view is not None else None
        if proc is not None:
            _process_attributes(attrs, proc)
        if view is not None:
            self._body_attributes(attrs, view, proc)
        if tags.categories:
            attrs.append(("tetrapipe.categories", tags.categories))
            attrs.append(("tetrapipe.groups", tags.groups))
        self._network_attributes(attrs, decoded.egress, body)
        shared: tuple[AttributeGroup, ...] = ()
        if decoded.peer is not None:
            shared = (self._peer.of(decoded.peer),)
        if decoded.source_peer is not None:
            shared += (self._source.of(decoded.source_peer),)
        severity, severity_text = self.severity.of(tags.categories, tags.groups)
        name = self._event_names.get(etype)
        if name is None:
            name = self._event_names.setdefault(etype, "tetragon." + etype)
        out: bytes | dict[str, Any]
        if self.format is not None:
            out = self.format.record(env) or b""
        else:
            out = env.out if self.body_mode == "string" else _map_body(env)
        return LogFields(parse_time(_get(root, "time")), env.received_ns, severity, severity_text, name, out, attrs,
                         shared)

    @staticmethod
    def _body_attributes(out: list[Attribute], body: Any, proc: Any) -> None:
        """Parent, policy and hook attributes of the object under the event-type key."""
        parent = body.parent
        parent_exec = (parent.exec_id if parent is not None else None) or (
            proc.parent_exec_id if proc is not None else None)
        if parent_exec and type(parent_exec) is str:
            out.append(("tetragon.parent.exec_id", parent_exec))
        if parent is not None and type(parent.pid) is int:
            out.append(("process.parent_pid", parent.pid))
        v = body.policy_name
        if v and type(v) is str:
            out.append(("tetragon.policy_name", v))
        v = body.function_name
        if v and type(v) is str:
            out.append(("tetragon.function_name", v))

    @staticmethod
    def _network_attributes(out: list[Attribute], egress: Any, body: Any) -> None:
        if egress is not None:
            out.append(("network.peer.address", egress.daddr))
            if egress.dport is not None:
                out.append(("network.peer.port", egress.dport))
            address_attributes(out, egress, body)
            transport = _transport(body)
            if transport:
                out.append(("network.transport", transport))
            out.append(("tetrapipe.egress.zone", egress.zone))
            out.append(("tetrapipe.egress.external", egress.external))
        elif type(body) is dict and type(body.get("destination_ip")) is str:
            # Older Tetragon types (process_connect/close/listen) name the peer at the top of the body.
            out.append(("network.peer.address", body["destination_ip"]))
            if type(body.get("destination_port")) is int:
                out.append(("network.peer.port", body["destination_port"]))
            transport = _transport(body)
            if transport:
                out.append(("network.transport", transport))


def _map_body(env: Envelope) -> dict[str, Any]:
    """The output-contract document as a map (the event plus the `tetrapipe` object)."""
    import msgspec

    return msgspec.json.decode(env.out)
