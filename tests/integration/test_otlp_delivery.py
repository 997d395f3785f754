"""OTLP sink against a real collector (rotel): volume exactly once, crash and restart, every protocol, mapping."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from collector import Collector
from otlp_fixtures import otlp_collector, otlp_receiver  # noqa: F401 (fixtures)

from tests.sinks.test_otlp_mapping import expected_attributes, expected_resource
from tests.support import synth
from tests.support.fakes import ListSource
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.pipeline.processor import Processor
from tetrapipe.pipeline.runner import Pipeline, RetryPolicy
from tetrapipe.sinks.otlp.config import OtlpSinkConfig, build_sink

pytestmark = pytest.mark.integration
DATA = Path(__file__).resolve().parents[1] / "data" / "docs-examples.jsonl"


def digest(body: str | bytes) -> bytes:
    return hashlib.blake2b(body.encode() if isinstance(body, str) else body, digest_size=16).digest()


def endpoint(collector: Collector, protocol: str) -> str:
    return collector.grpc_endpoint if protocol == "grpc" else collector.http_endpoint


class RecordingSource(ListSource):
    """A ListSource that keeps the envelopes it produced (to compare with what arrived) and can pause."""

    def __init__(self, lines: Sequence[bytes], batch_size: int, pause_after: int | None = None) -> None:
        super().__init__(lines, batch_size)
        self.produced: list[Envelope] = []
        self.pause_after = pause_after
        self.resume = asyncio.Event()

    async def batches(self) -> AsyncIterator[Batch]:
        async for batch in super().batches():
            if self.pause_after is not None and self.batches_pulled > self.pause_after:
                await self.resume.wait()
            self.produced += batch.envelopes
            yield batch


def assert_exactly_once(source: RecordingSource, bodies: Sequence[str]) -> None:
    sent = Counter(digest(e.out) for e in source.produced if e.decoded is not None)
    received = Counter(digest(b) for b in bodies)
    assert sum(received.values()) == sum(sent.values()), "records lost or duplicated"
    assert received == sent


async def test_100k_events_at_full_speed_arrive_exactly_once(otlp_collector: Collector, processor: Processor) -> None:
    source = RecordingSource(list(synth.generate(100_000, seed=21)), batch_size=1000)
    sink = build_sink(OtlpSinkConfig(endpoint=otlp_collector.http_endpoint))
    started = time.perf_counter()
    assert await Pipeline(source, processor, [sink]).run() == 0
    elapsed = time.perf_counter() - started
    records = await asyncio.to_thread(otlp_collector.wait_for_count, 100_000, 120)
    assert_exactly_once(source, [r.body for r in records])
    assert sink.counters["exported"] == 100_000 and source.commits[-1] == 100_000
    print(f"100,000 events through the pipeline to rotel in {elapsed:.1f}s ({100_000 / elapsed:,.0f}/s)")


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf", "http/json"])
async def test_collector_killed_and_restarted_mid_stream_loses_nothing(
        otlp_collector: Collector, processor: Processor, protocol: str) -> None:
    source = RecordingSource(list(synth.generate(12_000, seed=22)), batch_size=500, pause_after=8)
    sink = build_sink(OtlpSinkConfig(endpoint=endpoint(otlp_collector, protocol), protocol=protocol, timeout=2))  # type: ignore[arg-type]
    pipeline = Pipeline(source, processor, [sink], max_in_flight=4, retry=RetryPolicy(0.05, 0.5))
    run = asyncio.create_task(pipeline.run())
    # rotel acknowledges before forwarding: wait until the first part reached the read-back sink.
    await asyncio.to_thread(otlp_collector.wait_for_count, 4000, 30)
    otlp_collector.kill()
    source.resume.set()
    await asyncio.sleep(2.0)
    pulled_while_down = source.batches_pulled
    await asyncio.sleep(1.0)
    assert source.batches_pulled == pulled_while_down, "intake must pause while the collector is down"
    assert pulled_while_down < 24 and not run.done()
    await asyncio.to_thread(otlp_collector.restart)
    assert await asyncio.wait_for(run, 60) == 0
    records = await asyncio.to_thread(otlp_collector.wait_for_count, 12_000, 60)
    assert_exactly_once(source, [r.body for r in records])
    assert pipeline.stats.sink_retries[sink.name] > 0


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf", "http/json"])
async def test_mapping_holds_on_real_samples_as_received(otlp_collector: Collector, processor: Processor,
                                                         protocol: str) -> None:
    lines = [line for line in DATA.read_bytes().splitlines() if line.strip()] + list(synth.generate(1000, seed=23))
    source = RecordingSource(lines, batch_size=200)
    sink = build_sink(OtlpSinkConfig(endpoint=endpoint(otlp_collector, protocol), protocol=protocol))  # type: ignore[arg-type]
    assert await Pipeline(source, processor, [sink]).run() == 0
    produced = [e for e in source.produced if e.decoded is not None]
    records = await asyncio.to_thread(otlp_collector.wait_for_count, len(produced), 30)
    assert_exactly_once(source, [r.body for r in records])
    by_body = {r.body: r for r in records}
    for env in produced:
        rec = by_body[env.out.decode()]
        assert rec.attributes == expected_attributes(env), env.out[:160]
        assert rec.resource_attributes == expected_resource(env)
        assert rec.event_name == f"tetragon.{env.decoded.etype}"  # type: ignore[union-attr]
        assert rec.observed_time_unix_nano == env.received_ns
        assert rec.scope_name == "tetrapipe"
        assert rec.severity_text in ("INFO", "WARN")
