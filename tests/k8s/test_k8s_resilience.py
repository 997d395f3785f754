"""The watch survives what API servers do: restarts, compaction (410 Gone), a new etcd, a slow first list.
Each test has its own server (``own_kube``) since it kills, compacts or wipes it."""

from __future__ import annotations

import asyncio

import pytest

from tests.k8s.apiserver import KubeServer
from tests.k8s.conftest import Api, Start, eventually, grant_peer_role, next_ip
from tests.k8s.objects import pod, pod_status
from tests.k8s.proxy import Proxy

pytestmark = pytest.mark.integration
NO_CACHE = [{"watch_cache": False}]  # watches served by etcd itself: compaction shows as 410 at once


def name_of(resolver: object, ip: str) -> str | None:
    peer, _ = resolver.resolve(ip)  # type: ignore[attr-defined]
    return None if peer is None else str(peer["name"])


async def add_pod(api: Api, name: str, ns: str, ip: str) -> None:
    await api.create(pod(name, ns))
    await api.patch("Pod", name, ns, {"status": pod_status(ip)}, status=True)


@pytest.mark.parametrize("own_kube", NO_CACHE, indirect=True)
async def test_watch_resumes_from_its_resource_version_after_a_restart(own_kube: KubeServer,
                                                                       start_watch: Start) -> None:
    api, ns = Api(own_kube), await Api(own_kube).namespace()
    resolver, watch = await start_watch(own_kube)
    a, b = next_ip(), next_ip()
    await add_pod(api, "a", ns, a)
    await eventually(lambda: name_of(resolver, a) == "a", what="a")
    own_kube.stop_apiserver(kill=True)
    pods = watch.reflectors["pod"]
    await eventually(lambda: pods.counts["errors"] >= 1, what="the watch to notice")
    own_kube.spawn_apiserver()
    await own_kube.wait_ready()
    await add_pod(api, "b", ns, b)
    await eventually(lambda: name_of(resolver, b) == "b", timeout=30, what="b after the restart")
    assert name_of(resolver, a) == "a"
    assert (pods.counts["lists"], pods.counts["relists"]) == (1, 0), pods.stats()  # resumed, not relisted


async def test_restart_with_the_watch_cache_converges(own_kube: KubeServer, start_watch: Start) -> None:
    api, ns = Api(own_kube), await Api(own_kube).namespace()
    resolver, watch = await start_watch(own_kube)
    a, b = next_ip(), next_ip()
    await add_pod(api, "a", ns, a)
    await eventually(lambda: name_of(resolver, a) == "a", what="a")
    own_kube.stop_apiserver(kill=True)
    own_kube.spawn_apiserver()
    await own_kube.wait_ready()
    await add_pod(api, "b", ns, b)
    await eventually(lambda: name_of(resolver, b) == "b", timeout=30, what="b after the restart")
    assert name_of(resolver, a) == "a" and watch.ready


@pytest.mark.parametrize("own_kube", NO_CACHE, indirect=True)
async def test_410_gone_after_compaction_relists(own_kube: KubeServer, start_watch: Start) -> None:
    api, ns = Api(own_kube), await Api(own_kube).namespace()
    proxy = Proxy(own_kube.port)
    await proxy.start()
    try:
        resolver, watch = await start_watch(own_kube, url=f"https://127.0.0.1:{proxy.port}", grace=1.0)
        a, b = next_ip(), next_ip()
        await add_pod(api, "a", ns, a)
        await eventually(lambda: name_of(resolver, a) == "a", what="a")
        pods = watch.reflectors["pod"]
        proxy.block()  # the resolver is cut off; the test still talks to the server directly
        await eventually(lambda: pods.counts["errors"] >= 1, what="the watch to notice")
        await api.delete("Pod", "a", ns)
        await add_pod(api, "b", ns, b)
        own_kube.compact_etcd()  # past the resolver's resourceVersion: its resume must get 410 Gone
        proxy.unblock()
        await eventually(lambda: name_of(resolver, b) == "b", timeout=30, what="b after the relist")
        await eventually(lambda: name_of(resolver, a) is None, timeout=10, what="a gone after the relist + grace")
        assert pods.counts["relists"] >= 1 and pods.counts["lists"] >= 2, pods.stats()
    finally:
        await proxy.close()


async def test_new_etcd_data_dir_relists(own_kube: KubeServer, start_watch: Start) -> None:
    api, ns = Api(own_kube), await Api(own_kube).namespace()
    resolver, watch = await start_watch(own_kube, grace=1.0)
    a, b = next_ip(), next_ip()
    await add_pod(api, "a", ns, a)
    await eventually(lambda: name_of(resolver, a) == "a", what="a")
    own_kube.wipe_etcd()  # stops both; etcd starts empty: lower resourceVersions, the objects are gone
    own_kube.spawn_apiserver()
    await own_kube.wait_ready()
    await asyncio.to_thread(grant_peer_role, own_kube)
    await api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    await add_pod(api, "b", ns, b)
    await eventually(lambda: name_of(resolver, b) == "b", timeout=45, what="b on the new etcd")
    await eventually(lambda: name_of(resolver, a) is None, timeout=10, what="a gone")
    assert watch.reflectors["pod"].counts["relists"] >= 1, watch.reflectors["pod"].stats()


async def test_not_ready_until_the_first_list(own_kube: KubeServer, start_watch: Start) -> None:
    proxy = Proxy(own_kube.port)
    await proxy.start()
    try:
        proxy.block()
        _, watch = await start_watch(own_kube, url=f"https://127.0.0.1:{proxy.port}", wait=False)
        assert not await watch.wait_ready(1.5)
        assert not watch.stats()["ready"] and watch.reflectors["pod"].counts["errors"] >= 1
        _, lenient = await start_watch(own_kube, url=f"https://127.0.0.1:{proxy.port}", wait=False,
                                       require_sync=False)
        assert lenient.ready  # configured not to gate readiness on the first list
        proxy.unblock()
        assert await watch.wait_ready(30.0)
    finally:
        await proxy.close()
