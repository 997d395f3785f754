"""Who is on the other end of a connection: its destination (and source) address -> pod, service, node, API server.

Contract:
- :meth:`PeerResolver.resolve` takes the destination the caller already extracted (``daddr``,
  ``dport``), optionally the source address, the event's own pod (Tetragon's ``process.pod``,
  protojson) and the event's ``time``, and returns ``(peer, source)``:
  ``peer`` is ``{kind, namespace, name, workload, workload_kind, labels, node, ip, services, via}``
  (keys that do not apply are absent; ``kind`` is ``pod``, ``service``, ``node``, ``apiserver``,
  or a static file's kind; ``via`` says which source answered: ``api``, ``endpointslice``,
  ``learned``, ``static``) or None when unknown — never a guess, and counted in ``unknown``;
  ``source`` is the same for the source address, given only when it is known and is not the
  event's own pod. The caller adds them as ``tetrapipe.peer`` / ``tetrapipe.source``. The pod's own
  socket's address (``learn``: a ``sock_arg``'s) is never answered by another pod's learned claim:
  the event supersedes it (reused: the address moves to this pod; contested: nobody).
  Returned dicts are shared between events: read-only.
- Precedence, per address: the Kubernetes API (time-aware, see ``peer_index``), then addresses
  learned from the stream (only for addresses the API does not know), then the static file.
- Cost: O(1) — a handful of dict reads; nothing here does I/O or waits. The indexes are written
  by the API watch (``tetrapipe.clients.kube_peers``) and by :meth:`housekeeping`, off the hot path.
- Given the source address and the event's own pod, :meth:`resolve` also teaches the learned
  index (``learn: true``, the default) that the pod holds that address — unless the API already
  answers for it. :meth:`resolve_seen` is the same with the pod given by namespace and name
  (the pipeline's lean view; ``tetrapipe.transforms.peer_event``): a pod already learned at that
  address costs one dict read and two compares more. :meth:`resolve_event` is :meth:`resolve` for
  a whole event: time from ``event["time"]``, the source address from the first
  ``sock_arg``/``skb_arg`` (only a ``sock_arg``'s is learned: :func:`socket_source`).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from tetrapipe.transforms.peer_index import ApiIndex
from tetrapipe.transforms.peer_learned import LearnedIndex, PodOf, pod_itself
from tetrapipe.transforms.peer_model import DEFAULT_LABELS, LabelPicker, Peer, canonical_ip
from tetrapipe.transforms.peer_snapshot import Snapshot
from tetrapipe.transforms.peer_static import StaticPeers

Resolution = tuple[Peer | None, Peer | None]
_CANON_LIMIT = 65536
_WEAKER = frozenset({"learned", "static"})  # answers a learned entry may refresh or beat


class PeerConfigError(ValueError):
    """An invalid ``peers`` config section; the message names the key."""


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """The ``peers:`` config section (all optional)."""

    kubernetes: bool = True  # list+watch the API (in-cluster config, else ``kubeconfig`` / $KUBECONFIG)
    kubeconfig: str | None = None
    context: str | None = None
    node_name: str | None = None  # watch only this node's pods (DaemonSet: spec.nodeName)
    labels: tuple[str, ...] = DEFAULT_LABELS  # label keys copied into peers
    grace: float = 60.0  # seconds a deleted object's addresses stay resolvable (late events)
    skew: float = 2.0  # seconds of clock difference tolerated between nodes and the API server
    require_sync: bool = True  # not ready until the first list of every resource completed
    learn: bool = True
    learn_idle: float = 600.0
    learn_conflict: float = 30.0
    learn_max: int = 200_000
    static_file: str | None = None
    snapshot: str | None = None  # a Kubernetes List file (kubectl get ... -o json) loaded into the API index

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> PeerConfig:
        """Validate a parsed config section; unknown keys and wrong types are errors naming the key."""
        data = dict(data or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise PeerConfigError(f"peers.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
        values: dict[str, Any] = {}
        for name, value in data.items():
            values[name] = _check(name, value, cls.__dataclass_fields__[name].default)
        return cls(**values)


def _check(name: str, value: Any, default: Any) -> Any:
    if value is None and default is None:
        return None
    if isinstance(default, bool) or default is None:
        want: type = bool if isinstance(default, bool) else str
        if not isinstance(value, want):
            raise PeerConfigError(f"peers.{name}: expected {want.__name__}, got {type(value).__name__}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PeerConfigError(f"peers.{name}: expected a list of strings")
        return tuple(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PeerConfigError(f"peers.{name}: expected a non-negative number")
    return type(default)(value)


def source_address(body: Mapping[str, Any] | None) -> str | None:
    """The source address of the first ``sock_arg`` / ``skb_arg`` among a kprobe body's args."""
    args = body.get("args") if body is not None else None
    if not args:
        return None
    for arg in args:
        if type(arg) is dict:
            sock = arg.get("sock_arg") or arg.get("skb_arg")
            if type(sock) is dict and sock.get("daddr"):
                saddr = sock.get("saddr")
                return saddr if type(saddr) is str and saddr else None
    return None


