"""The run loop against fakes: delivery, dead letters, retries, backpressure, shutdown."""

from __future__ import annotations

import asyncio
import io

import orjson
import pytest

from tests.support.events import exec_event, kprobe_event, sock
from tests.support.fakes import ListSource, ScriptedSink
from tetrapipe.pipeline.runner import (
    EXIT_DRAIN_INCOMPLETE,
    EXIT_FAILED,
    EXIT_INPUT_UNREADABLE,
    EXIT_OK,
    Pipeline,
    RetryPolicy,
)
from tetrapipe.sinks.base import Selection


def lines(n: int, bad_every: int = 0) -> list[bytes]:
    out = []
    for i in range(n):
        if bad_every and i % bad_every == bad_every - 1:
            out.append(b"{broken json " + str(i).encode())
        elif i % 3 == 0:
            out.append(orjson.dumps(exec_event("/usr/bin/sudo", str(i))))
        elif i % 3 == 1:
            out.append(orjson.dumps(kprobe_event("tcp_connect", [sock("8.8.8.8", i)])))
        else:
            out.append(orjson.dumps(exec_event("/bin/ls", str(i))))
    return out


def make(processor, source, sinks, **kw):
    kw.setdefault("retry", RetryPolicy(initial=0.001, maximum=0.01))
    kw.setdefault("log", io.StringIO())
    return Pipeline(source, processor, sinks, **kw)


async def test_every_record_is_delivered_or_dead_lettered_and_committed(processor):
    source = ListSource(lines(100, bad_every=7))
    sink, dlq = ScriptedSink(), ScriptedSink("dlq")
    p = make(processor, source, [sink], dead_letter=dlq)
    assert await p.run() == EXIT_OK
    assert len(sink.delivered) + len(dlq.delivered) == 100
    assert len(dlq.delivered) == 14
    assert all(e.raw.startswith(b"{broken") for e in dlq.delivered)
    assert source.commits[-1] == 100
    assert p.stats.sent["fake"] == 86 and p.stats.dead_lettered == 14 and p.stats.bad["invalid_json"] == 14
    assert [e.position for e in sink.delivered] == sorted(e.position for e in sink.delivered)  # order kept
    assert source.closed and sink.closed


async def test_without_dead_letter_bad_records_are_reported_and_counted(processor):
    source = ListSource(lines(30, bad_every=10))
    sink = ScriptedSink()
    p = make(processor, source, [sink])
    await p.run()
    assert p.stats.bad["invalid_json"] == 3 and p.stats.dead_lettered == 0
    report = p.reporter.out.getvalue() if isinstance(p.reporter.out, io.StringIO) else None
    assert report is None or "list item 10" in report
    assert source.commits[-1] == 30


async def test_retryable_failures_are_retried_without_loss_or_duplicates(processor):
    source = ListSource(lines(50))
    sink = ScriptedSink()
    sink.fail_retryable = 7
    p = make(processor, source, [sink])
    assert await p.run() == EXIT_OK
    assert [e.position for e in sink.delivered] == list(range(1, 51))
    assert p.stats.sink_retries["fake"] == 7


@pytest.mark.expect_errors
async def test_fatal_failure_stops_without_committing_the_batch(processor):
    source = ListSource(lines(50))
    sink = ScriptedSink()
    sink.fail_fatal = True
    p = make(processor, source, [sink])
    assert await p.run() == EXIT_FAILED
    assert source.commits == []
    assert "scripted fatal failure" in p.log.getvalue()


async def test_slow_sink_holds_back_the_source(processor):
    source = ListSource(lines(200), batch_size=5)
    sink = ScriptedSink()
    sink.release = asyncio.Event()
    p = make(processor, source, [sink], max_in_flight=3)
    task = asyncio.create_task(p.run())
    await asyncio.sleep(0.2)
    # bounded: a delivery group (the batch in the sink plus at most max_in_flight coalesced behind it),
    # max_in_flight queued, one read and waiting to be queued — nothing more is read
    assert source.batches_pulled <= 2 * 3 + 2
    sink.release.set()
    assert await task == EXIT_OK
    assert len(sink.delivered) == 200


async def test_graceful_stop_drains_what_was_read_and_commits_it(processor):
    source = ListSource(lines(1000), batch_size=10)
    source.gate = asyncio.Event()
    sink = ScriptedSink()
    p = make(processor, source, [sink], max_in_flight=4, grace=5)
    task = asyncio.create_task(p.run())
    source.gate.set()
    for _ in range(10_000):  # bounded: until a few batches were read (the stop then comes mid-stream)
        if source.batches_pulled >= 3:
            break
        await asyncio.sleep(0)
    p.request_stop()
    assert await task == EXIT_OK
    read = source.batches_pulled * 10
    assert read < 1000
    assert len(sink.delivered) == read  # everything read was delivered
    assert source.commits[-1] == read  # and committed


@pytest.mark.expect_errors
async def test_grace_period_bounds_a_stuck_shutdown(processor):
    source = ListSource(lines(100))
    sink = ScriptedSink()
    sink.release = asyncio.Event()  # never set: the sink hangs
    p = make(processor, source, [sink], grace=0.2)
    task = asyncio.create_task(p.run())
    await asyncio.sleep(0.05)
    p.request_stop()
    assert await asyncio.wait_for(task, 5) == EXIT_DRAIN_INCOMPLETE
    assert source.commits == []


async def test_reader_going_away_stops_quietly(processor):
    source = ListSource(lines(100))
    sink = ScriptedSink()
    sink.closed_by_reader = True
    p = make(processor, source, [sink])
    assert await p.run() == EXIT_OK
    assert source.commits == []


@pytest.mark.expect_errors
async def test_unreadable_source_exits_2(processor):
    p = make(processor, ListSource([], fail_start=True), [ScriptedSink()])
    assert await p.run() == EXIT_INPUT_UNREADABLE


async def test_fan_out_acknowledges_only_when_every_selecting_sink_did(processor):
    source = ListSource(lines(30), batch_size=30)
    everything = ScriptedSink("all")
    security = ScriptedSink("security", Selection(groups=frozenset({"security"}), untagged=False))
    security.fail_retryable = 3
    p = make(processor, source, [everything, security])
    assert await p.run() == EXIT_OK
    assert len(everything.delivered) == 30
    assert {e.tags.categories for e in security.delivered} == {("sudo",)}
    assert len(security.delivered) == 10
    assert p.stats.filtered["security"] == 20
    assert source.commits == [30]
