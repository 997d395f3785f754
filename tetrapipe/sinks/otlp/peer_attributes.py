"""OpenTelemetry attributes of a connection's peers (tetrapipe.transforms.peers), for the OTLP LogRecord.

Naming (OpenTelemetry semantic conventions where they have a name, `tetrapipe.*` where they have none):
- The addresses are on every connection record (`LogMapper`): `destination.address`/`.port`,
  `source.address`/`.port`, and for a connect hook `server.*` (the destination) and `client.*`
  (the pod's own socket) — the addresses as observed, as the conventions ask.
- The peer the resolver named at the destination: its Kubernetes names under the side they describe,
  `destination.k8s.<semantic-convention k8s key>` — `destination.k8s.namespace.name`,
  `destination.k8s.pod.name`, `destination.k8s.node.name`, `destination.k8s.service.name`,
  `destination.k8s.<deployment|statefulset|daemonset|replicaset|job|cronjob>.name` for the workload,
  `destination.k8s.<pod|service|node>.label.<key>`; a source that is not the event's own pod
  likewise as `source.k8s.*`. Why a side prefix and not plain `k8s.*`: on a Tetragon record the
  plain `k8s.*` keys (`k8s.pod.name`, `k8s.namespace.name`, …) already name the event's own pod —
  the conventions' `k8s.*` describe the entity the telemetry is about — and a record has one value
  per key; the conventions' own `destination.*`/`source.*` namespaces say which end is meant, and
  the key after the side is the conventions' key unchanged, so a query for a pod name reads the
  same on both ends.
- What the conventions have no name for stays under the output contract's prefix
  (`tetrapipe.peer.*` for the destination, `tetrapipe.source.*` for the source): `kind`, `via`,
  `services` (string array: the services a pod backs), `workload`/`workload_kind` of a workload
  kind without a convention key, and a static entry's `name`, `namespace` (free text, not
  necessarily a Kubernetes namespace) and `cidr`. The peer's `ip` is the destination (source)
  address: not repeated.
Built once per peer object (peers are shared, read-only dicts) as an `AttributeGroup`, which the
encoders encode once (they keep their bytes on it): a peer costs a record one memo lookup and one append.
"""

from __future__ import annotations

from typing import Any

AttrValue = str | int | bool | float | tuple[str, ...]
Attribute = tuple[str, AttrValue]
_MEMO_LIMIT = 1 << 14  # peers; cleared when full (a memoised stale peer stays alive until then)
# workload kinds with a semantic-convention k8s.<kind>.name key
WORKLOAD_KEYS = {"Deployment": "deployment", "StatefulSet": "statefulset", "DaemonSet": "daemonset",
                 "ReplicaSet": "replicaset", "Job": "job", "CronJob": "cronjob"}
_K8S_KINDS = {"pod": "pod", "service": "service", "apiserver": "service", "node": "node"}  # kind -> label owner
SIDES = {"destination": "tetrapipe.peer.", "source": "tetrapipe.source."}


class AttributeGroup:
    """Attributes that many records share (`LogFields.shared`); each encoder keeps its encoding here, made
    once (the encoding depends only on the attributes)."""

    __slots__ = ("attributes", "protobuf", "json")

    def __init__(self, attributes: tuple[Attribute, ...]) -> None:
        self.attributes = attributes
        self.protobuf: bytes | None = None
        self.json: bytes | None = None


