"""`classify`: the network zone of an event's destination address, by longest-prefix match.

Built once from the zone table (built-in zones + configured pod/service/user
CIDRs) into one prefix trie per address family (pytricia).  Per event it reads
the first destination among the kprobe args (`sock_arg` daddr/dport,
`sockaddr_arg` addr/port, `skb_arg` daddr/dport), normalises IPv4-mapped IPv6
and scoped link-local addresses, and returns an `Egress` or None.

Guarantees: a more specific prefix wins; a configured zone beats a built-in
zone with the very same prefix; results are memoised per address in a bounded
table, so lookups stay O(1) on repeated destinations and memory stays flat.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import pytricia

# (zone, external, prefixes); order matters only for identical prefixes:
# later rows win, so the more specific meaning is listed last.
BUILTIN_ZONES: tuple[tuple[str, bool, tuple[str, ...]], ...] = (
    ("public", True, ("0.0.0.0/0", "::/0")),
    ("private", True, ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")),
    ("link-local", True, ("169.254.0.0/16", "fe80::/10")),
    ("multicast", True, ("224.0.0.0/4", "ff00::/8")),
    ("unspecified", False, ("0.0.0.0/8", "::/128")),
    ("loopback", False, ("127.0.0.0/8", "::1/128")),
    ("metadata", True, ("169.254.169.254/32", "fd00:ec2::254/128")),
)
_MEMO_LIMIT = 65536


class Egress(msgspec.Struct, gc=False, omit_defaults=False):
    """The `tetrapipe.egress` object of the output contract."""

    zone: str
    external: bool
    daddr: str
    dport: int | None
    cidr: str


class ZoneSpec(msgspec.Struct, frozen=True):
    """One configured zone: its name, CIDRs and whether it is inside the cluster/network."""

    name: str
    cidrs: tuple[str, ...]
    internal: bool


_WHERE = {"pod": "--pod-cidr / POD_CIDR / egress.pod_cidrs",
          "service": "--service-cidr / SERVICE_CIDR / egress.service_cidrs"}


class ConfigError(ValueError):
    """A zone table that cannot be built; the message names the offending entry."""


def _normalise(addr: str) -> str:
    if "%" in addr:
        addr = addr.split("%", 1)[0]
    low = addr.lower()
    if low.startswith("::ffff:") and "." in low:
        return low[7:]
    return addr


def destination(body: Any) -> tuple[str, int | None] | None:
    """The first destination (address, port) among a kprobe body's args, else None."""
    args = body.args if type(body) is not dict else body.get("args")
    if not args:
        return None
    for arg in args:
        if type(arg) is not dict:
            continue
        sock = arg.get("sock_arg") or arg.get("skb_arg")
        if sock is not None and type(sock) is dict and sock.get("daddr"):
            return sock["daddr"], sock.get("dport")
        sa = arg.get("sockaddr_arg")
        if sa is not None and type(sa) is dict and sa.get("addr"):
            return sa["addr"], sa.get("port")
    return None


def connection(body: Any) -> tuple[Any, Any, str | None, bool] | None:
    """`destination(body)` and the socket's own source address in one pass over the args.

    ``(daddr, dport, saddr, owned)``, None when there is no destination; ``saddr``/``owned`` are
    `tetrapipe.transforms.peers.socket_source` of the same args (the first ``sock_arg``/``skb_arg``
    with a ``daddr``: its ``saddr``, and whether it is a ``sock_arg``'s). Why one pass: with the
    peer resolver on, a second scan of a connection's args dicts (no longer in the CPU's caches)
    was a measurable part of its per-event cost."""
    args = body.args if type(body) is not dict else body.get("args")
    if not args:
        return None
    dest: tuple[Any, Any] | None = None
    source: tuple[str | None, bool] | None = None
    for arg in args:
        if type(arg) is not dict:
            continue
        sock_arg = arg.get("sock_arg")
        if dest is None:  # destination()'s rule
            sock = sock_arg or arg.get("skb_arg")
            if sock is not None and type(sock) is dict and sock.get("daddr"):
                dest = (sock["daddr"], sock.get("dport"))
            else:
                sa = arg.get("sockaddr_arg")
                if sa is not None and type(sa) is dict and sa.get("addr"):
                    dest = (sa["addr"], sa.get("port"))
        if source is None:  # socket_source()'s rule
            owned = sock_arg is not None
            sock = sock_arg if owned else arg.get("skb_arg")
            if type(sock) is dict and sock.get("daddr"):
                saddr = sock.get("saddr")
                source = (saddr, owned) if type(saddr) is str and saddr else (None, False)
        if dest is not None and source is not None:
            break
    if dest is None:
        return None
    saddr, owned = source if source is not None else (None, False)
    return dest[0], dest[1], saddr, owned


