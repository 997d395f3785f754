"""`WorkerPool` with real worker processes: a worker that dies is replaced and its chunks redone; bounded.

- killed while idle (the pool must notice without a chunk outstanding: before,
  the run went on with a dead worker and a `--follow` run never ended);
- killed while the parent is blocked sending it a chunk (its pipe full, the
  worker stopped): every chunk still answered, in order, as one process
  computes it;
- a chunk that kills every worker it is given, and too many replacements:
  the pool breaks (`broken`, `on_broken`, `WorkerDied`) instead of looping.
Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from tests.support import synth
from tetrapipe.cli.workers import build_worker, worker_spec
from tetrapipe.config.root import Config
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.pipeline import worker_pool
from tetrapipe.pipeline.chunks import ChunkResult, chunk_of, fill
from tetrapipe.pipeline.worker_pool import WorkerDied, WorkerPool
from tetrapipe.pipeline.worker_process import WorkerState

pytestmark = pytest.mark.slow
POISON = b'{"poison":true}'
WAIT = 60.0


def spec() -> bytes:
    args = argparse.Namespace(pod_cidr=["10.244.0.0/16"], service_cidr=["10.96.0.0/12"], max_depth=None,
                              format="tetrapipe", only=[], ocsf_findings=False, start_groups={})
    return worker_spec(args, SimpleNamespace(config=Config()))  # type: ignore[arg-type]


def poison_build(text: bytes) -> WorkerState:
    """A worker that dies (as if it crashed) on a chunk holding the line POISON."""
    state = build_worker(text)
    process = state[0].process

    def process_or_die(batch: Batch) -> None:
        if any(env.raw == POISON for env in batch.envelopes):
            os._exit(7)
        process(batch)

    state[0].process = process_or_die  # type: ignore[method-assign]
    return state


def batch_of(lines: list[bytes]) -> Batch:
    return Batch([Envelope(raw, i) for i, raw in enumerate(lines)])


def chunks(count: int, size: int = 300, seed: int = 3) -> list[list[bytes]]:
    events = list(synth.generate(count * size, seed=seed))
    return [events[i:i + size] for i in range(0, len(events), size)]


def expected(lines: list[bytes]) -> tuple:
    processor, fmt, selection = build_worker(spec())
    return fields(fill(processor, fmt, selection, chunk_of(batch_of(lines)), False))


def fields(result: ChunkResult) -> tuple:
    return (result.index, [result.table[k] for k in result.keys], bytes(result.out), result.owner, result.bad,
            result.dropped, result.pending_from)


@pytest.fixture
async def pool() -> AsyncIterator[WorkerPool]:
    pools: list[WorkerPool] = []

    async def make(workers: int, build=build_worker) -> WorkerPool:  # noqa: ANN001
        p = WorkerPool(workers, build, spec())
        pools.append(p)
        await p.start()
        return p

    yield make  # type: ignore[misc]
    for p in pools:
        p.close()


async def until(check, what: str) -> None:  # noqa: ANN001
    async with asyncio.timeout(WAIT):
        while not check():
            await asyncio.sleep(0.02)


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


async def test_a_worker_killed_while_idle_is_replaced_and_works(pool) -> None:  # noqa: ANN001
    p = await pool(2)
    parts = chunks(4)
    assert fields(await asyncio.wait_for(p.submit(batch_of(parts[0])), WAIT)) == expected(parts[0])
    old = p.pids
    kill(old[1])
    await until(lambda: len(p.pids) == 2 and p.pids[1] != old[1] and p._pool[1].channel is not None,
                "the replacement")
    assert p.broken is None and p.pids[0] == old[0]
    futures = [p.submit(batch_of(part)) for part in parts]
    results = await asyncio.wait_for(asyncio.gather(*futures), WAIT)
    assert [fields(r) for r in results] == [expected(part) for part in parts]
    assert {len(w.waiting) for w in p._pool} == {0} and all(w.process.pid in p.pids for w in p._pool)


async def test_a_worker_killed_while_the_parent_is_blocked_sending_to_it(pool) -> None:  # noqa: ANN001
    p = await pool(1)
    parts = chunks(3, size=2500)  # each chunk larger than the 1 MiB pipe
    assert all(len(b"\n".join(part)) > (1 << 20) for part in parts)
    victim = p.pids[0]
    os.kill(victim, signal.SIGSTOP)  # it reads nothing more: the pipe fills up and the parent waits on it
    futures = [p.submit(batch_of(part)) for part in parts]
    channel = p._pool[0].channel
    assert channel is not None and channel._writing  # the parent is blocked sending (add_writer armed)
    kill(victim)
    results = await asyncio.wait_for(asyncio.gather(*futures), WAIT)
    assert [fields(r) for r in results] == [expected(part) for part in parts]
    assert p.pids != [victim] and p.broken is None


async def test_a_chunk_that_kills_every_worker_breaks_the_pool(pool) -> None:  # noqa: ANN001
    p = await pool(2, poison_build)
    woken: list[bool] = []
    p.on_broken = lambda: woken.append(True)
    good, bad = chunks(1)[0], [*chunks(1, seed=4)[0][:5], POISON]
    assert fields(await asyncio.wait_for(p.submit(batch_of(good)), WAIT)) == expected(good)
    poisoned = p.submit(batch_of(bad))
    with pytest.raises(WorkerDied, match="not tried again"):
        await asyncio.wait_for(poisoned, WAIT)
    assert woken == [True] and p.broken is not None
    with pytest.raises(WorkerDied):
        await p.submit(batch_of(good))


async def test_too_many_replacements_break_the_pool_even_when_idle(pool, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(worker_pool, "MAX_RESTARTS", 2)
    p = await pool(1)
    woken: list[bool] = []
    p.on_broken = lambda: woken.append(True)
    for _ in range(2):
        old = p.pids[0]
        kill(old)
        await until(lambda old=old: p.pids[0] != old and p._pool[0].channel is not None, "a replacement")
    kill(p.pids[0])
    await until(lambda: woken == [True], "the pool to give up")
    assert p.broken is not None and "not replaced again" in p.broken
    with pytest.raises(WorkerDied):
        await p.submit(batch_of(chunks(1)[0]))
