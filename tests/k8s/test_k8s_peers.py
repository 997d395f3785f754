"""The peer resolver against a real API server (shared; each test in its own namespace, with its own addresses)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.k8s.apiserver import PEERS_TOKEN, KubeServer, KubeServerError
from tests.k8s.conftest import Api, Start, eventually, next_ip, unique
from tests.k8s.objects import endpoint_slice, node, pod, pod_status, service

pytestmark = pytest.mark.integration


def name_of(resolver: object, ip: str, port: int | None = None, time: str | None = None) -> str | None:
    peer, _ = resolver.resolve(ip, port, time=time)  # type: ignore[attr-defined]
    return None if peer is None else str(peer["name"])


async def add_pod(api: Api, name: str, ns: str, ip: str | None, **kw: object) -> None:
    await api.create(pod(name, ns, **kw))  # type: ignore[arg-type]
    if ip is not None:
        await api.patch("Pod", name, ns, {"status": pod_status(ip)}, status=True)


async def test_pods_services_nodes_and_the_api_server(kube: KubeServer, start_watch: Start) -> None:
    api, ns = Api(kube), await Api(kube).namespace()
    resolver, watch = await start_watch(kube)
    pod_ip, node_ip, svc_ip = next_ip(), next_ip("192.168"), next_ip("10.96")
    node_name = unique("node")
    await api.create(node(node_name, internal_ip=node_ip))
    await api.patch("Node", node_name, None, {"status": node(node_name, internal_ip=node_ip)["status"]}, status=True)
    await add_pod(api, "api-7c9f8d5b4-x2kq9", ns, pod_ip, owner=("ReplicaSet", "api-7c9f8d5b4"), node=node_name,
                  labels={"app": "api", "pod-template-hash": "7c9f8d5b4"})
    await api.create(service("api", ns, cluster_ip=svc_ip, labels={"app": "api"}))

    peer = await eventually(lambda: resolver.resolve(pod_ip, 8080)[0], what="the pod")
    assert peer == {"kind": "pod", "namespace": ns, "name": "api-7c9f8d5b4-x2kq9", "workload": "api",
                    "workload_kind": "Deployment", "labels": {"app": "api"}, "node": node_name, "ip": pod_ip,
                    "via": "api"}
    svc = await eventually(lambda: resolver.resolve(svc_ip, 80)[0], what="the service")
    assert (svc["kind"], svc["namespace"], svc["name"]) == ("service", ns, "api")
    assert (await eventually(lambda: resolver.resolve(node_ip)[0], what="the node"))["name"] == node_name
    apiserver = resolver.resolve("10.96.0.1", 443)[0]
    assert apiserver is not None and (apiserver["kind"], apiserver["name"]) == ("apiserver", "kubernetes")
    assert resolver.resolve(next_ip(), 80) == (None, None)
    stats = watch.stats()
    assert stats["ready"] and stats["index"]["api"]["pods"] >= 1
    assert all(r["lists"] == 1 and r["errors"] == 0 for r in stats["resources"].values()), stats


async def test_relabel_and_pod_behind_two_services(kube: KubeServer, start_watch: Start) -> None:
    api, ns = Api(kube), await Api(kube).namespace()
    resolver, _ = await start_watch(kube)
    ip = next_ip()
    await add_pod(api, "web-0", ns, ip, owner=("StatefulSet", "web"), labels={"app": "web"})
    await eventually(lambda: name_of(resolver, ip) == "web-0", what="web-0")
    await api.patch("Pod", "web-0", ns, {"metadata": {"labels": {"app": "web-v2"}}})
    await eventually(lambda: resolver.resolve(ip)[0]["labels"] == {"app": "web-v2"}, what="new labels")  # type: ignore

    for svc in ("web", "web-admin"):
        await api.create(service(svc, ns, cluster_ip=next_ip("10.96")))
        await api.create(endpoint_slice(f"{svc}-abcde", svc, ns, targets={ip: "web-0"}))
    want = (f"{ns}/web", f"{ns}/web-admin")
    await eventually(lambda: resolver.resolve(ip)[0].get("services") == want, what="two services")  # type: ignore
    peer = resolver.resolve(ip)[0]
    assert peer is not None and (peer["workload"], peer["workload_kind"]) == ("web", "StatefulSet")
    await api.delete("EndpointSlice", "web-admin-abcde", ns)
    await eventually(lambda: resolver.resolve(ip)[0].get("services") == (f"{ns}/web",), what="one service")  # type: ignore


async def test_ip_reused_by_a_new_pod(kube: KubeServer, start_watch: Start) -> None:
    api, ns = Api(kube), await Api(kube).namespace()
    resolver, _ = await start_watch(kube, grace=8.0)
    ip = next_ip()
    await add_pod(api, "first", ns, ip)
    await eventually(lambda: name_of(resolver, ip) == "first", what="first")
    before = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time()))
    await asyncio.sleep(2.2)  # creationTimestamp has whole seconds: keep the two lives apart
    await api.delete("Pod", "first", ns)
    await add_pod(api, "second", ns, ip)
    await eventually(lambda: name_of(resolver, ip) == "second", what="second")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1))
    assert name_of(resolver, ip, time=now) == "second"
    assert name_of(resolver, ip, time=before) == "first"  # a late event of the first pod, within the grace
    await eventually(lambda: name_of(resolver, ip, time=before) is None, timeout=20, what="the grace to end")
    assert name_of(resolver, ip) == "second"


async def test_host_network_pod_shares_its_nodes_address(kube: KubeServer, start_watch: Start) -> None:
    api, ns = Api(kube), await Api(kube).namespace()
    resolver, _ = await start_watch(kube)
    node_ip, node_name = next_ip("192.168"), unique("node")
    await api.create(node(node_name, internal_ip=node_ip))
    await api.patch("Node", node_name, None, {"status": node(node_name, internal_ip=node_ip)["status"]}, status=True)
    await add_pod(api, "node-exporter-x1", ns, node_ip, owner=("DaemonSet", "node-exporter"), node=node_name,
                  host_network=True, ports=(9100,))
    await eventually(lambda: name_of(resolver, node_ip, 9100) == "node-exporter-x1", what="the hostNetwork pod")
    assert resolver.resolve(node_ip, 10250)[0]["kind"] == "node"  # type: ignore[index]
    assert resolver.resolve(node_ip)[0]["kind"] == "node"  # type: ignore[index]


async def test_node_name_restricts_the_pod_watch(kube: KubeServer, start_watch: Start) -> None:
    api, ns = Api(kube), await Api(kube).namespace()
    mine, other = unique("node"), unique("node")
    resolver, _ = await start_watch(kube, node_name=mine)
    here, there = next_ip(), next_ip()
    await add_pod(api, "here", ns, here, node=mine)
    await add_pod(api, "there", ns, there, node=other)
    await api.create(service("svc", ns, cluster_ip=next_ip("10.96")))
    await api.create(endpoint_slice("svc-1", "svc", ns, targets={there: "there"}))
    await eventually(lambda: name_of(resolver, here) == "here", what="this node's pod")
    peer = await eventually(lambda: resolver.resolve(there)[0], what="the other node's pod, by its EndpointSlice")
    assert peer == {"kind": "pod", "namespace": ns, "name": "there", "ip": there, "services": (f"{ns}/svc",),
                    "via": "endpointslice"}
    assert resolver.stats()["api"]["pods"] == len([p for p in [here] if p])  # only this node's pods are listed


async def test_the_peer_role_reads_nothing_else(kube: KubeServer) -> None:
    for path in ("/api/v1/secrets", "/api/v1/configmaps", "/apis/apps/v1/replicasets"):
        with pytest.raises(KubeServerError, match="HTTP 403"):
            await asyncio.to_thread(kube.request, "GET", path, token=PEERS_TOKEN)
    assert await asyncio.to_thread(kube.request, "GET", "/api/v1/pods?limit=1", token=PEERS_TOKEN)


async def test_bookmarks_are_read(kube: KubeServer, start_watch: Start) -> None:
    api, ns = Api(kube), await Api(kube).namespace()
    _, watch = await start_watch(kube, reflector={"watch_timeout": 8})
    # The server sends a bookmark ~2 s before a watch's timeout, once the watch has seen an event.
    await api.create(service("bm", ns, cluster_ip=next_ip("10.96")))
    await eventually(lambda: watch.reflectors["service"].counts["bookmarks"] >= 1, timeout=30, what="a bookmark")
    assert watch.reflectors["service"].counts["errors"] == 0
