"""EndpointSlices as the peer index sees them: per address, the services it backs and the pod it is.

Contract:
- :meth:`Backends.upsert` / :meth:`Backends.delete` take one EndpointSlice and return the addresses
  whose services changed, so the index rebuilds only those peers (off the hot path).
- Per address the services are a multiset (one item per slice listing it: dual-stack and sharded
  slices list an address more than once); ``names(ip)`` is the sorted set, shared between the
  addresses that back the same services (the pods of one workload), so 100k backends cost one
  tuple per distinct set, not per address.
- ``targets``: keep each address's targetRef pod, for :meth:`target_peer` — a peer named by the
  slice alone when the pod itself is not watched. Off, the index forgets them (memory) and
  ``target_peer`` is None. The target-only peer is built on its first lookup.
- The ``default/kubernetes`` slice (the API server's own addresses) is not kept here: the index
  names those addresses by (address, port).
"""
from __future__ import annotations

from tetrapipe.transforms.peer_model import Peer, SliceRecord


class _Backing:
    __slots__ = ("services", "names", "target", "peer")

    def __init__(self) -> None:
        self.services: tuple[str, ...] = ()
        self.names: tuple[str, ...] = ()
        self.target: tuple[str, str] | None = None
        self.peer: Peer | None = None


class Backends:
    """Address -> services (and target pod) from EndpointSlices; see the module docstring."""

    def __init__(self, *, targets: bool = True) -> None:
        self.targets = targets
        self.by_ip: dict[str, _Backing] = {}
        self.slices: dict[str, SliceRecord] = {}
        self._tuples: dict[tuple[str, ...], tuple[str, ...]] = {}

    def __len__(self) -> int:
        return len(self.by_ip)

    def names(self, ip: str) -> tuple[str, ...]:
        b = self.by_ip.get(ip)
        return b.names if b is not None else ()

    def target_peer(self, ip: str) -> Peer | None:
        b = self.by_ip.get(ip)
        if b is None or b.target is None:
            return None
        if b.peer is None:
            b.peer = {"kind": "pod", "namespace": b.target[0], "name": b.target[1], "ip": ip,
                      "services": b.names, "via": "endpointslice"}
        return b.peer

    def upsert(self, rec: SliceRecord) -> list[str]:
        changed = self.delete(rec.uid)
        if not self.targets:  # kept for delete(): only its addresses are needed then
            rec.targets = dict.fromkeys(rec.targets)
        self.slices[rec.uid] = rec
        for ip, target in rec.targets.items():
            b = self.by_ip.get(ip)
            if b is None:
                b = self.by_ip[ip] = _Backing()
            if rec.service:
                b.services = tuple(sorted((*b.services, rec.service)))
            if target is not None:
                b.target = target
            self._refresh(b)
            changed.append(ip)
        return changed

    def delete(self, uid: str) -> list[str]:
        rec = self.slices.pop(uid, None)
        if rec is None:
            return []
        for ip in rec.targets:
            b = self.by_ip.get(ip)
            if b is None:
                continue
            if rec.service in b.services:
                left = list(b.services)
                left.remove(rec.service)
                b.services = tuple(left)
            if b.services:
                self._refresh(b)
            else:
                del self.by_ip[ip]
        return list(rec.targets)

    def _refresh(self, b: _Backing) -> None:
        b.services = self._tuples.setdefault(b.services, b.services)
        names = tuple(dict.fromkeys(b.services))
        b.names = self._tuples.setdefault(names, names)
        b.peer = None