def socket_source(args: Any) -> tuple[str | None, bool]:
    """``(saddr, owned)`` of the first ``sock_arg`` / ``skb_arg`` with a ``daddr`` among a kprobe's args.

    ``owned``: a ``sock_arg``'s ``saddr`` is the local end of the pod's own socket (a connect's or an
    accept's alike) and teaches the learned index; an ``skb_arg``'s is a packet's sender, which may be
    the remote end: it is only looked up."""
    for arg in args or ():
        if type(arg) is dict:
            sock = arg.get("sock_arg")
            owned = sock is not None
            if not owned:
                sock = arg.get("skb_arg")
            if type(sock) is dict and sock.get("daddr"):
                saddr = sock.get("saddr")
                return (saddr, owned) if type(saddr) is str and saddr else (None, False)
    return None, False


def _event_body(event: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for key, value in event.items():
        if key.startswith("process_") and type(value) is dict:
            return value
    return None


class PeerResolver:
    """Address -> peer from the API index, the learned index and the static file; see the module docstring."""

    def __init__(self, config: PeerConfig | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config = config or PeerConfig()
        self.labels = LabelPicker(config.labels)
        self.api = ApiIndex(grace=config.grace, skew=config.skew, clock=clock)
        self._slots = self.api.slots
        self._hostports, self._backing = self.api.hostports, self.api.backends.by_ip  # never rebound
        self.learned = LearnedIndex(self.labels, idle=config.learn_idle, conflict=config.learn_conflict,
                                    max_entries=config.learn_max, clock=clock) if config.learn else None
        self._learned_by_ip = self.learned.by_ip if self.learned is not None else None  # never rebound
        self.static = StaticPeers(config.static_file)
        self.snapshot = Snapshot(config.snapshot, self.api, self.labels)
        self.snapshot.load()  # raises SnapshotError naming the item
        self._canon: dict[str, str | None] = {}
        self.resolved = 0  # destinations looked up (per-source hit counts would cost the hot path a dict update)
        self.unknown = 0

    def lookup(self, ip: str, port: int | None = None, stamp: str | None = None) -> Peer | None:
        """One address at event time ``stamp`` (RFC 3339 UTC; None: now), without counting."""
        cur = self._slots.get(ip)
        if cur is not None and cur.until is None and cur.history is None and not cur.node:
            # ApiIndex.lookup's common case, inlined: one call less per address on the hot path
            return cur.peer if stamp is None or stamp >= cur.floor else None
        if ":" in ip:  # IPv6, IPv4-mapped or scoped: the index holds canonical text
            canon = self._canon.get(ip, "")
            if canon == "":
                canon = self._canonical(ip)
            if canon is None:
                return None
            ip = canon
        if ip in self._slots or ip in self._hostports or ip in self._backing:
            peer = self.api.lookup(ip, port, stamp)
            if peer is not None:
                return peer or None  # {} = the API knows the address, not at that time: no fallback
        # the learned index and the static file are called only when they may answer (calls cost on this path)
        learned = self._learned_by_ip
        if learned is not None and ip in learned:
            peer = self.learned.lookup(ip)  # type: ignore[union-attr]
            if peer is not None:
                return peer
        static = self.static
        return static.lookup(ip) if static.size else None

    def _canonical(self, ip: str) -> str | None:
        if len(self._canon) >= _CANON_LIMIT:
            self._canon.clear()
        canon = self._canon[ip] = canonical_ip(ip)
        return canon

    def resolve(self, daddr: str, dport: int | None = None, saddr: str | None = None,
                pod: Mapping[str, Any] | None = None, time: str | None = None) -> Resolution:
        """``(peer, source)`` of one connection, and learn that ``pod`` holds ``saddr``; see the module docstring."""
        if pod is None:
            return self.resolve_seen(daddr, dport, saddr, None, None, time)
        return self.resolve_seen(daddr, dport, saddr, pod.get("namespace"), pod.get("name"), time, pod, pod_itself)

    def resolve_seen(self, daddr: str, dport: int | None, saddr: str | None, namespace: Any, name: Any,
                     time: str | None, event: Any = None, pod_of: PodOf = pod_itself,
                     learn: bool = True) -> Resolution:
        """:meth:`resolve` for the event's own pod given by ``namespace``/``name`` (None: no pod); the
        learned index asks ``pod_of(event)`` for the whole ``process.pod`` only for a pod it has not
        seen yet. ``learn=False``: ``saddr`` is not the pod's own (e.g. an ``skb_arg``'s)."""
        # Inlined, for both addresses: the API index's common case (one holder, never ended, not a node), an
        # address nobody knows, and the source address a pod already learned at — a method call is a
        # noticeable part of the budget (issue 14: the resolver may cost 10 % of an event's time). An IPv6
        # (or scoped, or IPv4-mapped) address is made canonical first, from a memo, and then takes the same paths.
        slots, static = self._slots, self.static
        learned_ips = self._learned_by_ip
        if ":" in daddr:
            canon = self._canon.get(daddr, "")
            daddr = (self._canonical(daddr) if canon == "" else canon) or ""  # None (not an address): ""
        cur = slots.get(daddr)
        if cur is not None:
            if cur.until is None and cur.history is None and not cur.node:
                peer = cur.peer if time is None or time >= cur.floor else None
            else:
                peer = self.lookup(daddr, dport, time)
        elif daddr and (daddr in self._hostports or daddr in self._backing or static.size
                        or (learned_ips is not None and daddr in learned_ips)):
            peer = self.lookup(daddr, dport, time)
        else:
            peer = None  # nobody knows it (or not an address)
        self.resolved += 1
        if peer is None:
            self.unknown += 1
        if not saddr:
            return peer, None
        if ":" in saddr:
            canon = self._canon.get(saddr, "")
            saddr = self._canonical(saddr) if canon == "" else canon
            if saddr is None:  # not an address
                return peer, None
        cur = slots.get(saddr)
        if cur is not None and cur.until is None and cur.history is None and not cur.node:
            source = cur.peer if time is None or time >= cur.floor else None  # the API's: nothing to learn
        elif cur is None and saddr not in self._hostports and saddr not in self._backing:
            # The API does not know it (the common case): the learned index, then the static file.
            e = learned_ips.get(saddr) if learned_ips is not None else None
            if e is None:
                source = static.lookup(saddr) if static.size else None
                if learn and learned_ips is not None and name is not None \
                        and (source is None or source["via"] in _WEAKER):
                    self.learned.seen_looked_up(saddr, namespace, name, event, pod_of)  # type: ignore[union-attr]
            elif learn and e.name == name and e.namespace == namespace and (e.rival is None or not static.size):
                # The event's own pod, seen again: the answer is its own pod or, while a rival claim is recent,
                # nobody (the static file, which would answer then, is empty) — no source either way.
                e.last = self.learned.now  # type: ignore[union-attr]
                return peer, None
            elif learn and name is not None:
                # The pod's own socket, at an address learned for another pod: that claim is stale (the address
                # was reused: this pod takes it over) or contested (both active: nobody). Either way the learned
                # index does not name the other pod as this event's source — that would be a guess.
                self.learned.seen_looked_up(saddr, namespace, name, event, pod_of, e)  # type: ignore[union-attr]
                if not static.size:
                    return peer, None
                source = self.lookup(saddr, None, time)  # this pod (dropped below), or the static file's
            else:
                source = self._source_slow(saddr, time, learn, namespace, name, event, pod_of)
        else:
            source = self._source_slow(saddr, time, learn, namespace, name, event, pod_of)
        if source is not None and name is not None and source["name"] == name \
                and source.get("namespace") == namespace and source["kind"] == "pod":
            source = None  # the event's own pod: nothing to add
        return peer, source

    def _source_slow(self, saddr: str, time: str | None, learn: bool, namespace: Any, name: Any, event: Any,
                     pod_of: PodOf) -> Peer | None:
        """The source address's peer in general (the API knows it, a learned rival…), learning it."""
        source = self.lookup(saddr, None, time)
        # Learn only what the API does not answer for (it would win anyway): with the API watched,
        # learning costs something only for addresses outside it (hostNetwork pods, unwatched pods).
        learned = self.learned
        if learned is not None and learn and name is not None and (source is None or source["via"] in _WEAKER):
            learned.seen(saddr, namespace, name, event, pod_of)  # saddr is canonical (resolve_seen)
        return source

    def resolve_event(self, event: Mapping[str, Any], daddr: str, dport: int | None = None,
                      pod: Mapping[str, Any] | None = None, body: Mapping[str, Any] | None = None) -> Resolution:
        """:meth:`resolve` for a whole Tetragon event (``body``: its ``process_kprobe`` object, found if omitted);
        only a ``sock_arg``'s source address is learned (see ``peer_event.socket_source``)."""
        body = body if body is not None else _event_body(event)
        saddr, owned = socket_source(body.get("args") if body is not None else None)
        stamp = event.get("time")
        if pod is None:
            return self.resolve_seen(daddr, dport, saddr, None, None, stamp)
        return self.resolve_seen(daddr, dport, saddr or None, pod.get("namespace"), pod.get("name"), stamp, pod,
                                 pod_itself, owned)

    # ------------------------------------------------------------------ off the hot path

    def expire(self) -> int:
        """Drop API entries past their grace and idle learned addresses; returns how many."""
        dropped = self.api.expire()
        if self.learned is not None:
            dropped += self.learned.expire()
        return dropped

    async def housekeeping(self, interval: float = 1.0) -> None:
        """Run :meth:`expire` every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.expire()

    def reload(self) -> int:
        """Re-read the static file (raises StaticPeersError and keeps the old table when it is invalid)."""
        return self.static.reload()

    def reload_snapshot(self) -> int:
        """Re-read the snapshot file (raises SnapshotError and keeps the index as it was when it is invalid)."""
        return self.snapshot.load()

    def stats(self) -> dict[str, Any]:
        """Index sizes and counters (the lead maps them to Prometheus gauges/counters)."""
        learned = self.learned
        return {"api": self.api.stats(), "learned": len(learned) if learned is not None else 0,
                "learned_conflicts": learned.conflicts if learned is not None else 0,
                "learned_dropped": learned.dropped if learned is not None else 0,
                "static": len(self.static), "static_reloads": self.static.reloads,
                "snapshot": self.snapshot.objects, "snapshot_loads": self.snapshot.loads,
                "resolved": self.resolved, "unknown": self.unknown}
