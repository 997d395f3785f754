"""Helpers shared by the OCSF and ECS mappings: time, ids, container/image splitting, sockets.

Everything here runs once per event at stream rates, so values derived from a small set of
inputs (seconds of a timestamp, image names, container ids) are memoised in bounded dicts,
and nothing raises on odd input: a missing or malformed field yields None and the caller
leaves the target field out.
"""

from __future__ import annotations

import calendar
import hashlib
import ipaddress
import re
from datetime import datetime
from typing import Any

import orjson

_MEMO_LIMIT = 4096
_SECONDS: dict[str, int] = {}
_IMAGES: dict[str, tuple[str, str | None, str | None]] = {}
_IPS: dict[str, str | None] = {}

TRANSPORTS = {"IPPROTO_TCP": "tcp", "IPPROTO_UDP": "udp", "IPPROTO_SCTP": "sctp", "IPPROTO_ICMP": "icmp",
              "IPPROTO_ICMPV6": "ipv6-icmp", "IPPROTO_RAW": "raw", "TCP": "tcp", "UDP": "udp"}
"""Tetragon's socket `protocol` → IANA keyword (lower case, as ECS `network.transport` wants)."""
IANA_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "ipv6-icmp": 58}
SOCKET_ARGS = ("sock_arg", "skb_arg", "sockaddr_arg")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}").fullmatch


def memo_put(cache: dict[Any, Any], key: Any, value: Any) -> None:
    """Store in a bounded memo: cleared when full (inputs repeat, so it refills with the hot keys)."""
    if len(cache) >= _MEMO_LIMIT:
        cache.clear()
    cache[key] = value


def epoch_ms(text: Any) -> int | None:
    """Tetragon's RFC 3339 UTC time (`2024-05-14T09:00:00.123456789Z`) → Unix epoch milliseconds.

    The seconds part is memoised (consecutive events share it); other forms (fewer fraction
    digits, offsets other than `Z`) take the slow path; None for a missing or unparsable value.
    """
    try:
        secs = _SECONDS[text[:19]]
    except KeyError:
        miss = _seconds(text)
        if miss is None:
            return None
        secs = miss
    except TypeError:  # not a string
        return None
    if len(text) > 24 and text[19] == "." and text[-1] == "Z":
        try:
            return secs * 1000 + int(text[20:23])
        except ValueError:
            pass
    return _epoch_ms_slow(text)


def _seconds(text: str) -> int | None:
    if len(text) < 20:
        return None
    try:
        secs = calendar.timegm((int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]),
                                int(text[14:16]), int(text[17:19]), 0, 0, 0))
    except ValueError:
        return None
    memo_put(_SECONDS, text[:19], secs)
    return secs


def _epoch_ms_slow(text: str) -> int | None:
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        return None
    return int(stamp.timestamp() * 1000)


def clean_ip(text: Any) -> str | None:
    """An IP address as both schemas' ip types take it (a scope `%eth0` dropped), or None if it is not one."""
    if type(text) is not str:
        return None
    hit = _IPS.get(text, "")
    if hit != "":
        return hit
    bare = text.partition("%")[0]
    if _IPV4(bare) is not None:  # what ipaddress accepts as IPv4 (no leading zeros), at a tenth of its cost
        result: str | None = bare
    else:
        try:
            ipaddress.ip_address(bare)
        except ValueError:
            result = None
        else:
            result = bare
    memo_put(_IPS, text, result)
    return result


def endpoint(ip: Any, port: Any) -> dict[str, Any] | None:
    """`{ip, port}` of a connection end (OCSF endpoint, ECS source/destination); None without an IP.

    The IP is cleaned (no zone index: ECS's ip type and OCSF's both refuse fe80::1%eth0); a port
    outside 0..65535 is left out.
    """
    ip = clean_ip(ip)
    if ip is None:
        return None
    ep: dict[str, Any] = {"ip": ip}
    if type(port) is int and 0 <= port <= 65535:
        ep["port"] = port
    return ep


def basename(path: str) -> str:
    """Last path component; the whole string when it ends with `/` or has none."""
    return path.rpartition("/")[2] or path


def split_container_id(cid: str) -> tuple[str, str | None]:
    """`containerd://abc` → (`abc`, `containerd`); an id without a runtime prefix stays as is."""
    runtime, sep, bare = cid.partition("://")
    return (bare, runtime) if sep else (cid, None)


def split_image(name: str) -> tuple[str, str | None, str | None]:
    """`reg:5000/repo/app:1.2` → (`reg:5000/repo/app`, `1.2`, None); `app@sha256:…` → (`app`, None, `sha256:…`)."""
    hit = _IMAGES.get(name)
    if hit is not None:
        return hit
    repo, tag, digest = name, None, None
    if "@" in name:
        repo, _, digest = name.partition("@")
    colon = repo.rfind(":")
    if colon > repo.rfind("/"):
        repo, tag = repo[:colon], repo[colon + 1:]
    result = (repo, tag, digest)
    memo_put(_IMAGES, name, result)
    return result


