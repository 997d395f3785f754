"""The Kubernetes API watch that feeds the peer resolver: Pods, Services, EndpointSlices, Nodes -> ApiIndex.

Contract:
- :class:`KubePeerWatch` runs one :class:`~tetrapipe.clients.kubernetes.Reflector` per resource
  (Pods optionally only of one node: ``spec.nodeName=<node_name>``) and writes what they see into
  the resolver's :class:`~tetrapipe.transforms.peer_index.ApiIndex`; objects found by a (re)list
  are marked as such (their addresses start at creation), objects seen by the watch as live.
  A relist forgets the objects it no longer lists (their addresses enter the grace period).
- Needs exactly get/list/watch on pods, services, endpointslices (discovery.k8s.io) and nodes
  (``deploy/rbac``); ``get`` of the ``default/kubernetes`` Service tells a new etcd (its uid
  changes) from a reconnect to the same one.
- ``ready``: True once every resource's first list completed (or at once with
  ``require_sync=False``); :meth:`wait_ready` waits for it, bounded. ``stats()``: per-resource
  counts (lists, relists, watches, events, bookmarks, errors), seconds since the last activity,
  the current watch's age, and the index sizes.
- :meth:`start` / :meth:`stop` own the tasks and the HTTP session; nothing blocks the event loop
  for long (pages of a large list are handled one at a time).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from kubernetes_asyncio import client

from tetrapipe.clients.kubernetes import ListCall, Reflector, api_client, object_uid
from tetrapipe.transforms.peer_model import node_record, pod_record, service_record, slice_record
from tetrapipe.transforms.peers import PeerResolver

log = logging.getLogger("tetrapipe.kubernetes")


class _IndexHandler:
    """Turns one resource's objects into records and index writes (a Reflector handler)."""

    def __init__(self, resolver: PeerResolver, kind: str) -> None:
        self.index, self.kind, self.labels = resolver.api, kind, resolver.labels
        self._seen: set[str] = set()

    def _upsert(self, obj: dict[str, Any], live: bool) -> str:
        kind, labels = self.kind, self.labels
        if kind == "pod":
            rec = pod_record(obj, labels)
            self.index.upsert_pod(rec, live=live)
            return rec.uid
        if kind == "slice":
            srec = slice_record(obj)
            self.index.upsert_slice(srec)
            return srec.uid
        nrec = service_record(obj, labels) if kind == "service" else node_record(obj, labels)
        self.index.upsert_named(kind, nrec, live=live)
        return nrec.uid

    def page(self, items: list[dict[str, Any]]) -> None:
        for obj in items:
            self._seen.add(self._upsert(obj, live=False))

    def listed(self) -> None:
        gone = self.index.replace(self.kind, self._seen)
        if gone:
            log.info("kubernetes %s: %d objects gone since the last list", self.kind, gone)
        self._seen = set()

    def event(self, kind: str, obj: dict[str, Any]) -> None:
        if kind != "DELETED":
            self._upsert(obj, live=True)
            return
        uid = str((obj.get("metadata") or {}).get("uid") or "")
        if self.kind == "slice":
            self.index.delete_slice(uid)
        else:
            self.index.delete(self.kind, uid)


def _calls(api: client.ApiClient) -> dict[str, ListCall]:
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    return {"pod": core.list_pod_for_all_namespaces, "service": core.list_service_for_all_namespaces,
            "slice": discovery.list_endpoint_slice_for_all_namespaces, "node": core.list_node}


class KubePeerWatch:
    """The four watches of one resolver; see the module docstring."""

    def __init__(self, resolver: PeerResolver, *, api: client.ApiClient | None = None,
                 node_name: str | None = None, require_sync: bool | None = None,
                 reflector_options: dict[str, Any] | None = None,
                 on_ready: Callable[[], None] | None = None) -> None:
        cfg = resolver.config
        self.resolver, self._api, self._own_api = resolver, api, api is None
        self.node_name = node_name if node_name is not None else cfg.node_name
        self.require_sync = cfg.require_sync if require_sync is None else require_sync
        # EndpointSlice targetRefs name pods the pod watch does not see; with every pod watched they would
        # only cost memory (~100 bytes per backend).
        resolver.api.backends.targets = self.node_name is not None
        self.reflector_options = reflector_options or {}
        self.on_ready = on_ready
        self.reflectors: dict[str, Reflector] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if self._api is None:
            cfg = self.resolver.config
            self._api = await api_client(cfg.kubeconfig, cfg.context)
        core = client.CoreV1Api(self._api)

        async def identity() -> str | None:
            # The API server creates default/kubernetes in every cluster; a new etcd gets a new one.
            return await object_uid(core.read_namespaced_service, "kubernetes", "default")

        for kind, call in _calls(self._api).items():
            selector = f"spec.nodeName={self.node_name}" if kind == "pod" and self.node_name else None
            self.reflectors[kind] = Reflector(kind, call, _IndexHandler(self.resolver, kind), field_selector=selector,
                                              identity=identity, **self.reflector_options)
        self._tasks = [asyncio.create_task(r.run(), name=f"kube-watch-{k}") for k, r in self.reflectors.items()]
        self._tasks.append(asyncio.create_task(self.resolver.housekeeping(), name="peer-housekeeping"))
        if self.on_ready is not None:
            self._tasks.append(asyncio.create_task(self._notify_ready(), name="kube-watch-ready"))

    async def _notify_ready(self) -> None:
        await asyncio.gather(*(r.synced.wait() for r in self.reflectors.values()))
        assert self.on_ready is not None
        self.on_ready()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._own_api and self._api is not None:
            await self._api.close()
            self._api = None

    @property
    def ready(self) -> bool:
        if not self.require_sync:
            return True
        return bool(self.reflectors) and all(r.synced.is_set() for r in self.reflectors.values())

    async def wait_ready(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until every first list completed; returns ``ready``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(r.synced.wait() for r in self.reflectors.values())), timeout)
        return self.ready

    def stats(self) -> dict[str, Any]:
        return {"ready": self.ready, "resources": {k: r.stats() for k, r in self.reflectors.items()},
                "index": self.resolver.stats()}
