"""What the event stream itself teaches: a connection's source address belongs to the event's own pod.

Contract:
- :meth:`LearnedIndex.seen` is on the hot path. When the address is already known for the same pod
  it costs one dict read and two string compares, and stores the coarse current time (``now``, a
  float refreshed by :meth:`tick`, off the hot path): no clock read, no allocation. A new or
  changed owner takes the slow path: it builds one peer dict, from a per-pod base that is made
  once per pod (by ``pod_of(event)``, which may decode the event's pod; bases are forgotten every
  ``idle`` seconds, so a relabelled pod's learned peers catch up).
- Only addresses a pod can own are learned: loopback, unspecified and link-local sources are not.
- An entry expires ``idle`` seconds after its pod was last seen with it (:meth:`expire`, off the
  hot path; it also ticks). The resolution of ``last`` is the tick interval (the resolver's
  housekeeping: 1 s). At most ``max_entries`` addresses are kept; past that, new addresses are
  not learned (counted in ``dropped``), so memory stays bounded under an address scan.
- Two pods claiming one address within ``conflict`` seconds of each other (hostNetwork pods share
  their node's address; NAT) make it ambiguous: it resolves to None until one pod alone has held
  it for ``conflict`` seconds. A pod claiming an address whose owner has been silent longer than
  that is address reuse: the new pod takes it over.
- The resolver consults this index only for addresses the API index does not know: a learned
  entry never overrides the API's.
- :meth:`learn` (a pod mapping, Tetragon's protojson ``process.pod``) ticks and learns: for
  callers off the hot path and tests.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from tetrapipe.transforms.peer_model import LabelPicker, Peer, tetragon_pod_peer

PodOf = Callable[[Any], Mapping[str, Any] | None]
_NOT_OWNED = ("127.", "0.", "169.254.", "::ffff:127.", "fe80:", "FE80:")  # loopback, unspecified, link-local
_NOT_OWNED_EXACT = frozenset({"::1", "::"})
_UNSEEN: Peer = {}  # a pod whose base was not made yet (None: its pod has no name)


def pod_itself(pod: Any) -> Mapping[str, Any] | None:
    """The ``pod_of`` of a caller whose event is the pod mapping itself."""
    return pod if isinstance(pod, Mapping) else None


class _Learned(msgspec.Struct, gc=False):
    """One learned address. A msgspec Struct for its C constructor (the slow path makes one per new owner);
    ``gc=False``: nothing it holds refers back to it, so the cycle collector need not track it."""

    namespace: str
    name: str
    base: Peer
    last: float
    peer: Peer | None = None  # made on its first lookup: most learned addresses are never asked for
    rival: float | None = None  # when another pod last took the address over


class LearnedIndex:
    """Address -> pod, learned from events; see the module docstring."""

    def __init__(self, labels: LabelPicker, *, idle: float = 600.0, conflict: float = 30.0,
                 max_entries: int = 200_000, clock: Callable[[], float] = time.time) -> None:
        self.labels, self.idle, self.conflict, self.max_entries, self.clock = labels, idle, conflict, max_entries, clock
        self.by_ip: dict[str, _Learned] = {}  # read by the resolver (is an address here?); never rebound
        self._bases: dict[tuple[str, str], Peer | None] = {}  # (namespace, name) -> the pod's peer without ip
        self.now = self._bases_since = clock()
        self.learned = 0  # addresses learned or taken over
        self.conflicts = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self.by_ip)

    def tick(self) -> float:
        """Refresh the coarse time the hot path stores."""
        self.now = now = self.clock()
        return now

    def learn(self, ip: str, pod: Mapping[str, Any]) -> None:
        """The pod (Tetragon's ``process.pod``) used ``ip`` as its source address."""
        self.tick()
        self.seen(ip, pod.get("namespace"), pod.get("name"), pod, pod_itself)

    def seen(self, ip: str, namespace: Any, name: Any, event: Any, pod_of: PodOf) -> None:
        """The pod ``namespace``/``name`` used ``ip`` as its source address; ``pod_of(event)`` gives its
        whole Tetragon ``process.pod``, asked only when the pod's peer is not known yet."""
        e = self.by_ip.get(ip)
        if e is not None and e.name == name and e.namespace == namespace:
            e.last = self.now
            return
        if type(name) is str and type(namespace) is str and name and not ip.startswith(_NOT_OWNED) \
                and ip not in _NOT_OWNED_EXACT:
            self._learn_slow(ip, namespace, name, event, pod_of, e)

    def seen_looked_up(self, ip: str, namespace: Any, name: Any, event: Any, pod_of: PodOf,
                       e: _Learned | None = None) -> None:
        """:meth:`seen` for an address the resolver just looked up: ``e`` is its entry (None: not in the
        index), known not to be this pod's — the index is not read a second time."""
        if type(name) is str and type(namespace) is str and name and not ip.startswith(_NOT_OWNED) \
                and ip not in _NOT_OWNED_EXACT:
            self._learn_slow(ip, namespace, name, event, pod_of, e)

    def _learn_slow(self, ip: str, namespace: str, name: str, event: Any, pod_of: PodOf, e: _Learned | None) -> None:
        if e is None and len(self.by_ip) >= self.max_entries:
            self.dropped += 1
            return
        key = (namespace, name)
        base = self._bases.get(key, _UNSEEN)
        if base is _UNSEEN:
            pod = pod_of(event)
            base = tetragon_pod_peer(pod, self.labels) if pod is not None else None
            if len(self._bases) >= self.max_entries:
                self._bases.clear()
            self._bases[key] = base
        if base is None:
            return
        now = self.now
        # the base's strings, shared by the pod's entries: an entry keeps no string of the event alive but its key
        new = _Learned(base["namespace"], base["name"], base, now)
        if e is not None and now - e.last <= self.conflict:
            new.rival = now  # both pods are active on this address: do not pick one
            self.conflicts += 1
        self.by_ip[ip] = new
        self.learned += 1

    def lookup(self, ip: str) -> Peer | None:
        e = self.by_ip.get(ip)
        if e is None:
            return None
        if e.rival is not None:
            if self.clock() - e.rival <= self.conflict:  # rare: only while two pods claim the address
                return None
            e.rival = None
        peer = e.peer
        if peer is None:
            peer = e.peer = dict(e.base)
            peer["ip"], peer["via"] = ip, "learned"
        return peer

    def expire(self) -> int:
        """Forget addresses idle for longer than ``idle``; returns how many."""
        now = self.tick()
        if now - self._bases_since >= self.idle:
            self._bases.clear()
            self._bases_since = now
        limit = now - self.idle
        stale = [ip for ip, e in self.by_ip.items() if e.last < limit]
        for ip in stale:
            del self.by_ip[ip]
        return len(stale)
