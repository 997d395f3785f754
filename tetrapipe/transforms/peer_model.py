"""Kubernetes objects and Tetragon pods -> the compact records the peer index keeps (pure, no I/O).

Contract:
- Inputs are plain dicts as the API server sends them (JSON, camelCase) or as Tetragon exports
  them (protojson, snake_case). Nothing here keeps a reference to the input: the index holds only
  the few fields a peer shows, so its memory does not grow with managedFields, env, or annotations.
- Addresses are normalised once, here, off the hot path (:func:`canonical_ip`): IPv4-mapped IPv6
  becomes IPv4, a zone (``%eth0``) is dropped, IPv6 is compressed. Lookups first try the string
  as given, which is already canonical for Tetragon and the API server.
- Workload names follow the rules Tetragon and Hubble use (a pod's controller; a ReplicaSet whose
  name ends in the pod's ``pod-template-hash`` is a Deployment; a Job named ``<x>-<8..10 digits>``
  is CronJob ``x``): ReplicaSets and Jobs are not watched, so no extra RBAC is needed.
- Times are whole epoch seconds (creationTimestamp has no finer resolution).
"""
from __future__ import annotations

import calendar
import ipaddress
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Obj = Mapping[str, Any]
Peer = dict[str, Any]

DEFAULT_LABELS: tuple[str, ...] = ("app.kubernetes.io/name", "app.kubernetes.io/component", "app", "k8s-app")
"""Label keys copied into a peer by default (the full label set would cost memory and output bytes)."""

_CRONJOB_JOB = re.compile(r"(.+)-\d{8,10}")
_NODE_ADDRESS_TYPES = ("InternalIP", "ExternalIP")
_intern = sys.intern


# A dotted quad without leading zeros is already canonical: most addresses (the API's, a snapshot's) are,
# and ipaddress costs ~15 µs per address (a 10k-pod snapshot's load).
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # [0-9], not \d: str patterns match any Unicode digit
_CANONICAL_V4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}").fullmatch


def canonical_ip(text: str) -> str | None:
    """The canonical text of an address, or None when ``text`` is not an IP address."""
    if _CANONICAL_V4(text) is not None:
        return text
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


_SECONDS: dict[str, int] = {}


