"""The ``ip``/``cidr`` CEL functions of Kubernetes' CEL library, which Tetragon's CEL filter loads.

Contract: :func:`net_functions` returns cel-expr-python function declarations for ``ip(s)``,
``isIP(s)``, ``ip.isCanonical(s)``, ``<ip>.family()``, ``.isUnspecified()``, ``.isLoopback()``,
``.isLinkLocalMulticast()``, ``.isLinkLocalUnicast()``, ``.isGlobalUnicast()``, ``cidr(s)``,
``isCIDR(s)``, ``<cidr>.containsIP(ip|string)``, ``.containsCIDR(cidr|string)``, ``.ip()``,
``.masked()``, ``.prefixLength()``.  Values of type ``net.IP``/``net.CIDR`` are small messages of the
filter's descriptor pool holding the canonical text, so ``==`` compares them as Kubernetes does.
Parsing follows Kubernetes: no IPv4-mapped IPv6 (``::ffff:1.2.3.4``), no zones, no leading zeros.
Not provided: ``string(<ip>)``/``string(<cidr>)`` (cel-expr-python cannot overload ``string``).
An invalid argument raises, which CEL turns into an evaluation error (the filter then does not match).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from cel_expr_python import cel

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NET_MESSAGES = {"IP": "addr", "CIDR": "prefix"}  # message name in package "net" -> its one string field


def parse_ip(text: str) -> IPAddress:
    if "%" in text:
        raise ValueError(f"IP address with zone value is not allowed: {text}")
    addr = ipaddress.ip_address(text)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        raise ValueError(f"IPv4-mapped IPv6 address is not allowed: {text}")
    return addr


def parse_cidr(text: str) -> tuple[IPAddress, int]:
    addr_text, slash, length = text.partition("/")
    if not slash or not length.isdigit() or (len(length) > 1 and length[0] == "0"):
        raise ValueError(f"network address parse error during conversion from string: {text}")
    addr = parse_ip(addr_text)
    if int(length) > addr.max_prefixlen:
        raise ValueError(f"network address parse error during conversion from string: {text}")
    return addr, int(length)


def _is_global_unicast(a: IPAddress) -> bool:
    # Go's netip.Addr.IsGlobalUnicast: private ranges count as global unicast.
    if a.version == 4 and int(a) == 0xFFFFFFFF:
        return False
    return not (a.is_unspecified or a.is_loopback or a.is_multicast or _is_link_local_unicast(a))


def _is_link_local_unicast(a: IPAddress) -> bool:
    return a in (ipaddress.ip_network("169.254.0.0/16") if a.version == 4 else ipaddress.ip_network("fe80::/10"))


def _is_link_local_multicast(a: IPAddress) -> bool:
    if a.version == 4:
        return a in ipaddress.ip_network("224.0.0.0/24")
    return (int(a) >> 112) & 0xFF0F == 0xFF02


def net_functions(ip_cls: Any, cidr_cls: Any) -> list[cel.FunctionDecl]:
    """Declarations + implementations; ``ip_cls``/``cidr_cls`` are the message classes of net.IP/net.CIDR."""
    t_ip, t_cidr, t_str, t_bool, t_int = cel.Type("net.IP"), cel.Type("net.CIDR"), cel.Type.STRING, cel.Type.BOOL, \
        cel.Type.INT

    def make_ip(text: str) -> Any:
        return ip_cls(addr=str(parse_ip(text)))

    def make_cidr(text: str) -> Any:
        addr, length = parse_cidr(text)
        return cidr_cls(prefix=f"{addr}/{length}")

    def addr(ip: Any) -> IPAddress:
        return ipaddress.ip_address(ip.addr)

    def network(c: Any) -> IPNetwork:
        return ipaddress.ip_network(c.prefix, strict=False)

    def valid(parse: Any) -> Any:
        def check(text: str) -> bool:
            try:
                parse(text)
            except ValueError:
                return False
            return True
        return check

    def contains_cidr(c: Any, other: IPNetwork) -> bool:
        net = network(c)
        return other.version == net.version and other.subnet_of(net)  # type: ignore[arg-type]

    def decl(name: str, *overloads: tuple[str, Any, list[Any], bool, Any]) -> cel.FunctionDecl:
        return cel.FunctionDecl(name, [cel.Overload(oid, ret, params, is_member=member, impl=impl)
                                       for oid, ret, params, member, impl in overloads])

    ip_pred = {
        "isUnspecified": lambda i: addr(i).is_unspecified, "isLoopback": lambda i: addr(i).is_loopback,
        "isLinkLocalMulticast": lambda i: _is_link_local_multicast(addr(i)),
        "isLinkLocalUnicast": lambda i: _is_link_local_unicast(addr(i)),
        "isGlobalUnicast": lambda i: _is_global_unicast(addr(i)),
    }
    decls = [
        decl("ip", ("string_to_ip", t_ip, [t_str], False, make_ip),
             ("cidr_ip", t_ip, [t_cidr], True, lambda c: ip_cls(addr=c.prefix.split("/")[0]))),
        decl("isIP", ("is_ip", t_bool, [t_str], False, valid(parse_ip))),
        decl("ip.isCanonical", ("ip_is_canonical", t_bool, [t_str], False,
                                lambda s: str(parse_ip(s)) == s)),
        decl("family", ("ip_family", t_int, [t_ip], True, lambda i: addr(i).version)),
        decl("cidr", ("string_to_cidr", t_cidr, [t_str], False, make_cidr)),
        decl("isCIDR", ("is_cidr", t_bool, [t_str], False, valid(parse_cidr))),
        decl("containsIP",
             ("cidr_contains_ip_string", t_bool, [t_cidr, t_str], True, lambda c, s: parse_ip(s) in network(c)),
             ("cidr_contains_ip_ip", t_bool, [t_cidr, t_ip], True, lambda c, i: addr(i) in network(c))),
        decl("containsCIDR",
             ("cidr_contains_cidr_string", t_bool, [t_cidr, t_str], True,
              lambda c, s: contains_cidr(c, ipaddress.ip_network(make_cidr(s).prefix, strict=False))),
             ("cidr_contains_cidr", t_bool, [t_cidr, t_cidr], True, lambda c, o: contains_cidr(c, network(o)))),
        decl("masked", ("cidr_masked", t_cidr, [t_cidr], True, lambda c: cidr_cls(prefix=str(network(c))))),
        decl("prefixLength", ("cidr_prefix_length", t_int, [t_cidr], True, lambda c: network(c).prefixlen)),
    ]
    decls += [decl(name, (f"ip_{name}", t_bool, [t_ip], True, fn)) for name, fn in ip_pred.items()]
    return decls
