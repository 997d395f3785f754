"""List+watch of one Kubernetes resource, resilient like client-go's reflector, on kubernetes_asyncio.

Contract:
- :meth:`Reflector.run` loops until cancelled. It lists (paginated, ``limit`` per page) and hands
  each page to ``handler.page(items)``, then ``handler.listed()`` (forget what the list no longer
  has); then it watches from the list's resourceVersion with bookmarks, handing each ADDED,
  MODIFIED, DELETED object to ``handler.event(type, obj)``. Every event and bookmark advances the
  resourceVersion it would resume from.
- A watch that ends (the server's ``timeout_seconds``) or breaks (connection lost, API server
  restarted) resumes from the last resourceVersion — no relist. ``410 Gone`` (expired: etcd
  compacted past it), or a resourceVersion the server has never reached (a new etcd), relists.
  After an error the first watch is preceded by a check that the server still has the same store:
  if its resourceVersion is below ours (compared only when both are integers, as etcd's are; they
  are opaque by the API's contract), or the optional ``identity`` (e.g. the ``default/kubernetes``
  Service's uid, which a new etcd regenerates) changed since the last list, it relists. Without
  the identity a new etcd whose revision has already caught up with ours would go unnoticed: its
  numbers mean other events. An identity unknown at the list (unreadable, or not created yet) but
  known at the check also relists, once; unreadable at the check never does.
- Errors back off exponentially with jitter (``backoff_initial`` doubling to ``backoff_max``);
  the delay resets once a watch has delivered something.
- ``synced`` is set after the first complete list, ``stats()`` has counts and ages.
- Objects are read as raw JSON (orjson), not the library's models: a 100k-pod list costs a page
  of dicts at a time, and unknown fields cannot break decoding. kubernetes_asyncio supplies the
  configuration (in-cluster service account or kubeconfig), authentication, TLS and the URLs.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from kubernetes_asyncio import client, config

log = logging.getLogger("tetrapipe.kubernetes")
ListCall = Callable[..., Awaitable[Any]]
Identity = Callable[[], Awaitable[str | None]]


class Gone(Exception):
    """The resourceVersion cannot be served (410 Gone, or too large): relist."""


class ApiError(Exception):
    """A non-2xx answer or an ERROR watch event other than Gone."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class Handler(Protocol):
    def page(self, items: list[dict[str, Any]]) -> None: ...
    def listed(self) -> None: ...
    def event(self, kind: str, obj: dict[str, Any]) -> None: ...


async def api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """An ApiClient from ``kubeconfig``, else the in-cluster service account, else $KUBECONFIG / ~/.kube/config."""
    cfg = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=cfg)  # re-reads the rotated token by itself
    else:
        await config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg,
                                      persist_config=False)
    return client.ApiClient(configuration=cfg)


async def object_uid(read_call: ListCall, *args: Any, connect_timeout: float = 10.0) -> str | None:
    """The uid of one object (``read_call(*args)``, e.g. CoreV1Api.read_namespaced_service), None if unreadable."""
    resp = await read_call(*args, _preload_content=False, _request_timeout=(connect_timeout, 30))
    try:
        if resp.status != 200:
            return None
        uid = (orjson.loads(await resp.read()).get("metadata") or {}).get("uid")
        return str(uid) if uid else None
    finally:
        resp.release()


def _status_error(status: int, body: Any) -> Exception:
    doc = body if isinstance(body, dict) else {}
    message = str(doc.get("message") or body)[:300]
    causes = (doc.get("details") or {}).get("causes") or ()
    too_large = any(c.get("reason") == "ResourceVersionTooLarge" for c in causes if isinstance(c, dict)) \
        or "too large resource version" in message.lower()
    if status == 410 or doc.get("code") == 410 or too_large:
        return Gone(message)
    return ApiError(int(doc.get("code") or status), message)


