"""The Reflector's list/watch protocol against scripted answers (no server): pages, split and large lines,
bookmarks, 410 Gone, a reset store, errors and backoff."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from tetrapipe.clients.kubernetes import Gone, Reflector, _status_error


class Content:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            await asyncio.sleep(0)
            yield chunk


class Resp:
    def __init__(self, status: int = 200, body: Any = None, chunks: list[bytes] | None = None) -> None:
        self.status, self.body, self.content = status, body, Content(chunks or [])

    async def read(self) -> bytes:
        return orjson.dumps(self.body)

    def release(self) -> None:
        pass


def line(kind: str, obj: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": kind, "object": obj}) + b"\n"


def pod(name: str, rv: str, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": name, "resourceVersion": rv, **extra}}


class Recorder:
    def __init__(self) -> None:
        self.pages: list[list[str]] = []
        self.listed_count = 0
        self.events: list[tuple[str, str]] = []

    def page(self, items: list[dict[str, Any]]) -> None:
        self.pages.append([i["metadata"]["name"] for i in items])

    def listed(self) -> None:
        self.listed_count += 1

    def event(self, kind: str, obj: dict[str, Any]) -> None:
        self.events.append((kind, obj["metadata"]["name"]))


class Script:
    """A list call answering from a queue; records the parameters of each call; blocks when empty."""

    def __init__(self, answers: list[Resp]) -> None:
        self.answers, self.calls = answers, []  # type: ignore[var-annotated]

    async def __call__(self, **params: Any) -> Resp:
        self.calls.append(params)
        while not self.answers:
            await asyncio.sleep(3600)
        return self.answers.pop(0)


async def run_until(reflector: Reflector, done: Any, timeout: float = 5.0) -> None:
    task = asyncio.create_task(reflector.run())
    try:
        async with asyncio.timeout(timeout):
            while not done():
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}


async def test_pages_then_watch_with_split_and_large_lines_and_bookmarks() -> None:
    big = pod("big", "12", annotations={"a": "x" * 200_000})  # more than aiohttp's 64 KiB line limit
    stream = line("ADDED", pod("c", "11")) + line("MODIFIED", big) + line("BOOKMARK", pod("", "15"))
    script = Script([
        Resp(body={"metadata": {"continue": "tok"}, "items": [pod("a", "1")]}),
        Resp(body={"metadata": {"resourceVersion": "10"}, "items": [pod("b", "2")]}),
        Resp(chunks=[stream[:7], stream[7:100_000], stream[100_000:]]),
    ])
    rec = Recorder()
    r = Reflector("pod", script, rec, field_selector="spec.nodeName=n1", **FAST)  # type: ignore[arg-type]
    await run_until(r, lambda: r.counts["bookmarks"] == 1)
    assert rec.pages == [["a"], ["b"]] and rec.listed_count == 1 and r.synced.is_set()
    assert rec.events == [("ADDED", "c"), ("MODIFIED", "big")]
    assert r.resource_version == "15"
    assert script.calls[1]["_continue"] == "tok" and script.calls[0]["field_selector"] == "spec.nodeName=n1"
    assert script.calls[2]["watch"] is True and script.calls[2]["resource_version"] == "10"
    assert script.calls[2]["allow_watch_bookmarks"] is True


async def test_410_in_the_stream_relists() -> None:
    gone = line("ERROR", {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"})
    script = Script([
        Resp(body={"metadata": {"resourceVersion": "10"}, "items": []}),
        Resp(chunks=[line("ADDED", pod("a", "11")) + gone]),
        Resp(body={"metadata": {"resourceVersion": "20"}, "items": [pod("a", "11")]}),
    ])
    rec = Recorder()
    r = Reflector("pod", script, rec, **FAST)  # type: ignore[arg-type]
    await run_until(r, lambda: rec.listed_count == 2)
    assert r.counts["relists"] == 1 and r.counts["errors"] == 0


async def test_error_then_reset_store_relists_and_a_same_store_resumes() -> None:
    script = Script([
        Resp(body={"metadata": {"resourceVersion": "300"}, "items": []}),
        Resp(status=503, body={"message": "unavailable"}),
        Resp(body={"metadata": {"resourceVersion": "120"}, "items": []}),  # the probe: a lower version
        Resp(body={"metadata": {"resourceVersion": "125"}, "items": []}),  # the relist
    ])
    r = Reflector("pod", script, Recorder(), **FAST)  # type: ignore[arg-type]
    await run_until(r, lambda: r.counts["lists"] == 2)
    assert r.counts["errors"] == 1 and r.counts["relists"] == 1 and r.resource_version == "125"
    assert script.calls[2]["limit"] == 1 and "watch" not in script.calls[2]

    same = Script([
        Resp(body={"metadata": {"resourceVersion": "300"}, "items": []}),
        Resp(status=503, body={"message": "unavailable"}),
        Resp(body={"metadata": {"resourceVersion": "310"}, "items": []}),  # the probe: same store, further on
    ])
    r2 = Reflector("pod", same, Recorder(), **FAST)  # type: ignore[arg-type]
    await run_until(r2, lambda: len(same.calls) == 4)  # the 4th call: the watch again, from 300
    assert same.calls[3]["resource_version"] == "300" and r2.counts["relists"] == 0


async def test_identity_change_relists() -> None:
    ids = iter(["uid-1", "uid-2", "uid-2"])

    async def identity() -> str | None:
        return next(ids)

    script = Script([
        Resp(body={"metadata": {"resourceVersion": "5"}, "items": []}),
        Resp(status=500, body={"message": "boom"}),
        Resp(body={"metadata": {"resourceVersion": "9"}, "items": []}),  # probe: version fine...
        Resp(body={"metadata": {"resourceVersion": "9"}, "items": []}),  # relist
    ])
    r = Reflector("pod", script, Recorder(), identity=identity, **FAST)  # type: ignore[arg-type]
    await run_until(r, lambda: r.counts["lists"] == 2)
    assert r.counts["relists"] == 1


@pytest.mark.parametrize(("at_list", "at_check", "relists"), [
    (None, "uid-1", 1),  # a cluster too new to have default/kubernetes at the list: not provably the same
    (None, None, 0),  # never readable (RBAC without get): the resourceVersion check alone decides
    ("uid-1", None, 0),  # unreadable for a moment: no evidence of a new store
    ("uid-1", "uid-1", 0),
])
async def test_identity_unknown_on_one_side(at_list: str | None, at_check: str | None, relists: int) -> None:
    ids = iter([at_list, at_check, at_check])

    async def identity() -> str | None:
        return next(ids)

    script = Script([
        Resp(body={"metadata": {"resourceVersion": "5"}, "items": []}),
        Resp(status=500, body={"message": "boom"}),
        Resp(body={"metadata": {"resourceVersion": "9"}, "items": []}),  # probe: version fine
        Resp(body={"metadata": {"resourceVersion": "9"}, "items": []}),  # a relist, or the watch
    ])
    r = Reflector("pod", script, Recorder(), identity=identity, **FAST)  # type: ignore[arg-type]
    await run_until(r, lambda: len(script.calls) >= 4)  # a relist is followed by a 5th call at once
    assert r.counts["relists"] == relists
    assert ("watch" in script.calls[3]) == (relists == 0)


async def test_empty_watches_back_off_instead_of_spinning() -> None:
    script = Script([Resp(body={"metadata": {"resourceVersion": "1"}, "items": []})]
                    + [Resp(chunks=[]) for _ in range(3)])
    r = Reflector("pod", script, Recorder(), backoff_initial=0.05, backoff_max=1.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await run_until(r, lambda: r.counts["errors"] == 3)
    assert loop.time() - started >= 0.05 * 0.8 + 0.1 * 0.8  # two backoff sleeps, doubled


@pytest.mark.parametrize(("status", "body", "gone"), [
    (410, {"code": 410, "message": "too old"}, True),
    (504, {"code": 504, "message": "Too large resource version: 9, current: 3",
           "details": {"causes": [{"reason": "ResourceVersionTooLarge"}]}}, True),
    (403, {"code": 403, "message": "forbidden"}, False),
    (500, "not json", False),
])
def test_status_classification(status: int, body: Any, gone: bool) -> None:
    assert isinstance(_status_error(status, body), Gone) is gone
