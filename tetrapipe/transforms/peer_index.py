"""What the Kubernetes API says about addresses: IP -> pod, service, node or API server, over time.

Contract:
- Written only by the API watch (:mod:`tetrapipe.clients.kube_peers`) between two awaits, read by
  :meth:`ApiIndex.lookup` on the hot path: one event loop, so no locks; a lookup is a few dict reads
  and returns a prebuilt, shared peer dict (callers must not mutate it).
- Each address has a *slot*: its current holder and up to ``history`` previous ones that ended
  less than ``grace`` seconds ago. An entry holds the address over ``[start, until)``:
  ``start`` is the object's creationTimestamp, or the end of the previous holder when the address
  was reused; ``until`` is when the watch saw the object go (deleted, finished, or its address
  taken by a newer object). An event with a time resolves to the newest entry whose interval,
  widened by ``skew`` seconds each side (node clocks vs the API server's), contains it; without a
  time, to the newest entry still in the index. Nothing matches -> None: never a guess.
- Event times are RFC 3339 UTC strings as Tetragon writes them (``2023-11-01T05:25:14.837745007Z``).
  The common case (one holder, never ended) compares that string with the holder's start
  rendered the same way — string order is time order for this format — so the hot path parses
  no time; only addresses with history parse it (whole seconds).
- hostNetwork pods share their node's address: they are found by (address, declared port) only,
  as is the API server's own endpoint (the ``default/kubernetes`` EndpointSlice); any other port
  on a node's address is the node.
- EndpointSlices add ``services`` (sorted ``namespace/name``) to the pods they target, and name
  a pod by its slice's targetRef when the pod itself is not watched (a DaemonSet restricted to
  its node sees every node's service backends this way).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from tetrapipe.transforms.peer_backends import Backends
from tetrapipe.transforms.peer_model import NamedRecord, Peer, PodRecord, SliceRecord, epoch_seconds

Clock = Callable[[], float]
NOBODY: Peer = {}
"""What :meth:`ApiIndex.lookup` returns for an address the API knows but nobody held at the event's time
(falsy like None, but tells the resolver not to fall back to weaker sources)."""


def _stamp(sec: float) -> str:
    """Whole seconds as the first 19 characters of an RFC 3339 UTC time (string order = time order)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(max(sec, 0)))


_DERIVED = ("ip", "services", "via")  # what _peer adds to an object's own fields


class _Entry:
    # No copy of the object's fields besides the peer dict itself (memory: 100k pods); they are read
    # back from it when its services change.
    # The current holder of an address is its index value and carries the address's history (previous
    # holders, newest first): no separate slot object per address (memory: 100k pods).
    __slots__ = ("owner", "since", "start", "floor", "until", "peer", "node", "history")

    def __init__(self, owner: str, since: float, peer: Peer) -> None:
        self.owner, self.since, self.peer = owner, since, peer
        self.start, self.floor = since, ""
        self.until: float | None = None
        self.node = peer["kind"] == "node"
        self.history: list[_Entry] | None = None

    def base(self) -> Peer:
        return {k: v for k, v in self.peer.items() if k not in _DERIVED}


