"""Fixtures of the Kubernetes integration tests: a real API server (etcd + kube-apiserver, tests/k8s/apiserver.py),
a REST helper for the test's own writes (as admin), and resolvers watching it as the least-privileged user bound
to deploy/rbac's ClusterRole — so every test also proves that role is enough."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.k8s.apiserver import PEERS_USER, KubeServer
from tetrapipe.clients.kube_peers import KubePeerWatch
from tetrapipe.clients.kubernetes import api_client
from tetrapipe.transforms.peers import PeerConfig, PeerResolver

ROOT = Path(__file__).resolve().parents[2]
CLUSTERROLE = ROOT / "deploy" / "rbac" / "clusterrole" / "clusterrole.yaml"
T = TypeVar("T")
_ips = itertools.count(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "kube" in getattr(item, "fixturenames", ()) or "own_kube" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


def grant_peer_role(server: KubeServer) -> None:
    """Create deploy/rbac's ClusterRole and bind it to the peers user."""
    role = yaml.safe_load(CLUSTERROLE.read_text())
    server.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", role)
    server.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "tetrapipe-test-peers"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": PEERS_USER}]})


def started(**kw: Any) -> KubeServer:
    server = KubeServer(**kw)
    try:
        server.start()
        grant_peer_role(server)
    except BaseException:
        server.close()
        raise
    return server


@pytest.fixture(scope="session")
def kube() -> Iterator[KubeServer]:
    """One API server for the tests that only create and delete objects (each in its own namespace)."""
    server = started()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def own_kube(request: pytest.FixtureRequest) -> Iterator[KubeServer]:
    """A server of the test's own, for tests that kill, compact or wipe it (param: KubeServer kwargs)."""
    server = started(**getattr(request, "param", {}))
    try:
        yield server
    finally:
        server.close()


def next_ip(prefix: str = "10.244") -> str:
    n = next(_ips)
    return f"{prefix}.{n // 250}.{n % 250 + 1}"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


_PATHS = {"Pod": "/api/v1/namespaces/{ns}/pods", "Service": "/api/v1/namespaces/{ns}/services",
          "ConfigMap": "/api/v1/namespaces/{ns}/configmaps", "Node": "/api/v1/nodes",
          "Namespace": "/api/v1/namespaces",
          "EndpointSlice": "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"}


class Api:
    """The test's own writes, as admin (blocking HTTP in a thread: the resolver's loop keeps running)."""

    def __init__(self, server: KubeServer) -> None:
        self.server = server

    def _path(self, kind: str, ns: str | None, name: str | None = None) -> str:
        path = _PATHS[kind].format(ns=ns)
        return f"{path}/{name}" if name else path

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        path = self._path(obj["kind"], obj["metadata"].get("namespace"))
        created: dict[str, Any] | None = await asyncio.to_thread(self.server.request, "POST", path, obj)
        return created or {}

    async def patch(self, kind: str, name: str, ns: str | None, patch: dict[str, Any], *, status: bool = False) -> None:
        path = self._path(kind, ns, name) + ("/status" if status else "")
        await asyncio.to_thread(self.server.request, "PATCH", path, patch, content_type="application/merge-patch+json")

    async def delete(self, kind: str, name: str, ns: str | None) -> None:
        await asyncio.to_thread(self.server.request, "DELETE", self._path(kind, ns, name),
                                {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})

    async def namespace(self, prefix: str = "t") -> str:
        name = unique(prefix)
        await self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return name


async def eventually(check: Callable[[], T | None], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        await asyncio.sleep(0.05)


Start = Callable[..., Awaitable[tuple[PeerResolver, KubePeerWatch]]]
FAST = {"backoff_initial": 0.1, "backoff_max": 1.0, "watch_timeout": 30, "connect_timeout": 5.0}


@pytest.fixture
async def start_watch() -> AsyncIterator[Start]:
    """``await start_watch(server, url=None, **PeerConfig fields)`` -> a synced (resolver, watch); stopped after."""
    running: list[KubePeerWatch] = []
    apis: list[Any] = []

    async def start(server: KubeServer, *, url: str | None = None, wait: bool = True,
                    reflector: dict[str, Any] | None = None, **cfg: Any) -> tuple[PeerResolver, KubePeerWatch]:
        cfg = {"learn": False, "grace": 5.0, **cfg}
        resolver = PeerResolver(PeerConfig(**cfg))
        kubeconfig = server.kubeconfig()
        if url is not None:  # e.g. through a proxy
            kubeconfig.write_text(kubeconfig.read_text().replace(server.url, url))
        api = await api_client(str(kubeconfig))
        apis.append(api)
        watch = KubePeerWatch(resolver, api=api, reflector_options={**FAST, **(reflector or {})})
        running.append(watch)
        await watch.start()
        if wait:
            assert await watch.wait_ready(30.0), watch.stats()
        return resolver, watch

    yield start
    for watch in running:
        await watch.stop()
    for api in apis:
        await api.close()
