"""The committer commits only the acknowledged prefix, merged, rate-limited, and retries failed commits."""

from __future__ import annotations

import pytest

from tetrapipe.event.envelope import Batch
from tetrapipe.pipeline.commit import Committer, merge_positions


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def batch(position):
    return Batch([], position)


async def test_out_of_order_acks_commit_only_the_contiguous_prefix():
    commits = []

    async def commit(position):
        commits.append(position)

    c = Committer(commit, interval=0)
    b1, b2, b3 = batch({"p0": 10}), batch({"p1": 5}), batch({"p0": 20})
    for b in (b1, b2, b3):
        c.register(b)
    c.ack(b3)
    c.ack(b2)
    assert not await c.maybe_commit(force=True)  # b1 still in flight: nothing is committable
    c.ack(b1)
    assert await c.maybe_commit(force=True)
    assert commits == [{"p0": 20, "p1": 5}]
    assert c.in_flight == 0


async def test_filtered_batches_still_commit():
    commits = []

    async def commit(position):
        commits.append(position)

    c = Committer(commit, interval=0)
    empty = batch(100)  # e.g. every record dead-lettered or filtered
    c.register(empty)
    c.ack(empty)
    await c.maybe_commit()
    assert commits == [100]


async def test_commits_are_rate_limited_unless_forced():
    clock = ManualClock()
    commits = []

    async def commit(position):
        commits.append(position)

    c = Committer(commit, interval=5, clock=clock)
    for pos in (1, 2):
        b = batch(pos)
        c.register(b)
        c.ack(b)
        await c.maybe_commit()
    assert commits == []
    clock.now = 6
    await c.maybe_commit()
    assert commits == [2]
    b = batch(3)
    c.register(b)
    c.ack(b)
    await c.maybe_commit(force=True)
    assert commits == [2, 3]


async def test_failed_commit_is_retried_with_later_positions():
    attempts = []

    async def commit(position):
        attempts.append(position)
        if len(attempts) == 1:
            raise ConnectionError("broker away")

    c = Committer(commit, interval=0)
    b1 = batch({"a": 1})
    c.register(b1)
    c.ack(b1)
    with pytest.raises(ConnectionError):
        await c.maybe_commit(force=True)
    b2 = batch({"b": 2})
    c.register(b2)
    c.ack(b2)
    await c.maybe_commit(force=True)
    assert attempts == [{"a": 1}, {"a": 1, "b": 2}]
    assert c.committed == {"a": 1, "b": 2}


def test_ack_of_unregistered_batch_is_an_error():
    with pytest.raises(ValueError):
        Committer(None).ack(batch(1))


def test_merge_positions():
    assert merge_positions(None, {"a": 1}) == {"a": 1}
    assert merge_positions({"a": 1, "b": 1}, {"a": 3}) == {"a": 3, "b": 1}
    assert merge_positions(5, 9) == 9
    assert merge_positions(5, None) == 5