class Classifier:
    """Compiled zone table; `classify(body)` is pure and allocation-light."""

    def __init__(self, pod_cidrs: Sequence[str] = (), service_cidrs: Sequence[str] = (),
                 zones: Iterable[ZoneSpec] = ()) -> None:
        self._v4 = pytricia.PyTricia(32)
        self._v6 = pytricia.PyTricia(128)
        self._memo: dict[str, tuple[str, bool, str] | None] = {}
        for name, external, prefixes in BUILTIN_ZONES:
            for cidr in prefixes:
                self._insert(cidr, (name, external), source=f"built-in zone {name}")
        configured: dict[str, str] = {}
        specs = [ZoneSpec("pod", tuple(pod_cidrs), True), ZoneSpec("service", tuple(service_cidrs), True), *zones]
        for spec in specs:
            for cidr in spec.cidrs:
                key = self._canonical(cidr, spec.name)
                if key in configured and configured[key] != spec.name:
                    raise ConfigError(f"CIDR {cidr} is in both zone {configured[key]!r} and zone {spec.name!r}")
                configured[key] = spec.name
                self._insert(key, (spec.name, not spec.internal), source=f"zone {spec.name}")

    @staticmethod
    def _canonical(cidr: str, zone: str) -> str:
        """The network of `cidr`; host bits set (10.244.1.0/16) is an error, not a silent widening."""
        try:
            net = ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError as exc:
            raise ConfigError(f"zone {zone!r}: {exc}") from None
        if str(net) != cidr.strip() and net.network_address != ipaddress.ip_interface(cidr.strip()).ip:
            where = _WHERE.get(zone, f"egress.zones[{zone}].cidrs")
            raise ConfigError(f"{where}: {cidr.strip()} has host bits set; the network is {net} "
                              f"(write that, or the prefix length you meant)")
        return str(net)

    def _insert(self, cidr: str, value: tuple[str, bool], source: str) -> None:
        net = ipaddress.ip_network(cidr, strict=False)
        tree = self._v4 if net.version == 4 else self._v6
        tree[str(net)] = (value[0], value[1], str(net))

    def lookup(self, addr: str) -> tuple[str, bool, str] | None:
        """(zone, external, matched cidr) for an address string, or None if not an IP."""
        hit = self._memo.get(addr, False)
        if hit is not False:
            return hit  # type: ignore[return-value]
        norm = _normalise(addr)
        tree = self._v6 if ":" in norm else self._v4
        try:
            result: tuple[str, bool, str] | None = tree.get(norm)
        except (ValueError, KeyError, SystemError):
            result = None
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()  # bounded: a scan over many addresses must not grow memory
        self._memo[addr] = result
        return result

    def classify(self, body: Any) -> Egress | None:
        dest = destination(body)
        if dest is None:
            return None
        return self._egress(dest[0], dest[1])

    def classify_connection(self, body: Any) -> tuple[Egress | None, str | None, bool]:
        """`classify(body)`, with the socket's own source address and whether it is a `sock_arg`'s
        (`connection`): what the peer resolver reads next, from the same pass over the args."""
        conn = connection(body)
        if conn is None:
            return None, None, False
        return self._egress(conn[0], conn[1]), conn[2], conn[3]

    def _egress(self, daddr: Any, dport: Any) -> Egress | None:
        if type(daddr) is not str:
            return None
        hit = self.lookup(daddr)
        if hit is None:
            return None
        zone, external, cidr = hit
        return Egress(zone=zone, external=external, daddr=daddr, dport=dport if type(dport) is int else None,
                      cidr=cidr)
