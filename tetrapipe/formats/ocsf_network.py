"""OCSF Network Activity (4001) from Tetragon's connection hooks (`sock_arg`, `skb_arg`, `sockaddr_arg`).

- Endpoints: a socket's `saddr`/`sport` is the local end, `daddr`/`dport` the remote one (a
  `sockaddr_arg` only has the remote end).  For a connect the local end is the source; for an
  accept (`tcp_create_openreq_child`, `inet_csk_accept`) the remote end is; for anything else
  who initiated is unknown, so the local end is reported as source and
  `is_src_dst_assignment_known` is false.
- tetrapipe's egress zone is the remote endpoint's `zone` (the address the classification read).
- `connection_info.boundary_id` from the zone: loopback/unspecified → Localhost, a zone inside
  the cluster or network → Internal, any external zone → External.  `direction_id` (OCSF's is
  perimeter-based) for connects and accepts: Local for loopback, Lateral inside, Outbound
  (connect) / Inbound (accept) when external; Unknown for other functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tetrapipe.formats._common import IANA_NUMBERS, endpoint, find_socket, socket_endpoints
from tetrapipe.formats.ocsf_classes import actor_of

ACTIVITIES = {"connect": (1, "Open"), "accept": (1, "Open"), "close": (2, "Close"), "listen": (7, "Listen"),
              "traffic": (6, "Traffic"), "other": (99, "Other")}
"""Hook action (see `_hooks`) → OCSF Network Activity activity (id, caption)."""
_LOCAL_ZONES = frozenset({"loopback", "unspecified"})
_DIRECTION_NAMES = {0: "Unknown", 1: "Inbound", 2: "Outbound", 3: "Lateral", 4: "Local"}
_BOUNDARY_NAMES = {1: "Localhost", 2: "Internal", 3: "External"}
_IP_VERSIONS = {"AF_INET": 4, "AF_INET6": 6}
_SERVICE_KINDS = frozenset({"service", "apiserver"})


def network(action: str) -> Callable[[dict[str, Any], dict[str, Any], dict[str, Any], Any], None]:
    """The builder for one hook action (the activity itself is in the plan's constant head)."""
    outbound, inbound = action == "connect", action == "accept"

    def build(out: dict[str, Any], event: dict[str, Any], body: dict[str, Any], egress: Any) -> None:
        actor = actor_of(body)
        if actor is not None:
            out["actor"] = actor
        found = find_socket(body)
        lip, lport, rip, rport, transport = socket_endpoints(*found) if found else (None, None, None, None, None)
        local, remote = endpoint(lip, lport), endpoint(rip, rport)
        if remote is None and egress:  # no socket argument: the classification still had the address
            remote = endpoint(egress.get("daddr"), egress.get("dport"))
        zone = egress.get("zone") if egress else None
        if remote is not None and zone:
            remote["zone"] = zone
        src, dst = (remote, local) if inbound else (local, remote)
        if src is not None:
            out["src_endpoint"] = src
        if dst is not None:
            out["dst_endpoint"] = dst
        out["is_src_dst_assignment_known"] = outbound or inbound
        out["connection_info"] = _connection_info(found[1] if found else None, transport, egress, outbound, inbound)

    return build


def _connection_info(sock: Any, transport: str | None, egress: Any, outbound: bool, inbound: bool) -> dict[str, Any]:
    info: dict[str, Any] = {}
    boundary = 0
    if egress:
        zone = egress.get("zone")
        boundary = 1 if zone in _LOCAL_ZONES else 3 if egress.get("external") else 2
    direction = 0
    if boundary and (outbound or inbound):
        direction = 4 if boundary == 1 else 3 if boundary == 2 else 2 if outbound else 1
    info["direction_id"], info["direction"] = direction, _DIRECTION_NAMES[direction]
    if boundary:
        info["boundary_id"], info["boundary"] = boundary, _BOUNDARY_NAMES[boundary]
    if transport:
        info["protocol_name"] = transport
        num = IANA_NUMBERS.get(transport)
        if num is not None:
            info["protocol_num"] = num
    family = sock.get("family") if type(sock) is dict else None
    version = _IP_VERSIONS.get(family) if type(family) is str else None
    if version:
        info["protocol_ver_id"] = version
    return info


def attach_peers(out: dict[str, Any], remote_key: str, peer: Any, source: Any) -> None:
    """Name the endpoints after the peer resolver's answers (see the module docstring)."""
    local_key = "src_endpoint" if remote_key == "dst_endpoint" else "dst_endpoint"
    for key, who in ((remote_key, peer), (local_key, source)):
        ep = out.get(key)
        if type(who) is dict and ep is not None:
            name = who.get("name")
            if type(name) is str and name:
                ep["name"] = name
                if who.get("kind") in _SERVICE_KINDS:
                    ep["svc_name"] = name
            if who.get("kind") == "node":
                ep["type_id"], ep["type"] = 1, "Server"
