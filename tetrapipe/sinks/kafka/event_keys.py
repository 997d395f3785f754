"""Per-event topic-template fields and the peer headers of the Kafka sink — pure, no I/O.

Fields (used by tetrapipe.sinks.kafka.routing when a template names them):

- `{peer_namespace}`, `{peer_kind}`: of the connection's destination (`tetrapipe.peer`, see
  tetrapipe.transforms.peers).  Every topic is known at startup, so the namespaces that get a
  topic are listed (`kafka.sink.peer_namespaces`); kinds are `pod`, `service`, `node`,
  `apiserver` and `static` (a static file's default kind).
- `{ocsf_class}`, `{ocsf_class_uid}`, `{ocsf_category}` (sink `format: ocsf`) and
  `{ecs_category}`, `{ecs_dataset}` (`format: ecs`): the format's own `topic_keys`, read back
  from the record the sink sends (its first line: the event, not a finding) — so the route is
  what the record says, with no second mapping.  Their values are enumerated from the formats'
  class tables.  (OCSF records start with `class_uid`: that prefix is read without decoding the rest.)

`values(env, record)` returns the fields' values as a tuple in `names` order, or None when the
event has no value, or a value outside the known set, for one of them (no peer, a node peer
without namespace, a namespace not listed, a custom static kind): the router then treats it
like an event type Tetragon does not define — the default topic, or dropped and counted.

Headers: `tetrapipe-peer: <kind>/<namespace>/<name>` (namespace empty for cluster-scoped
peers: `node//worker-1`) and, when known, `tetrapipe-peer-workload: <workload_kind>/<workload>`;
built once per peer object (peers are shared, read-only dicts).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from tetrapipe.event.envelope import Envelope

# The OCSF and ECS format modules (their class tables) are imported only by a sink whose templates name
# their fields: a run without them does not pay for loading both formats at start-up.

PEER_FIELDS = ("peer_namespace", "peer_kind")
OCSF_FIELDS = ("ocsf_class", "ocsf_class_uid", "ocsf_category")
ECS_FIELDS = ("ecs_category", "ecs_dataset")
EVENT_FIELDS = frozenset((*PEER_FIELDS, *OCSF_FIELDS, *ECS_FIELDS))
PEER_KINDS = ("pod", "service", "node", "apiserver", "static")
HEADER_PEER = "tetrapipe-peer"
HEADER_PEER_WORKLOAD = "tetrapipe-peer-workload"
_MEMO_LIMIT = 1 << 14  # peers; cleared when full (a memoised stale peer stays alive until then)

Headers = list[tuple[str, bytes]]


class EventKeyError(ValueError):
    """A template field that cannot work with this sink's settings; the message says what to set."""


class _OcsfHead(msgspec.Struct):
    class_uid: int = 0
    category_uid: int = 0


class _EcsEvent(msgspec.Struct):
    category: list[str] | None = None
    dataset: str | None = None


class _EcsHead(msgspec.Struct):
    event: _EcsEvent | None = None


_ocsf_head = msgspec.json.Decoder(_OcsfHead).decode
_ecs_head = msgspec.json.Decoder(_EcsHead).decode


_OCSF_START = b'{"class_uid":'


def _ocsf_reader() -> Callable[[bytes], dict[str, str]]:
    """The OCSF fields of a record (a sink with `{ocsf_*}` templates builds it once)."""
    from tetrapipe.formats import ocsf
    # class_uid -> its fields; OCSF fixes each class's category, so the class alone decides them
    by_class = {uid: ocsf.topic_keys({"class_uid": uid, "category_uid": category})
                for uid, _, category, _ in ocsf.CLASSES.values()}

    def ocsf_keys(record: bytes) -> dict[str, str]:
        # Fast path: tetrapipe's OCSF records start with the class; reading its digits there spares a decode
        # of the whole record (~2 KB).  Anything else is decoded in full.
        if record.startswith(_OCSF_START):
            end = record.find(b",", 13, 24)
            digits = record[13:end] if end > 0 else b""
            if digits.isdigit():
                keys = by_class.get(int(digits))
                if keys is not None:
                    return keys
        head = _ocsf_head(_first_line(record))
        return ocsf.topic_keys({"class_uid": head.class_uid, "category_uid": head.category_uid})
    return ocsf_keys


def _ecs_reader() -> Callable[[bytes], dict[str, str]]:
    """The ECS fields of a record (a sink with `{ecs_*}` templates builds it once)."""
    from tetrapipe.formats import ecs

    def ecs_keys(record: bytes) -> dict[str, str]:
        event = _ecs_head(record).event
        doc: dict[str, Any] = {}
        if event is not None:
            doc["event"] = {k: v for k, v in (("category", event.category), ("dataset", event.dataset)) if v}
        return ecs.topic_keys(doc)
    return ecs_keys


def _first_line(record: bytes) -> bytes:
    end = record.find(b"\n")  # OCSF with findings: the event, then its finding
    return record if end < 0 else record[:end]


def _possible_ocsf() -> list[dict[str, str]]:
    # a Detection Finding is never a record's first line: it follows its event, in the same record
    from tetrapipe.formats import ocsf
    return [ocsf.topic_keys({"class_uid": uid, "category_uid": category})
            for name, (uid, _, category, _) in ocsf.CLASSES.items() if name != "detection_finding"]


