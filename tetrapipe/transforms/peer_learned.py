"""What the event stream itself teaches: a connection's source address belongs to the event's own pod.

Contract:
- :meth:`LearnedIndex.learn` is on the hot path: when the address is already known for the same
  pod it costs a dict read, two string compares and a clock read; a new or changed owner builds
  one peer dict.
- An entry expires ``idle`` seconds after its pod was last seen with it (:meth:`expire`, off the
  hot path). At most ``max_entries`` addresses are kept; past that, new addresses are not learned
  (counted in ``dropped``), so memory stays bounded under an address scan.
- Two pods claiming one address within ``conflict`` seconds of each other (hostNetwork pods share
  their node's address; NAT) make it ambiguous: it resolves to None until one pod alone has held
  it for ``conflict`` seconds. A pod claiming an address whose owner has been silent longer than
  that is address reuse: the new pod takes it over.
- The resolver consults this index only for addresses the API index does not know: a learned
  entry never overrides the API's.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from tetrapipe.transforms.peer_model import LabelPicker, Peer, tetragon_pod_peer


class _Learned:
    __slots__ = ("namespace", "name", "peer", "last", "rival")

    def __init__(self, namespace: str, name: str, peer: Peer, now: float) -> None:
        self.namespace, self.name, self.peer, self.last = namespace, name, peer, now
        self.rival: float | None = None  # when another pod last took the address over


class LearnedIndex:
    """Address -> pod, learned from events; see the module docstring."""

    def __init__(self, labels: LabelPicker, *, idle: float = 600.0, conflict: float = 30.0,
                 max_entries: int = 200_000, clock: Callable[[], float] = time.time) -> None:
        self.labels, self.idle, self.conflict, self.max_entries, self.clock = labels, idle, conflict, max_entries, clock
        self._by_ip: dict[str, _Learned] = {}
        self.learned = 0  # addresses learned or taken over
        self.conflicts = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._by_ip)

    def learn(self, ip: str, pod: Mapping[str, Any]) -> None:
        """The event's own pod used ``ip`` as its source address."""
        e = self._by_ip.get(ip)
        if e is not None and e.name == pod.get("name") and e.namespace == pod.get("namespace"):
            e.last = self.clock()
            return
        self._learn_slow(ip, pod, e)

    def _learn_slow(self, ip: str, pod: Mapping[str, Any], e: _Learned | None) -> None:
        base = tetragon_pod_peer(pod, self.labels)
        if base is None:
            return
        if e is None and len(self._by_ip) >= self.max_entries:
            self.dropped += 1
            return
        now = self.clock()
        base["ip"], base["via"] = ip, "learned"
        new = _Learned(base["namespace"], base["name"], base, now)
        if e is not None and now - e.last <= self.conflict:
            new.rival = now  # both pods are active on this address: do not pick one
            self.conflicts += 1
        self._by_ip[ip] = new
        self.learned += 1

    def lookup(self, ip: str) -> Peer | None:
        e = self._by_ip.get(ip)
        if e is None:
            return None
        if e.rival is not None:
            if self.clock() - e.rival <= self.conflict:
                return None
            e.rival = None
        return e.peer

    def expire(self) -> int:
        """Forget addresses idle for longer than ``idle``; returns how many."""
        limit = self.clock() - self.idle
        stale = [ip for ip, e in self._by_ip.items() if e.last < limit]
        for ip in stale:
            del self._by_ip[ip]
        return len(stale)
