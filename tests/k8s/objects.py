"""Kubernetes object manifests for the peer tests: plain dicts, valid for the API server (create) and,
with ``uid``/``created``/``ip`` filled in, shaped like what a list or watch returns (unit tests)."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def pod(name: str, namespace: str = "default", *, labels: dict[str, str] | None = None,
        owner: tuple[str, str] | None = None, node: str | None = "node-1", host_network: bool = False,
        ports: tuple[int, ...] = (), uid: str | None = None, created: str | None = None,
        ip: str | tuple[str, ...] | None = None, phase: str | None = None) -> Obj:
    """A Pod; ``owner`` = (kind, name) of its controller; ``ip`` sets status.podIP(s) (as a status patch would)."""
    meta: Obj = {"name": name, "namespace": namespace, "labels": dict(labels or {})}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1" if owner[0] != "Job" else "batch/v1", "kind": owner[0],
                                    "name": owner[1], "uid": f"uid-{owner[1]}", "controller": True}]
    if uid is not None:
        meta["uid"] = uid
    if created is not None:
        meta["creationTimestamp"] = created
    container: Obj = {"name": "app", "image": "registry.example/app:1"}
    if ports:
        container["ports"] = [{"containerPort": p} for p in ports]
    spec: Obj = {"containers": [container]}
    if node:
        spec["nodeName"] = node
    if host_network:
        spec["hostNetwork"] = True
    obj: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    if ip is not None or phase is not None:
        obj["status"] = pod_status(ip, phase)
    return obj


def pod_status(ip: str | tuple[str, ...] | None, phase: str | None = None) -> Obj:
    ips = (ip,) if isinstance(ip, str) else tuple(ip or ())
    status: Obj = {"phase": phase or "Running"}
    if ips:
        status.update(podIP=ips[0], podIPs=[{"ip": i} for i in ips])
    return status


def service(name: str, namespace: str = "default", *, cluster_ip: str | None = None,
            selector: dict[str, str] | None = None, labels: dict[str, str] | None = None,
            uid: str | None = None, created: str | None = None, port: int = 80) -> Obj:
    meta: Obj = {"name": name, "namespace": namespace, "labels": dict(labels or {})}
    if uid is not None:
        meta["uid"] = uid
    if created is not None:
        meta["creationTimestamp"] = created
    spec: Obj = {"ports": [{"port": port, "protocol": "TCP"}], "selector": dict(selector or {})}
    if cluster_ip is not None:
        spec.update(clusterIP=cluster_ip, clusterIPs=[cluster_ip])
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def endpoint_slice(name: str, service_name: str, namespace: str = "default", *,
                   targets: dict[str, str | None], port: int = 8080, uid: str | None = None) -> Obj:
    """``targets``: address -> pod name (None: an endpoint without targetRef)."""
    meta: Obj = {"name": name, "namespace": namespace, "labels": {"kubernetes.io/service-name": service_name}}
    if uid is not None:
        meta["uid"] = uid
    endpoints = []
    for ip, pod_name in targets.items():
        ep: Obj = {"addresses": [ip], "conditions": {"ready": True}}
        if pod_name is not None:
            ep["targetRef"] = {"kind": "Pod", "namespace": namespace, "name": pod_name}
        endpoints.append(ep)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta,
            "addressType": "IPv6" if any(":" in ip for ip in targets) else "IPv4",
            "endpoints": endpoints, "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}


def node(name: str, *, internal_ip: str, external_ip: str | None = None, uid: str | None = None,
         created: str | None = None) -> Obj:
    meta: Obj = {"name": name, "labels": {"kubernetes.io/hostname": name}}
    if uid is not None:
        meta["uid"] = uid
    if created is not None:
        meta["creationTimestamp"] = created
    addresses = [{"type": "InternalIP", "address": internal_ip}, {"type": "Hostname", "address": name}]
    if external_ip:
        addresses.append({"type": "ExternalIP", "address": external_ip})
    return {"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": {}, "status": {"addresses": addresses}}


def tetragon_connect(pod_ns: str | None, pod_name: str | None, *, saddr: str, daddr: str, dport: int = 443,
                     time: str = "2024-05-14T09:00:10.5Z", workload: str | None = None) -> Obj:
    """A tcp_connect kprobe as Tetragon exports it (protojson), from a pod (or the host: pod_ns None)."""
    process: Obj = {"exec_id": "bm9kZToxOjE=", "pid": 4242, "binary": "/usr/bin/curl"}
    if pod_ns is not None:
        process["pod"] = {"namespace": pod_ns, "name": pod_name, "container": {"name": "app"},
                          "pod_labels": {"app": workload or str(pod_name)}, "workload": workload or pod_name,
                          "workload_kind": "Deployment" if workload else "Pod"}
    sock = {"family": "AF_INET6" if ":" in daddr else "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP",
            "saddr": saddr, "daddr": daddr, "sport": 40000, "dport": dport, "state": "TCP_SYN_SENT"}
    return {"process_kprobe": {"process": process, "function_name": "tcp_connect", "args": [{"sock_arg": sock}],
                               "policy_name": "monitor-network"}, "node_name": "node-1", "time": time}