def _possible_ecs() -> list[dict[str, str]]:
    from tetrapipe.formats import ecs
    heads = [*ecs.ETYPE_CLASSES.values(), *ecs.HOOK_CLASSES.values(), ecs.UNKNOWN_CLASS]
    return [ecs.topic_keys({"event": {"category": head[0], "dataset": "tetragon.log"}}) for head in heads]


class EventKeys:
    """The per-event fields a template uses (`names`), their possible values, and each event's values."""

    def __init__(self, used: Iterable[str], *, peer_namespaces: Iterable[str] = (), fmt: str = "tetrapipe") -> None:
        used = set(used)
        self.names = tuple(n for n in (*PEER_FIELDS, *OCSF_FIELDS, *ECS_FIELDS) if n in used)
        self._peer = tuple(n for n in PEER_FIELDS if n in used)
        self._peer_memo: dict[int, tuple[dict[str, Any], tuple[str, ...] | None]] = {}  # id(peer) -> (peer, values)
        self._format = tuple(n for n in (*OCSF_FIELDS, *ECS_FIELDS) if n in used)
        self._allowed: dict[str, frozenset[str]] = {"peer_kind": frozenset(PEER_KINDS),
                                                    "peer_namespace": frozenset(peer_namespaces)}
        if "peer_namespace" in used and not self._allowed["peer_namespace"]:
            raise EventKeyError("{peer_namespace} needs kafka.sink.peer_namespaces: the namespaces that get a "
                                "topic (every topic is created at startup; other peers go to default_topic)")
        self._decode: Any = None
        combos: list[dict[str, str]] = [{}]
        wanted = {n.split("_", 1)[0] for n in self._format}
        if len(wanted) > 1:
            raise EventKeyError("a topic template can use the fields of one format: ocsf_* or ecs_*, not both")
        if wanted:
            family = wanted.pop()
            if fmt != family:
                raise EventKeyError(f"{{{self._format[0]}}} needs kafka.sink.format: {family} (it is {fmt})")
            self._decode = _ocsf_reader() if family == "ocsf" else _ecs_reader()
            combos = _possible_ocsf() if family == "ocsf" else _possible_ecs()
        self._format_values = frozenset(tuple(c[n] for n in self._format) for c in combos)
        self.needs_record = self._decode is not None

    def _remember(self, peer: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...] | None]:
        """A peer's values (None: one is missing or not allowed), memoised per peer object (peers are shared)."""
        found = [peer.get(name[5:]) for name in self._peer]  # peer_namespace -> namespace
        ok = all(v in self._allowed[n] for n, v in zip(self._peer, found, strict=True))
        values = tuple(str(v) for v in found) if ok else None  # allowed values are strings
        if len(self._peer_memo) >= _MEMO_LIMIT:
            self._peer_memo.clear()
        hit = self._peer_memo[id(peer)] = (peer, values)
        return hit

    def possible(self) -> list[dict[str, str]]:
        """Every combination of values (for the topics created at startup)."""
        peer = itertools.product(*(sorted(self._allowed[n]) for n in self._peer))
        out = []
        for peer_values, format_values in itertools.product(list(peer), sorted(self._format_values)):
            out.append(dict(zip(self._peer + self._format, peer_values + format_values, strict=True)))
        return out

    def values(self, env: Envelope, record: bytes | None) -> tuple[str, ...] | None:
        """This event's values in `names` order, or None when one is missing or not a known one."""
        out: tuple[str, ...] = ()
        if self._peer:
            peer = env.decoded.peer if env.decoded is not None else None
            if peer is None:
                return None
            hit = self._peer_memo.get(id(peer))
            if hit is None or hit[0] is not peer:
                hit = self._remember(peer)
            if hit[1] is None:
                return None
            out = hit[1]
        if self._decode is not None:
            if record is None:
                return None
            try:
                keys = self._decode(record)
            except msgspec.DecodeError:
                return None
            picked = tuple(keys[n] for n in self._format)
            if picked not in self._format_values:
                return None
            out += picked
        return out


class PeerHeaders:
    """`tetrapipe-peer` (and `tetrapipe-peer-workload`) of an event's destination; memoised per peer object."""

    def __init__(self) -> None:
        # id(peer) -> (peer, headers): holding the peer keeps its id from being reused while memoised
        self._memo: dict[int, tuple[dict[str, Any], Headers]] = {}

    def of(self, peer: dict[str, Any]) -> Headers:
        hit = self._memo.get(id(peer))
        if hit is not None and hit[0] is peer:
            return hit[1]
        headers = peer_headers(peer)
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[id(peer)] = (peer, headers)
        return headers


def peer_headers(peer: dict[str, Any]) -> Headers:
    """The peer headers of one peer (see the module docstring)."""
    text = f"{peer.get('kind', '')}/{peer.get('namespace', '')}/{peer.get('name', '')}"
    headers = [(HEADER_PEER, text.encode())]
    workload = peer.get("workload")
    if workload:
        headers.append((HEADER_PEER_WORKLOAD, f"{peer.get('workload_kind', '')}/{workload}".encode()))
    return headers
