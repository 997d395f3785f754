"""Revocation and commit ordering against fakes: Pipeline.drain, Committer.settled/unsettled/forget, the commit lock.

A "partition" here is a string key of a dict position ({"p0": next offset}),
as a Kafka source produces ({TopicPartition: next offset}).  Every wait is
bounded (asyncio.wait_for / a bounded loop).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import pytest

from tests.support.events import exec_event
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.pipeline.commit import Committer
from tetrapipe.pipeline.runner import EXIT_OK, Pipeline, RetryPolicy
from tetrapipe.sinks.base import SELECT_ALL

LINE = orjson.dumps(exec_event("/usr/bin/sudo", "id"))


class PartitionSource:
    """Yields one batch per (partition, size) of `plan`, then stays open (like Kafka) until stopped.

    Envelope positions are (partition, offset); a batch's position is {partition: next offset}.
    Opts in to revocation (`bind_drain`) like the Kafka source.
    """

    name = "partitions"

    def __init__(self, plan: Sequence[tuple[str, int]]) -> None:
        self.plan = list(plan)
        self.commits: list[dict[str, int]] = []
        self.pulled = 0
        self.drain: Any = None
        self._stopped = asyncio.Event()
        self._more: list[tuple[str, int]] = []
        self._wake = asyncio.Event()

    def bind_drain(self, drain: Any) -> None:
        self.drain = drain

    @property
    def committed(self) -> dict[str, int]:
        """Where the source stands: each commit carries only the partitions that moved since the last one."""
        merged: dict[str, int] = {}
        for position in self.commits:
            merged.update(position)
        return merged

    async def start(self) -> None:
        pass

    def add(self, partition: str, size: int) -> None:
        """Queue one more batch (e.g. the partition came back after a rebalance)."""
        self._more.append((partition, size))
        self._wake.set()

    async def batches(self) -> AsyncIterator[Batch]:
        offsets: dict[str, int] = {}
        for _ in range(10_000):  # bounded: plan, then batches added later, until stopped
            if self.plan:
                partition, size = self.plan.pop(0)
            elif self._more:
                partition, size = self._more.pop(0)
            else:
                if self._stopped.is_set():
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            first = offsets.get(partition, 0)
            offsets[partition] = first + size
            self.pulled += 1
            yield Batch([Envelope(LINE, (partition, first + i)) for i in range(size)], {partition: first + size})

    async def commit(self, position: Any) -> None:
        self.commits.append(dict(position))

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    async def close(self) -> None:
        pass

    def describe(self, position: Any) -> str:
        return f"partition {position[0]} offset {position[1]}"


class GatedSink:
    """Acknowledges at once, except writes holding an envelope of a `gated` partition: they wait for `release`."""

    name = "gated"
    selection = SELECT_ALL

    def __init__(self, gated: set[str]) -> None:
        self.gated = gated
        self.release = asyncio.Event()
        self.blocked = asyncio.Event()  # set once a gated write is waiting
        self.delivered: list[tuple[str, int]] = []

    async def start(self) -> None:
        pass

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        if any(e.position[0] in self.gated for e in envelopes):
            self.blocked.set()
            await self.release.wait()
        self.delivered.extend(e.position for e in envelopes)

    async def close(self) -> None:
        pass


def make(processor: Any, source: PartitionSource, sink: GatedSink, **kw: Any) -> Pipeline:
    # One batch per delivery (max_delivery_events=1) and no commit rate limit: each ack is observable.
    kw.setdefault("committer", Committer(source.commit, interval=0))
    return Pipeline(source, processor, [sink], retry=RetryPolicy(initial=0.001, maximum=0.01), log=io.StringIO(),
                    max_delivery_events=1, max_in_flight=8, grace=5, **kw)


def owns(partition: str):  # noqa: ANN201 - a predicate over batches
    return lambda batch: partition in batch.commit_position


async def until(check: Any, what: str, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.005)):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


async def stop(pipeline: Pipeline, task: asyncio.Task[int]) -> int:
    pipeline.request_stop()
    return await asyncio.wait_for(task, 10)


# -- Pipeline.drain ---------------------------------------------------------------------------------

async def test_drain_waits_for_the_selected_in_flight_batches_and_commits_them(processor: Any) -> None:
    source = PartitionSource([("p1", 3), ("p0", 4), ("p0", 5), ("p1", 2)])
    sink = GatedSink({"p0"})
    p = make(processor, source, sink)
    task = asyncio.create_task(p.run())
    await until(lambda: source.pulled == 4 and sink.blocked.is_set(), "all batches read, p0 stuck in the sink")
    assert source.commits[-1] == {"p1": 3}  # the p1 batch before the stuck one

    drain = asyncio.create_task(p.drain(owns("p0"), 5.0))
    await asyncio.sleep(0.1)
    assert not drain.done(), "drain must wait for the in-flight p0 batches"
    sink.release.set()
    assert await asyncio.wait_for(drain, 5) is True
    # Committed by drain itself, before it returned (the source still owns p0 only until then):
    assert source.commits[-1]["p0"] == 9
    assert "abandoned" not in p.log.getvalue()  # type: ignore[attr-defined]
    assert await stop(p, task) == EXIT_OK
    assert source.committed == {"p0": 9, "p1": 5}
    assert p.committer.in_flight == 0


async def test_drain_with_nothing_in_flight_returns_at_once(processor: Any) -> None:
    source = PartitionSource([("p1", 3)])
    sink = GatedSink(set())
    p = make(processor, source, sink)
    task = asyncio.create_task(p.run())
    await until(lambda: source.commits == [{"p1": 3}], "the p1 batch to commit")
    assert await asyncio.wait_for(p.drain(owns("p0"), 30.0), 1) is True
    assert await stop(p, task) == EXIT_OK


async def test_drain_past_its_deadline_abandons_the_batches_and_never_commits_them(processor: Any) -> None:
    # p1 | p0 (stuck) | p1 | p0 | p1 : the p1 batches behind the stuck p0 one wait for it in source order.
    source = PartitionSource([("p1", 2), ("p0", 3), ("p1", 4), ("p0", 5), ("p1", 6)])
    sink = GatedSink({"p0"})
    p = make(processor, source, sink)
    task = asyncio.create_task(p.run())
    await until(lambda: source.pulled == 5 and sink.blocked.is_set(), "p0 stuck in the sink")
    assert source.commits == [{"p1": 2}]

    started = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(p.drain(owns("p0"), 0.2), 5) is False
    assert 0.15 <= asyncio.get_running_loop().time() - started < 2
    assert "2 in-flight batches not delivered" in p.log.getvalue()  # type: ignore[attr-defined]
    assert p.committer.unsettled(owns("p0")) == 0
    assert source.commits == [{"p1": 2}], "nothing more is committable while the stuck delivery holds the writer"

    # The sink recovers: the abandoned batches are still delivered (duplicates downstream are allowed) …
    sink.release.set()
    await until(lambda: source.commits and source.commits[-1].get("p1") == 12, "the later p1 batches to commit")
    assert ("p0", 0) in sink.delivered and ("p0", 7) in sink.delivered
    # … but their acknowledgement commits nothing for p0: the next owner redoes them.
    assert all("p0" not in c for c in source.commits), source.commits

    # The partition comes back (re-assigned): new p0 batches commit normally again.
    source.add("p0", 2)
    await until(lambda: source.commits[-1].get("p0") == 10, "a new p0 batch to commit")
    assert await stop(p, task) == EXIT_OK
    assert source.committed == {"p0": 10, "p1": 12}
    assert p.committer.in_flight == 0


@pytest.mark.expect_errors
async def test_drain_is_bounded_by_the_shutdown_deadline(processor: Any) -> None:
    source = PartitionSource([("p0", 3)])
    sink = GatedSink({"p0"})
    p = make(processor, source, sink)
    p.grace = 0.3
    task = asyncio.create_task(p.run())
    await until(lambda: sink.blocked.is_set(), "p0 stuck in the sink")
    p.request_stop()
    started = asyncio.get_running_loop().time()
    assert await asyncio.wait_for(p.drain(owns("p0"), 60.0), 5) is False
    assert asyncio.get_running_loop().time() - started < 1.0, "drain must not outlive the grace period"
    await asyncio.wait_for(task, 5)
    assert source.commits == []


@pytest.mark.expect_errors
async def test_drain_after_the_pipeline_ended_does_not_wait(processor: Any) -> None:
    source = PartitionSource([("p0", 3)])
    sink = GatedSink({"p0"})
    p = make(processor, source, sink)
    p.grace = 0.1
    task = asyncio.create_task(p.run())
    await until(lambda: sink.blocked.is_set(), "p0 stuck in the sink")
    await stop(p, task)  # grace runs out: the p0 batch stays unacknowledged forever
    assert await asyncio.wait_for(p.drain(owns("p0"), 60.0), 1) is False
    assert p.committer.unsettled(owns("p0")) == 0  # forgotten
    assert source.commits == []


async def test_a_failed_commit_during_drain_is_reported_not_raised(processor: Any) -> None:
    source = PartitionSource([("p0", 3)])
    sink = GatedSink(set())
    failures: list[Any] = []

    async def refuse(position: Any) -> None:
        failures.append(position)
        raise ConnectionError("broker away")

    p = make(processor, source, sink, committer=Committer(refuse, interval=3600))
    task = asyncio.create_task(p.run())
    await until(lambda: len(sink.delivered) == 3, "the p0 batch to be delivered")
    assert await asyncio.wait_for(p.drain(owns("p0"), 1.0), 5) is False
    assert failures == [{"p0": 3}]
    assert "commit before revocation failed" in p.log.getvalue()  # type: ignore[attr-defined]
    p.committer._commit_fn = source.commit  # noqa: SLF001 - the broker is back
    assert await stop(p, task) == EXIT_OK


# -- Committer: settled / unsettled / forget --------------------------------------------------------

def batch(position: Any) -> Batch:
    return Batch([], position)


def committer() -> tuple[Committer, list[Any]]:
    commits: list[Any] = []

    async def commit(position: Any) -> None:
        commits.append(position)

    return Committer(commit, interval=0), commits


async def test_unsettled_counts_selected_batches_until_they_leave_the_acknowledged_prefix() -> None:
    c, _ = committer()
    a0, b0, a1 = batch({"a": 1}), batch({"b": 1}), batch({"a": 2})
    for b in (a0, b0, a1):
        c.register(b)
    assert c.unsettled(owns("a")) == 2 and c.unsettled(owns("b")) == 1 and c.unsettled(owns("z")) == 0
    c.ack(a1)  # acknowledged, but behind a0 in source order: not committable yet, so still unsettled
    assert c.unsettled(owns("a")) == 2
    c.ack(a0)
    assert c.unsettled(owns("a")) == 1  # a1 still waits for b0
    c.ack(b0)
    assert c.unsettled(owns("a")) == 0 and c.unsettled(owns("b")) == 0 and c.in_flight == 0


async def test_settled_returns_true_at_once_waits_for_acks_and_false_on_timeout() -> None:
    c, _ = committer()
    assert await asyncio.wait_for(c.settled(owns("a"), 0), 1) is True  # nothing registered
    a0, b0 = batch({"a": 1}), batch({"b": 1})
    c.register(a0)
    c.register(b0)
    assert await asyncio.wait_for(c.settled(owns("b"), 0.05), 1) is False  # b0 waits for a0
    waiter = asyncio.create_task(c.settled(owns("a"), 5))
    await asyncio.sleep(0.02)
    assert not waiter.done()
    c.ack(a0)
    assert await asyncio.wait_for(waiter, 1) is True
    started = asyncio.get_running_loop().time()
    assert await c.settled(owns("b"), 0.1) is False
    assert asyncio.get_running_loop().time() - started >= 0.09
    c.ack(b0)
    assert await c.settled(owns("b"), 0) is True


async def test_settled_wakes_on_each_ack_and_keeps_waiting_for_the_rest() -> None:
    c, _ = committer()
    batches = [batch({"a": i + 1}) for i in range(3)]
    for b in batches:
        c.register(b)
    waiter = asyncio.create_task(c.settled(owns("a"), 5))
    for b in batches[:2]:
        c.ack(b)
        await asyncio.sleep(0.01)
        assert not waiter.done()
    c.ack(batches[2])
    assert await asyncio.wait_for(waiter, 1) is True


async def test_forget_abandons_selected_batches_and_ignores_their_later_acks() -> None:
    c, commits = committer()
    b0, a0, b1, a1, b2 = batch({"b": 1}), batch({"a": 10}), batch({"b": 2}), batch({"a": 20}), batch({"b": 3})
    for b in (b0, a0, b1, a1, b2):
        c.register(b)
    c.ack(b0)
    c.ack(a1)  # acknowledged but not in the prefix: forgetting drops it too
    c.ack(b1)
    assert await c.maybe_commit(force=True)
    assert commits == [{"b": 1}]  # b1 waits behind a0

    assert c.forget(owns("a")) == 2
    assert c.unsettled(owns("a")) == 0
    assert await c.maybe_commit(force=True)  # b1 no longer waits for a0
    assert commits[-1] == {"b": 2}
    c.ack(a0)  # the abandoned batch's sink finished after all: ignored
    c.ack(b2)
    assert await c.maybe_commit(force=True)
    assert commits[-1] == {"b": 3}
    assert all("a" not in position for position in commits), commits
    assert c.in_flight == 0

    a2 = batch({"a": 30})  # the partition came back: its new batches commit normally
    c.register(a2)
    c.ack(a2)
    assert await c.maybe_commit(force=True)
    assert commits[-1] == {"a": 30}


async def test_forget_of_nothing_selected_changes_nothing() -> None:
    c, commits = committer()
    b0 = batch({"b": 1})
    c.register(b0)
    assert c.forget(owns("a")) == 0
    assert c.in_flight == 1
    c.ack(b0)
    await c.maybe_commit(force=True)
    assert commits == [{"b": 1}]


async def test_forgetting_the_head_releases_an_acknowledged_tail() -> None:
    c, commits = committer()
    a0, b0, b1 = batch({"a": 5}), batch({"b": 1}), batch({"b": 2})
    for b in (a0, b0, b1):
        c.register(b)
    c.ack(b0)
    c.ack(b1)
    assert not await c.maybe_commit(force=True)
    assert c.forget(owns("a")) == 1
    assert await c.maybe_commit(force=True)
    assert commits == [{"b": 2}]


# -- commit serialisation ---------------------------------------------------------------------------

async def test_a_forced_commit_during_another_commit_waits_and_never_moves_a_position_backwards() -> None:
    first_entered, release_first = asyncio.Event(), asyncio.Event()
    commits: list[dict[str, int]] = []
    active = 0

    async def slow_commit(position: dict[str, int]) -> None:
        nonlocal active
        active += 1
        assert active == 1, "two commits reached the source at once"
        try:
            if not commits and not first_entered.is_set():
                first_entered.set()
                await release_first.wait()
            commits.append(dict(position))
        finally:
            active -= 1

    c = Committer(slow_commit, interval=0)
    b1, b2, b3 = batch({"p": 10, "q": 1}), batch({"p": 20}), batch({"p": 30, "q": 2})
    c.register(b1)
    c.ack(b1)
    periodic = asyncio.create_task(c.maybe_commit())  # the writer's commit of {p: 10}, stuck in the broker
    await asyncio.wait_for(first_entered.wait(), 1)
    for b in (b2, b3):
        c.register(b)
        c.ack(b)
    forced = asyncio.create_task(c.maybe_commit(force=True))  # a rebalance's forced commit meanwhile
    await asyncio.sleep(0.02)
    assert not forced.done(), "the forced commit must wait for the one in progress"
    release_first.set()
    assert await asyncio.wait_for(periodic, 1) is True
    assert await asyncio.wait_for(forced, 1) is True
    assert commits == [{"p": 10, "q": 1}, {"p": 30, "q": 2}]
    assert c.committed == {"p": 30, "q": 2}


async def test_commits_racing_with_acks_are_monotonic_per_partition() -> None:
    commits: list[dict[str, int]] = []

    async def commit(position: dict[str, int]) -> None:
        await asyncio.sleep(0.001 * (len(commits) % 3))  # commits of varying latency
        commits.append(dict(position))

    c = Committer(commit, interval=0)

    async def producer() -> None:
        for i in range(1, 201):
            b = batch({f"p{i % 3}": i})
            c.register(b)
            c.ack(b)
            if i % 7 == 0:
                await asyncio.sleep(0)

    async def committer_loop(force: bool) -> None:
        for _ in range(300):
            await c.maybe_commit(force=force)
            await asyncio.sleep(0)

    await asyncio.wait_for(asyncio.gather(producer(), committer_loop(False), committer_loop(True),
                                          committer_loop(True)), 10)
    await c.maybe_commit(force=True)
    last: dict[str, int] = {}
    for position in commits:
        for key, offset in position.items():
            assert offset >= last.get(key, 0), f"{key} moved backwards: {last[key]} -> {offset}"
            last[key] = offset
    assert last == {"p0": 198, "p1": 199, "p2": 200}


async def test_a_failed_commit_racing_a_forced_one_is_retried_merged_not_replayed_over_newer() -> None:
    entered, fail = asyncio.Event(), asyncio.Event()
    commits: list[dict[str, int]] = []
    calls = 0

    async def commit(position: dict[str, int]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            entered.set()
            await fail.wait()
            raise ConnectionError("coordinator moved")
        commits.append(dict(position))

    c = Committer(commit, interval=0)
    b1, b2 = batch({"p": 10, "q": 5}), batch({"p": 20})
    c.register(b1)
    c.ack(b1)
    first = asyncio.create_task(c.maybe_commit())
    await asyncio.wait_for(entered.wait(), 1)
    c.register(b2)
    c.ack(b2)
    forced = asyncio.create_task(c.maybe_commit(force=True))
    await asyncio.sleep(0.01)
    fail.set()
    results = await asyncio.wait_for(asyncio.gather(first, forced, return_exceptions=True), 1)
    assert isinstance(results[0], ConnectionError) and results[1] is True
    assert commits == [{"p": 20, "q": 5}]  # the newer p wins; q from the failed one is not lost


def without(partition: str):  # noqa: ANN201 - a batch's position minus one partition (the Kafka source's remainder)
    return lambda batch: {k: v for k, v in batch.commit_position.items() if k != partition}


async def test_forget_keeps_a_spanning_batch_in_order_for_the_partitions_still_owned() -> None:
    c, commits = committer()
    # One fetch spanning a and b, then more of b: giving up a must not let b commit past the first batch.
    ab0, b1 = batch({"a": 10, "b": 5}), batch({"b": 9})
    for b in (ab0, b1):
        c.register(b)
    c.ack(b1)
    assert c.forget(owns("a"), without("a")) == 1  # gave up a, kept for b
    assert c.unsettled(owns("a")) == 0, "nothing of a is pending any more"
    assert not await c.maybe_commit(force=True), "b1 must still wait for the b records of ab0"
    c.ack(ab0)
    assert await c.maybe_commit(force=True)
    assert commits == [{"b": 9}], "a is never committed, b only once ab0 was delivered"
    assert c.in_flight == 0


async def test_forget_without_a_remainder_still_abandons_a_batch_of_only_revoked_input() -> None:
    c, commits = committer()
    a0, b0 = batch({"a": 3}), batch({"b": 1})
    for b in (a0, b0):
        c.register(b)
    c.ack(b0)
    assert c.forget(owns("a"), without("a")) == 1  # nothing left once a is removed: abandoned
    assert await c.maybe_commit(force=True)
    assert commits == [{"b": 1}]


class SpanningSource(PartitionSource):
    """Like a Kafka fetch: each planned batch holds records of several partitions."""

    def __init__(self, plan: Sequence[dict[str, int]]) -> None:
        super().__init__([])
        self.spanning = list(plan)

    async def batches(self) -> AsyncIterator[Batch]:
        offsets: dict[str, int] = {}
        for sizes in self.spanning:
            envelopes = []
            for partition, size in sizes.items():
                first = offsets.get(partition, 0)
                offsets[partition] = first + size
                envelopes += [Envelope(LINE, (partition, first + i)) for i in range(size)]
            self.pulled += 1
            yield Batch(envelopes, {p: offsets[p] for p in sizes})
        await self._stopped.wait()


async def test_drain_timeout_never_lets_the_partitions_still_owned_commit_past_an_undelivered_fetch(
        processor: Any) -> None:
    # Fetch 1 spans p0 and p1 and is stuck (the sink holds writes with p0); fetch 2 has p1 only.
    source = SpanningSource([{"p0": 3, "p1": 2}, {"p1": 4}])
    sink = GatedSink({"p0"})
    p = make(processor, source, sink)
    task = asyncio.create_task(p.run())
    await until(lambda: source.pulled == 2 and sink.blocked.is_set(), "the spanning fetch stuck in the sink")
    assert await asyncio.wait_for(p.drain(owns("p0"), 0.2, without("p0")), 5) is False
    await asyncio.sleep(0.05)
    assert all("p1" not in c or c["p1"] <= 0 for c in source.commits), \
        f"p1 committed past its undelivered records of fetch 1: {source.commits}"
    sink.release.set()  # fetch 1 is delivered after all: now p1 commits, p0 never does
    await until(lambda: source.committed.get("p1") == 6, "p1 to commit both fetches")
    assert await stop(p, task) == EXIT_OK
    assert source.committed == {"p1": 6}, source.commits