def peer_attributes(peer: dict[str, Any], side: str) -> tuple[Attribute, ...]:
    """The attributes of a peer at `side` ("destination" or "source"); see the module docstring.
    A peer holds only strings (and `services`, `labels`); anything else is left out rather than risk an
    unencodable record."""
    own, k8s = SIDES[side], side + ".k8s."
    kind = peer.get("kind")
    owner = _K8S_KINDS.get(kind) if type(kind) is str else None
    out: list[Attribute] = []
    if type(kind) is str:
        out.append((own + "kind", kind))
    for key, value in peer.items():
        if key == "services" and isinstance(value, list | tuple):
            out.append((own + "services", tuple(str(v) for v in value)))
        elif key == "labels" and type(value) is dict:
            prefix = f"{k8s}{owner}.label." if owner is not None else own + "labels."
            out.extend((prefix + str(k), str(v)) for k, v in value.items())
        elif type(value) is str and key not in ("kind", "ip", "workload_kind"):
            out.append(_named(key, value, peer, owner, own, k8s))
    workload_kind = peer.get("workload_kind")
    if type(workload_kind) is str and (owner is None or workload_kind not in WORKLOAD_KEYS):
        out.append((own + "workload_kind", workload_kind))  # else the k8s.<kind>.name key says it
    return tuple(out)


def _named(key: str, value: str, peer: dict[str, Any], owner: str | None, own: str, k8s: str) -> Attribute:
    """One string of a peer: its semantic-convention key when it is a Kubernetes object's, else `own + key`."""
    if owner is None:  # a static entry: names of the user's own
        return own + key, value
    if key == "name":
        return f"{k8s}{owner}.name", value
    if key == "namespace":
        return k8s + "namespace.name", value
    if key == "node":
        return k8s + "node.name", value
    if key == "workload":
        kind = peer.get("workload_kind")
        workload = WORKLOAD_KEYS.get(kind) if type(kind) is str else None
        return (f"{k8s}{workload}.name", value) if workload is not None else (own + key, value)
    return own + key, value  # via, cidr, and anything the conventions do not name


# hooks where the event's own socket initiates the connection: its destination is the server
_CONNECT_HOOKS = frozenset({"tcp_connect", "tcp_v4_connect", "tcp_v6_connect", "security_socket_connect",
                            "__sys_connect", "ip4_datagram_connect", "ip6_datagram_connect"})


def address_attributes(out: list[Attribute], egress: Any, body: Any) -> None:
    """Semantic-convention `destination.*`, `source.*` (the first socket argument's own end), and for a connect
    hook `server.*` / `client.*`: the addresses as observed (tetrapipe.sinks.otlp.peer_attributes names peers)."""
    out.append(("destination.address", egress.daddr))
    if egress.dport is not None:
        out.append(("destination.port", egress.dport))
    sock = _socket(body)
    saddr = sock.get("saddr") if sock is not None else None
    sport = sock.get("sport") if sock is not None else None
    if type(saddr) is str and saddr:
        out.append(("source.address", saddr))
        if type(sport) is int:
            out.append(("source.port", sport))
    if _field(body, "function_name") in _CONNECT_HOOKS:
        out.append(("server.address", egress.daddr))
        if egress.dport is not None:
            out.append(("server.port", egress.dport))
        if type(saddr) is str and saddr:
            out.append(("client.address", saddr))
            if type(sport) is int:
                out.append(("client.port", sport))


def _socket(body: Any) -> dict[str, Any] | None:
    """The first `sock_arg` / `skb_arg` with a destination among a kprobe's args."""
    for arg in _field(body, "args") or ():
        if type(arg) is dict:
            sock = arg.get("sock_arg") or arg.get("skb_arg")
            if type(sock) is dict and sock.get("daddr"):
                return sock
    return None


def _field(obj: Any, name: str) -> Any:
    """A field of a typed struct or a plain dict (events that did not fit the typed model)."""
    if obj is None:
        return None
    return obj.get(name) if type(obj) is dict else getattr(obj, name, None)


class PeerAttributes:
    """`peer_attributes` memoised per peer object (id → (peer, attributes): holding it keeps its id unique)."""

    def __init__(self, side: str) -> None:
        self.side = side
        self._memo: dict[int, tuple[dict[str, Any], AttributeGroup]] = {}

    def of(self, peer: dict[str, Any]) -> AttributeGroup:
        hit = self._memo.get(id(peer))
        if hit is not None and hit[0] is peer:
            return hit[1]
        attrs = AttributeGroup(peer_attributes(peer, self.side))
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[id(peer)] = (peer, attrs)
        return attrs
