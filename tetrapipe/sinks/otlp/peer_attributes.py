"""OpenTelemetry attributes of a connection's peers (tetrapipe.transforms.peers), for the OTLP LogRecord.

A connection whose destination the resolver named carries
`tetrapipe.peer.<key>` for each string of `tetrapipe.peer` in the output contract — `kind`,
`namespace`, `name`, `workload`, `workload_kind`, `node`, `ip`, `cidr`, `via` — plus
`tetrapipe.peer.services` (string array) and `tetrapipe.peer.labels.<label>`; a source that is
not the event's own pod likewise as `tetrapipe.source.*`.  Why not semantic-convention names:
`k8s.namespace.name`, `k8s.pod.name`, … already describe the event's own pod on this record (the
Kubernetes conventions are about the entity that emits, and the record has one of each), and
`destination.address` / `server.address` are, by the conventions, the address as observed —
not a name found by a reverse lookup — and `network.peer.address` already carries that address;
a name found in the Kubernetes API is such a lookup.  So the peer keeps the output contract's own names,
one prefix for both the JSON body and the attributes.  Built once per peer object (peers are
shared, read-only dicts) as an `AttributeGroup`, which the encoders encode once (they keep their
bytes on it): a peer costs a record one memo lookup and one append.
"""

from __future__ import annotations

from typing import Any

AttrValue = str | int | bool | float | tuple[str, ...]
Attribute = tuple[str, AttrValue]
_MEMO_LIMIT = 1 << 14  # peers; cleared when full (a memoised stale peer stays alive until then)


class AttributeGroup:
    """Attributes that many records share (`LogFields.shared`); each encoder keeps its encoding here, made
    once (the encoding depends only on the attributes)."""

    __slots__ = ("attributes", "protobuf", "json")

    def __init__(self, attributes: tuple[Attribute, ...]) -> None:
        self.attributes = attributes
        self.protobuf: bytes | None = None
        self.json: bytes | None = None


def peer_attributes(peer: dict[str, Any], prefix: str) -> tuple[Attribute, ...]:
    """`prefix + key` for each string of a peer, `services` as a string array, `labels` one per label
    (a peer holds only strings; anything else is left out rather than risk an unencodable record)."""
    out: list[Attribute] = []
    for key, value in peer.items():
        if type(value) is str:
            out.append((prefix + key, value))
        elif key == "services" and isinstance(value, list | tuple):
            out.append((prefix + key, tuple(str(v) for v in value)))
        elif key == "labels" and type(value) is dict:
            out.extend((f"{prefix}labels.{k}", str(v)) for k, v in value.items())
    return tuple(out)


class PeerAttributes:
    """`peer_attributes` memoised per peer object (id → (peer, attributes): holding it keeps its id unique)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._memo: dict[int, tuple[dict[str, Any], AttributeGroup]] = {}

    def of(self, peer: dict[str, Any]) -> AttributeGroup:
        hit = self._memo.get(id(peer))
        if hit is not None and hit[0] is peer:
            return hit[1]
        attrs = AttributeGroup(peer_attributes(peer, self.prefix))
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[id(peer)] = (peer, attrs)
        return attrs