def epoch_seconds(stamp: str | None) -> int | None:
    """Whole epoch seconds of an RFC 3339 UTC time (``2023-11-01T05:25:14.837745007Z``), memoised.

    Only the first 19 characters are read: Tetragon's events and the API server's timestamps are
    UTC, and events arrive roughly in time order, so the memo hits almost always.
    """
    if not stamp:
        return None
    key = stamp[:19]
    value = _SECONDS.get(key)
    if value is None:
        try:
            value = calendar.timegm(time.strptime(key, "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            return None
        if len(_SECONDS) > 65536:  # bounded: a long-running worker sees every second once
            _SECONDS.clear()
        _SECONDS[key] = value
    return value


class LabelPicker:
    """Copies the configured label keys; equal subsets are shared between peers (memory)."""

    def __init__(self, keys: Iterable[str] = DEFAULT_LABELS) -> None:
        self.keys = tuple(keys)
        self._shared: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}

    def pick(self, labels: Obj | None) -> dict[str, str]:
        if not labels:
            return _EMPTY
        items = tuple((k, labels[k]) for k in self.keys if k in labels and isinstance(labels[k], str))
        if not items:
            return _EMPTY
        shared = self._shared.get(items)
        if shared is None:
            if len(self._shared) > 100_000:  # bounded; only sharing is lost
                self._shared.clear()
            shared = self._shared[items] = {_intern(k): _intern(v) for k, v in items}
        return shared


_EMPTY: dict[str, str] = {}


def workload_of(name: str, meta: Obj, labels: Obj) -> tuple[str, str]:
    """(workload, workload_kind) of a pod: its controller, resolved through the naming rules."""
    refs: Sequence[Obj] = meta.get("ownerReferences") or ()
    owner = next((r for r in refs if r.get("controller")), None)
    if owner is None:
        return name, "Pod"
    kind, oname = str(owner.get("kind", "")), str(owner.get("name", ""))
    if kind == "ReplicaSet":
        tmpl = labels.get("pod-template-hash")
        if tmpl and oname.endswith("-" + tmpl):
            return oname[: -len(tmpl) - 1], "Deployment"
    elif kind == "Job":
        m = _CRONJOB_JOB.fullmatch(oname)
        if m:
            return m.group(1), "CronJob"
    return oname, kind


@dataclass(slots=True)
class PodRecord:
    """What the index keeps of one Pod."""

    uid: str
    ips: tuple[str, ...]  # empty while the pod holds no address (pending, finished)
    since: int  # creationTimestamp
    host_network: bool
    ports: tuple[int, ...]  # declared container ports: how a hostNetwork pod is told apart from its node
    base: Peer  # the peer without "ip"


@dataclass(slots=True)
class NamedRecord:
    """A Service (its cluster/external/load-balancer IPs) or a Node (its addresses)."""

    uid: str
    ips: tuple[str, ...]
    since: int
    base: Peer


@dataclass(slots=True)
class SliceRecord:
    """An EndpointSlice: the service it belongs to, and per address the pod it targets (or None)."""

    uid: str
    service: str  # "namespace/name"
    targets: dict[str, tuple[str, str] | None]  # ip -> (namespace, pod name)
    ports: tuple[int, ...]


def _ips(values: Iterable[Any]) -> tuple[str, ...]:
    out: list[str] = []
    for v in values:
        ip = canonical_ip(v) if isinstance(v, str) else None
        if ip is not None and ip not in out:
            out.append(_intern(ip))
    return tuple(out)


def _since(meta: Obj) -> int:
    return epoch_seconds(meta.get("creationTimestamp")) or 0


def pod_record(obj: Obj, labels: LabelPicker) -> PodRecord:
    """A Pod. A finished pod (phase Succeeded/Failed) holds no IP: the kubelet has released it for reuse,
    the API only keeps ``podIPs`` in the status for the record."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    name, ns = str(meta.get("name", "")), _intern(str(meta.get("namespace", "")))
    own_labels = meta.get("labels") or {}
    workload, kind = workload_of(name, meta, own_labels)
    base: Peer = {"kind": "pod", "namespace": ns, "name": name, "workload": _intern(workload),
                  "workload_kind": _intern(kind)}
    picked = labels.pick(own_labels)
    if picked:
        base["labels"] = picked
    if spec.get("nodeName"):
        base["node"] = _intern(str(spec["nodeName"]))
    finished = status.get("phase") in ("Succeeded", "Failed")
    addrs = [p.get("ip") for p in status.get("podIPs") or ()] or [status.get("podIP")]
    ports = tuple(sorted({int(p["containerPort"]) for c in spec.get("containers") or ()
                          for p in c.get("ports") or () if isinstance(p.get("containerPort"), int)}))
    return PodRecord(uid=str(meta.get("uid") or f"{ns}/{name}"), ips=() if finished else _ips(addrs),
                     since=_since(meta), host_network=bool(spec.get("hostNetwork")), ports=ports, base=base)


def service_record(obj: Obj, labels: LabelPicker) -> NamedRecord:
    """A Service; ``default/kubernetes`` is the API server. Headless services (``None``) have no IP."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    name, ns = str(meta.get("name", "")), _intern(str(meta.get("namespace", "")))
    addrs = list(spec.get("clusterIPs") or [spec.get("clusterIP")])
    addrs += spec.get("externalIPs") or []
    addrs += [i.get("ip") for i in (status.get("loadBalancer") or {}).get("ingress") or ()]
    apiserver = ns == "default" and name == "kubernetes"
    base: Peer = {"kind": "apiserver" if apiserver else "service", "namespace": ns, "name": name}
    picked = labels.pick(meta.get("labels"))
    if picked and not apiserver:
        base["labels"] = picked
    return NamedRecord(uid=str(meta.get("uid") or f"{ns}/{name}"), ips=_ips(addrs), since=_since(meta), base=base)


def node_record(obj: Obj, labels: LabelPicker) -> NamedRecord:
    """A Node: its InternalIP and ExternalIP addresses (host names are not addresses)."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    name = _intern(str(meta.get("name", "")))
    addrs = [a.get("address") for a in status.get("addresses") or () if a.get("type") in _NODE_ADDRESS_TYPES]
    base: Peer = {"kind": "node", "name": name}
    picked = labels.pick(meta.get("labels"))
    if picked:
        base["labels"] = picked
    return NamedRecord(uid=str(meta.get("uid") or name), ips=_ips(addrs), since=_since(meta), base=base)


def slice_record(obj: Obj) -> SliceRecord:
    """An EndpointSlice (discovery.k8s.io/v1); its service is the ``kubernetes.io/service-name`` label."""
    meta = obj.get("metadata") or {}
    ns = _intern(str(meta.get("namespace", "")))
    service = str((meta.get("labels") or {}).get("kubernetes.io/service-name", ""))
    targets: dict[str, tuple[str, str] | None] = {}
    for ep in obj.get("endpoints") or ():
        ref = ep.get("targetRef") or {}
        target = (_intern(str(ref.get("namespace") or ns)), str(ref["name"])) \
            if ref.get("kind") == "Pod" and ref.get("name") else None
        for ip in _ips(ep.get("addresses") or ()):
            targets[ip] = target
    ports = tuple(int(p["port"]) for p in obj.get("ports") or () if isinstance(p.get("port"), int))
    return SliceRecord(uid=str(meta.get("uid") or f"{ns}/{meta.get('name')}"),
                       service=f"{ns}/{service}" if service else "", targets=targets, ports=ports)


def tetragon_pod_peer(pod: Obj, labels: LabelPicker) -> Peer | None:
    """The peer base of a Tetragon ``process.pod`` (protojson: ``pod_labels``, ``workload``, ``workload_kind``)."""
    ns, name = pod.get("namespace"), pod.get("name")
    if not ns or not name:
        return None
    base: Peer = {"kind": "pod", "namespace": _intern(str(ns)), "name": str(name)}
    if pod.get("workload"):
        base["workload"] = _intern(str(pod["workload"]))
    if pod.get("workload_kind"):
        base["workload_kind"] = _intern(str(pod["workload_kind"]))
    picked = labels.pick(pod.get("pod_labels"))
    if picked:
        base["labels"] = picked
    return base