class Reflector:
    """List+watch of one resource into a :class:`Handler`; see the module docstring."""

    def __init__(self, name: str, list_call: ListCall, handler: Handler, *, field_selector: str | None = None,
                 limit: int = 500, watch_timeout: int = 300, backoff_initial: float = 0.5,
                 backoff_max: float = 30.0, connect_timeout: float = 10.0, identity: Identity | None = None) -> None:
        self.name, self.list_call, self.handler, self.identity = name, list_call, handler, identity
        self._identity_at_list: str | None = None
        self.field_selector, self.limit, self.watch_timeout = field_selector, limit, watch_timeout
        self.backoff_initial, self.backoff_max, self.connect_timeout = backoff_initial, backoff_max, connect_timeout
        self.synced = asyncio.Event()
        self.resource_version: str | None = None
        self.counts = {"lists": 0, "relists": 0, "watches": 0, "events": 0, "bookmarks": 0, "errors": 0}
        self.last_error: str | None = None
        self.last_activity: float | None = None  # monotonic: last list, event or bookmark
        self.watch_started: float | None = None

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        delay, after_error = self.backoff_initial, False
        while True:
            try:
                if self.resource_version is None:
                    await self._list()
                elif after_error:
                    await self._check_not_reset()
                after_error = True  # until a watch delivers
                delivered = await self._watch()
                if delivered:
                    delay, after_error = self.backoff_initial, False
                    continue
                # An empty watch that ended at once (a server closing on us): do not spin.
                raise ApiError(0, "watch closed without events")
            except asyncio.CancelledError:
                raise
            except Gone as exc:
                if self.resource_version is not None:  # the version we resume from expired: relist at once
                    log.info("kubernetes %s: resourceVersion gone (%s), relisting", self.name, exc)
                    self.resource_version = None
                    self.counts["relists"] += 1
                    continue
                self._failed(exc, delay)  # the list itself failed so (twice): back off like any error
            except Exception as exc:  # every failure is retried; the reason is logged and counted
                self._failed(exc, delay)
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.backoff_max)

    def _failed(self, exc: Exception, delay: float) -> None:
        self.counts["errors"] += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        log.warning("kubernetes %s: %s; retrying in %.1f s", self.name, self.last_error, delay)

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"_preload_content": False}
        if self.field_selector:
            params["field_selector"] = self.field_selector
        return params

    async def _call(self, **params: Any) -> Any:
        resp = await self.list_call(**self._params(), **params)
        if not 200 <= resp.status <= 299:
            body = await resp.read()
            resp.release()
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                doc = body.decode("utf-8", "replace")
            raise _status_error(resp.status, doc)
        return resp

    # ------------------------------------------------------------------ list

    async def _list(self) -> None:
        if self.identity is not None:  # before the list: a reset during it is then caught by the next check
            self._identity_at_list = await self.identity()
        try:
            rv = await self._list_pages()
        except Gone:  # the continue token expired between two pages: start over, once
            rv = await self._list_pages()
        self.handler.listed()
        self.resource_version = rv
        self.counts["lists"] += 1
        self.last_activity = time.monotonic()
        self.synced.set()

    async def _list_pages(self) -> str:
        token: str | None = None
        while True:
            params: dict[str, Any] = {"limit": self.limit, "_request_timeout": (self.connect_timeout, 120)}
            if token:
                params["_continue"] = token
            resp = await self._call(**params)
            try:
                doc = orjson.loads(await resp.read())
            finally:
                resp.release()
            self.handler.page(doc.get("items") or [])
            meta = doc.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                return str(meta.get("resourceVersion") or "")
            await asyncio.sleep(0)  # let events flow between pages of a large list

    async def _check_not_reset(self) -> None:
        resp = await self._call(limit=1, _request_timeout=(self.connect_timeout, 60))
        try:
            meta = orjson.loads(await resp.read()).get("metadata") or {}
        finally:
            resp.release()
        server, ours = str(meta.get("resourceVersion") or ""), self.resource_version or ""
        if server.isdigit() and ours.isdigit() and int(server) < int(ours):
            raise Gone(f"server resourceVersion {server} is below ours ({ours}): its store was reset")
        if self.identity is not None:
            now = await self.identity()
            # Unknown at the list (a cluster so new that default/kubernetes did not exist yet) but known
            # now: the same store cannot be proven, so relist once; the relist records the identity.
            if now and now != self._identity_at_list:
                raise Gone(f"cluster identity changed ({self._identity_at_list} -> {now}): a new store")

    # ------------------------------------------------------------------ watch

    async def _watch(self) -> bool:
        """Watch from the current resourceVersion until the server ends it; True if anything arrived."""
        # A server timeout a little random per watch (like client-go) spreads reconnects; the read timeout
        # (no byte for that long, bookmarks included) catches a silently dead connection.
        server_timeout = int(self.watch_timeout * random.uniform(1.0, 1.2))
        resp = await self._call(watch=True, resource_version=self.resource_version, allow_watch_bookmarks=True,
                                timeout_seconds=server_timeout,
                                _request_timeout=(self.connect_timeout, server_timeout + 60))
        self.counts["watches"] += 1
        self.watch_started = time.monotonic()
        delivered = False
        # Our own line splitting: aiohttp's readline() refuses lines over 64 KiB, and one object (a pod with
        # many containers, or large annotations) can be bigger.
        buf = bytearray()
        try:
            async for chunk in resp.content.iter_any():
                buf += chunk
                start = 0
                while (end := buf.find(b"\n", start)) >= 0:
                    if end > start:
                        self._on_line(bytes(buf[start:end]))
                        delivered = True
                    start = end + 1
                del buf[:start]
        finally:
            resp.release()
        # A watch that lived its full term delivered nothing wrong even if quiet.
        return delivered or time.monotonic() - self.watch_started >= server_timeout * 0.9

    def _on_line(self, line: bytes) -> None:
        ev = orjson.loads(line)
        kind, obj = ev.get("type"), ev.get("object") or {}
        if kind == "ERROR":
            raise _status_error(int(obj.get("code") or 500), obj)
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            self.counts["bookmarks"] += 1
        elif kind in ("ADDED", "MODIFIED", "DELETED"):
            self.handler.event(kind, obj)
            self.counts["events"] += 1
        if rv:
            self.resource_version = str(rv)
        self.last_activity = time.monotonic()

    # ------------------------------------------------------------------ stats

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        return {**self.counts, "synced": self.synced.is_set(), "resource_version": self.resource_version,
                "last_error": self.last_error,
                "seconds_since_activity": None if self.last_activity is None else now - self.last_activity,
                "watch_age_seconds": None if self.watch_started is None else now - self.watch_started}