def event_uid(event: dict[str, Any], etype: str, body: dict[str, Any]) -> str:
    """A stable id for one event: the same Tetragon event always gets the same id.

    Built from what identifies an event (type, node, time, the process's exec_id and the hook
    function) rather than from its bytes, so it survives re-serialisation by log shippers;
    events without a process (throttle, rate-limit, unknown types) hash their canonical JSON.
    """
    proc = body.get("process")
    exec_id = proc.get("exec_id") if type(proc) is dict else None
    if exec_id:
        key = (f"{etype}|{event.get('node_name')}|{event.get('time')}|{exec_id}|{body.get('function_name')}|"
               f"{body.get('policy_name')}").encode()
    else:
        key = canonical_json(event) or f"{etype}|{event.get('node_name')}|{event.get('time')}".encode()
    return hashlib.blake2b(key, digest_size=16).hexdigest()


def canonical_json(obj: Any) -> bytes | None:
    """Sorted-key JSON of `obj`, or None when JSON cannot hold it (nesting deeper than 254, integers past 64 bits)."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError:
        return None


def dumps_or_degrade(doc: dict[str, Any], verbatim: tuple[tuple[str, ...], ...]) -> bytes:
    """`orjson.dumps(doc)`; if a verbatim copy of input makes it unencodable, replace that copy with a note.

    `verbatim` names the places (key paths) that hold input copied as is (`unmapped.tetragon`,
    `raw_data`, …): the only parts that can hold what JSON cannot (nesting deeper than orjson's
    254 levels, integers past 64 bits).  Everything else the mapping builds itself.
    """
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError as exc:
        note = f"not encodable: {exc}"
    doc = dict(doc)
    for path in verbatim:
        parent = doc
        for key in path[:-1]:
            if type(parent.get(key)) is not dict:
                break
            parent[key] = parent = dict(parent[key])
        else:
            if path[-1] in parent:
                parent[path[-1]] = {"error": note} if type(parent[path[-1]]) is dict else note
    return orjson.dumps(_without_huge_ints(doc))


def _without_huge_ints(obj: Any) -> Any:
    """A copy without integers JSON encoders cannot hold (past 64 bits): a forged pid or port is left out."""
    if type(obj) is dict:
        return {k: _without_huge_ints(v) for k, v in obj.items() if not _huge(v)}
    if type(obj) in (list, tuple):
        return [_without_huge_ints(v) for v in obj if not _huge(v)]
    return obj


def _huge(v: Any) -> bool:
    return type(v) is int and not -(1 << 63) <= v < (1 << 64)


def find_socket(body: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The first socket argument (`sock_arg`, `skb_arg`, `sockaddr_arg`) of a hook, else a returned `sock_arg`.

    Returns (kind, object) — the same argument the egress classification reads.
    """
    args = body.get("args")
    if type(args) is list:
        for arg in args:
            if type(arg) is dict:
                for kind in SOCKET_ARGS:
                    sock = arg.get(kind)
                    if type(sock) is dict:
                        return kind, sock
    ret = body.get("return")
    if type(ret) is dict:
        sock = ret.get("sock_arg")
        if type(sock) is dict:
            return "sock_arg", sock
    return None


def socket_endpoints(kind: str, sock: dict[str, Any]) -> tuple[Any, Any, Any, Any, str | None]:
    """(local ip, local port, remote ip, remote port, transport) of a socket argument.

    `sock_arg`/`skb_arg` carry both ends (saddr is the local one); `sockaddr_arg` only the
    address being connected/bound to (reported as the remote end).
    """
    if kind == "sockaddr_arg":
        return None, None, sock.get("addr"), sock.get("port"), None
    protocol = sock.get("protocol")
    return (sock.get("saddr"), sock.get("sport"), sock.get("daddr"), sock.get("dport"),
            TRANSPORTS.get(protocol) if type(protocol) is str else None)


def first_arg(body: dict[str, Any], index: int, kind: str) -> Any:
    """`args[index][kind]` of a hook event, or None."""
    args = body.get("args")
    if type(args) is list and len(args) > index:
        arg = args[index]
        if type(arg) is dict:
            return arg.get(kind)
    return None


def hook_details(body: dict[str, Any]) -> dict[str, Any]:
    """The event body without its process and parent: the hook-specific fields Tetragon sent, verbatim."""
    out = body.copy()
    out.pop("process", None)
    out.pop("parent", None)
    return out