class ApiIndex:
    """The API's view of addresses; see the module docstring for the rules."""

    def __init__(self, *, grace: float = 60.0, skew: float = 2.0, history: int = 4, targets: bool = True,
                 clock: Clock = time.time) -> None:
        self.grace, self.skew, self.history_limit, self.clock = grace, skew, history, clock
        self.slots: dict[str, _Entry] = {}  # address -> current holder; never rebound (the resolver reads it)
        self._owners: dict[str, tuple[str, ...]] = {}  # uid -> addresses it holds in _slots
        self._ending: set[str] = set()  # addresses whose slot holds an ended entry (expiry scans only these)
        self._hostports: dict[str, dict[int, Peer]] = {}
        self.hostports = self._hostports  # read by the resolver's inlined lookup; never rebound
        self._hp_owners: dict[str, list[tuple[str, int]]] = {}
        # EndpointSlice targetRefs are only useful when not every pod is watched (KubePeerWatch decides)
        self.backends = Backends(targets=targets)
        self._floors: dict[float, str] = {}  # start second -> its stamp, shared (most pods share a few)
        self.kinds: dict[str, set[str]] = {"pod": set(), "service": set(), "node": set(), "slice": set()}

    # ------------------------------------------------------------------ hot path

    def lookup(self, ip: str, port: int | None, stamp: str | None) -> Peer | None:
        """The peer holding ``ip`` at event time ``stamp`` (None: now); None if unknown, NOBODY if not then."""
        cur = self.slots.get(ip)
        if cur is None:
            hp = self._hostports.get(ip)
            if hp is not None and port in hp:
                return hp[port]
            return self.backends.target_peer(ip)
        if cur.until is None and cur.history is None:
            if stamp is not None and stamp < cur.floor:
                return NOBODY
            if cur.node:
                hp = self._hostports.get(ip)
                if hp is not None and port in hp:
                    return hp[port]
            return cur.peer
        return self._lookup_slow(cur, ip, port, stamp)

    def _lookup_slow(self, cur: _Entry, ip: str, port: int | None, stamp: str | None) -> Peer | None:
        now, skew = self.clock(), self.skew
        sec = epoch_seconds(stamp)
        for e in [cur, *(cur.history or ())]:
            if e.until is not None and now >= e.until + self.grace:
                continue
            if sec is None or (e.start - skew <= sec and (e.until is None or sec < e.until + skew)):
                hp = self._hostports.get(ip) if e.node else None
                return hp[port] if hp is not None and port in hp else e.peer
        return NOBODY

    # ------------------------------------------------------------------ objects holding addresses

    def upsert_pod(self, rec: PodRecord, *, live: bool = True) -> None:
        self.kinds["pod"].add(rec.uid)
        if rec.host_network:  # its address is the node's: only (address, port) names it
            self._set_owner(rec.uid, rec.base, (), rec.since, live)
            self._set_hostports(rec.uid, [(ip, p) for ip in rec.ips for p in rec.ports], rec.base)
        else:
            self._set_hostports(rec.uid, [], rec.base)
            self._set_owner(rec.uid, rec.base, rec.ips, rec.since, live)

    def upsert_named(self, kind: str, rec: NamedRecord, *, live: bool = True) -> None:
        """A Service or a Node (``kind`` "service" / "node")."""
        self.kinds[kind].add(rec.uid)
        self._set_owner(rec.uid, rec.base, rec.ips, rec.since, live)

    def delete(self, kind: str, uid: str) -> None:
        """A Pod, Service or Node is gone: its addresses enter their grace period."""
        self.kinds[kind].discard(uid)
        self._set_owner(uid, {}, (), 0.0, True)
        self._set_hostports(uid, [], {})

    def replace(self, kind: str, uids: Iterable[str]) -> int:
        """After a (re)list: forget the objects of ``kind`` the list no longer has; returns how many."""
        gone = self.kinds[kind] - set(uids)
        for uid in gone:
            self.delete_slice(uid) if kind == "slice" else self.delete(kind, uid)
        return len(gone)

    def _set_owner(self, uid: str, base: Peer, ips: tuple[str, ...], since: float, live: bool) -> None:
        old = self._owners.get(uid, ())
        for ip in old:
            if ip not in ips:
                self._end(ip, uid)
        for ip in ips:
            self._claim(ip, uid, base, since, live)
        if ips:
            self._owners[uid] = ips
        else:
            self._owners.pop(uid, None)

    def _claim(self, ip: str, uid: str, base: Peer, since: float, live: bool) -> None:
        cur = self.slots.get(ip)
        if cur is not None and cur.owner == uid:
            cur.peer = self._peer(base, ip)  # relabelled, moved...: same holder, new peer
            cur.until = None  # e.g. a relist found it again
            return
        entry = _Entry(uid, since, self._peer(base, ip))
        if cur is None:
            self._set_start(entry, since)
            self.slots[ip] = entry
            return
        if cur.since > since:
            # An older object claims what a newer one holds (stale status, or list order): it lost the
            # address when the newer one got it.
            self._set_start(entry, since)
            entry.until = cur.start
            self._add_history(ip, cur, entry)
            return
        ended = cur.until is not None
        until = cur.until = cur.until if cur.until is not None else self.clock()
        # A live claim is seen within moments of the address being assigned, so the old holder had it
        # until then; a claim found by a (re)list could be older, so it only starts at creation.
        self._set_start(entry, max(since, until) if (ended or live) else since)
        entry.history, cur.history = cur.history, None
        self._add_history(ip, entry, cur)
        self.slots[ip] = entry

    def _set_start(self, entry: _Entry, start: float) -> None:
        floor = self._floors.get(start)
        if floor is None:
            if len(self._floors) > 100_000:  # bounded; only sharing is lost
                self._floors.clear()
            floor = self._floors[start] = _stamp(start - self.skew)
        entry.start, entry.floor = start, floor  # events before floor are not its

    def _add_history(self, ip: str, holder: _Entry, old: _Entry) -> None:
        hist = holder.history or []
        hist.append(old)
        hist.sort(key=lambda e: e.start, reverse=True)
        holder.history = hist[: self.history_limit]
        self._ending.add(ip)

    def _end(self, ip: str, uid: str) -> None:
        cur = self.slots.get(ip)
        if cur is not None and cur.owner == uid:
            if cur.until is None:
                cur.until = self.clock()
            self._ending.add(ip)

    def _peer(self, base: Peer, ip: str) -> Peer:
        peer = dict(base)
        peer["ip"] = ip
        names = self.backends.names(ip) if base.get("kind") == "pod" else ()
        if names:
            peer["services"] = names
        peer["via"] = "api"
        return peer

    # ------------------------------------------------------------------ (address, port) holders

    def _set_hostports(self, uid: str, pairs: list[tuple[str, int]], base: Peer) -> None:
        for ip, port in self._hp_owners.pop(uid, ()):
            ports = self._hostports.get(ip)
            if ports is not None and ports.pop(port, None) is not None and not ports:
                del self._hostports[ip]
        for ip, port in pairs:
            peer = dict(base)
            peer.update(ip=ip, port=port, via="api")
            self._hostports.setdefault(ip, {})[port] = peer
        if pairs:
            self._hp_owners[uid] = pairs

    # ------------------------------------------------------------------ EndpointSlices

    def upsert_slice(self, rec: SliceRecord) -> None:
        self.delete_slice(rec.uid)
        self.kinds["slice"].add(rec.uid)
        if rec.service == "default/kubernetes":  # the API server's own addresses: no targetRef
            apiserver: Peer = {"kind": "apiserver", "namespace": "default", "name": "kubernetes"}
            self._set_hostports(rec.uid, [(ip, p) for ip in rec.targets for p in rec.ports], apiserver)
            return
        self._refresh(self.backends.upsert(rec))

    def delete_slice(self, uid: str) -> None:
        self.kinds["slice"].discard(uid)
        self._set_hostports(uid, [], {})
        self._refresh(self.backends.delete(uid))

    def _refresh(self, ips: list[str]) -> None:
        """These addresses' services changed: rebuild the peers that show them."""
        for ip in ips:
            cur = self.slots.get(ip)
            if cur is not None:
                for e in [cur, *(cur.history or ())]:
                    e.peer = self._peer(e.base(), ip)

    # ------------------------------------------------------------------ housekeeping and stats

    def expire(self) -> int:
        """Drop entries whose grace is over (off the hot path, e.g. every second); returns how many."""
        now, dropped, grace = self.clock(), 0, self.grace
        for ip in list(self._ending):
            cur = self.slots.get(ip)
            if cur is not None and cur.until is not None and now >= cur.until + grace:
                # every earlier holder ended no later than the current one
                del self.slots[ip]
                dropped += 1 + len(cur.history or ())
                cur = None
            if cur is not None and cur.history:
                keep = [e for e in cur.history if now < (e.until or 0.0) + grace]
                dropped += len(cur.history) - len(keep)
                cur.history = keep or None
            if cur is None or (cur.history is None and cur.until is None):
                self._ending.discard(ip)
        return dropped

    def stats(self) -> dict[str, Any]:
        return {"addresses": len(self.slots), "in_grace": len(self._ending), "host_ports": len(self._hostports),
                "service_backends": len(self.backends), **{f"{k}s": len(v) for k, v in self.kinds.items()}}
