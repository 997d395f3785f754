"""`--metrics-port` during real runs: a `tetrapipe run` process scraped mid-stream, and consumer lag on a real broker."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from brokers import Broker, create_topic, unique_name
from kafka_worker import build_pipeline
from prometheus_client.parser import text_string_to_metric_families
from test_kafka_helpers import committed, end_offsets, produce, wait_until, worker_config

from tests.support.synth import generate
from tetrapipe.pipeline.runner import EXIT_OK

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - 127.0.0.1 only
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def status_code(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def announced(proc: subprocess.Popen[bytes]) -> str:
    """The log line naming the metrics address (a warning, e.g. no CIDR configured, may come first)."""
    assert proc.stderr is not None
    for _ in range(5):
        line = proc.stderr.readline().decode()
        if "127.0.0.1:" in line or not line:
            return line
    return line


def test_a_running_tetrapipe_serves_metrics_and_probes(tmp_path: Path) -> None:
    """The issue's check: `curl localhost:PORT/metrics` shows the metrics during a run."""
    events = list(generate(3000, seed=3))
    proc = subprocess.Popen([sys.executable, "-m", "tetrapipe.cli.main", "run", "--metrics-port", "0",
                             "--metrics-address", "127.0.0.1", "--dead-letter", str(tmp_path / "dlq")],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdin is not None and proc.stderr is not None
    try:
        line = announced(proc)
        port = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert port, f"no metrics address announced: {line!r}"
        base = f"http://127.0.0.1:{port[1]}"
        proc.stdin.write(b"\n".join(events[:2000]) + b"\n{broken\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            metrics = scrape(base + "/metrics")
            # The stdout write and the dead-letter write of a group complete concurrently: wait for both.
            if metrics.get(("tetrapipe_events_sent_total", (("sink", "stdout"),))) == 2000 and metrics.get(
                    ("tetrapipe_records_dead_lettered_total", (("reason", "invalid_json"),))) == 1:
                break
            time.sleep(0.1)
        assert metrics[("tetrapipe_records_received_total", (("source", "stdin"),))] == 2001
        assert metrics[("tetrapipe_events_sent_total", (("sink", "stdout"),))] == 2000
        assert metrics[("tetrapipe_records_dead_lettered_total", (("reason", "invalid_json"),))] == 1
        assert sum(v for (name, _), v in metrics.items() if name == "tetrapipe_category_events_sent_total") >= 2000
        assert metrics[("tetrapipe_batch_latency_seconds_count", ())] >= 1
        assert status_code(base + "/livez") == 200 and status_code(base + "/readyz") == 200
        proc.stdin.write(b"\n".join(events[2000:]) + b"\n")
        proc.stdin.close()
        assert proc.wait(30) == 0
        logs = [orjson.loads(line) for line in proc.stderr.read().splitlines()]
        assert next(r for r in logs if r["message"] == "run summary")["records_read"] == 3001
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


async def test_consumer_lag_is_high_watermark_minus_committed(kafka_broker: Broker, tmp_path: Path) -> None:
    raw, group = unique_name("lag"), unique_name("g")
    await create_topic(kafka_broker.bootstrap, raw, 2)
    values = list(generate(600, seed=5))
    await produce(kafka_broker.bootstrap, raw, values)
    cfg = worker_config(tmp_path / "k.yaml", kafka_broker)
    pipeline = build_pipeline(["--config", str(cfg), "--kafka-bootstrap", kafka_broker.bootstrap,
                               "--kafka-group", group, "--kafka-topic", raw,
                               "--kafka-out-template", unique_name("o") + ".{category}", "--grace", "20"])
    pipeline.committer._interval = 3600.0  # commit only when forced: the delivered work shows as lag first
    source = pipeline.source
    task = asyncio.create_task(pipeline.run())
    try:
        async def consumed_all() -> bool:
            return pipeline.stats.received == len(values) and pipeline.stats.in_flight_events == 0

        await wait_until(consumed_all, 60, "the worker to deliver everything")
        lag = source.lag()  # type: ignore[attr-defined]
        assert set(lag) == {(raw, 0), (raw, 1)}
        assert sum(lag.values()) == len(values), "nothing committed yet: the lag is everything"
        await pipeline._commit(force=True)
        assert source.lag() == {(raw, 0): 0, (raw, 1): 0}  # type: ignore[attr-defined]
        ours = {tp.partition: offset for tp, offset in pipeline.committer.committed.items()}
        assert await committed(kafka_broker.bootstrap, group, raw, 2) == ours
        assert pipeline.stats.last_commit_time is not None
    finally:
        pipeline.request_stop()
        assert await asyncio.wait_for(task, 30) == EXIT_OK


async def test_readiness_follows_the_broker(kafka_broker: Broker, tmp_path: Path) -> None:
    """/readyz of a Kafka worker turns 503 while the brokers are gone and 200 when they are back."""
    from tetrapipe.service.metrics import registry_for
    from tetrapipe.service.status import StatusServer

    raw, group = unique_name("ready"), unique_name("g")
    await create_topic(kafka_broker.bootstrap, raw, 1)
    await produce(kafka_broker.bootstrap, raw, list(generate(50, seed=1)))
    cfg = worker_config(tmp_path / "k.yaml", kafka_broker)
    pipeline = build_pipeline(["--config", str(cfg), "--kafka-bootstrap", kafka_broker.bootstrap,
                               "--kafka-group", group, "--kafka-topic", raw,
                               "--kafka-out-template", unique_name("o") + ".{category}", "--grace", "10"],
                              probe_interval=0.3)
    server = StatusServer(registry_for(pipeline, "t"), pipeline.health, host="127.0.0.1", port=0)
    await server.start()
    url = f"http://127.0.0.1:{server.port}"
    task = asyncio.create_task(pipeline.run())

    async def readyz_is(code: int) -> bool:
        return await asyncio.to_thread(status_code, url + "/readyz") == code

    try:
        await wait_until(lambda: readyz_is(200), 60, "the worker to be ready", step=0.2)
        await kafka_broker.astop(kill=True)
        await wait_until(lambda: readyz_is(503), 30, "/readyz to report the broker gone", step=0.2)
        metrics = await asyncio.to_thread(scrape, url + "/metrics")
        assert metrics[("tetrapipe_source_up", (("source", pipeline.source.name),))] == 0
        assert await asyncio.to_thread(status_code, url + "/livez") == 200  # alive: a restart would not help
        await kafka_broker.astart()
        await wait_until(lambda: readyz_is(200), 90, "/readyz to recover with the broker", step=0.3)
        if kafka_broker.kind == "kafka":  # a broker that keeps its data and its groups over a restart
            # Events flow again: the rebalance the restart caused is over before the stop. A stop during it
            # can leave the consumer's close past the shutdown deadline (abandoned, by design, and logged).
            await produce(kafka_broker.bootstrap, raw, list(generate(10, seed=2)))
            end = (await end_offsets(kafka_broker.bootstrap, raw, 1))[0]

            async def caught_up() -> bool:
                return (await committed(kafka_broker.bootstrap, group, raw, 1))[0] >= end

            await wait_until(caught_up, 90, "the events produced after the restart to be committed")
    finally:
        pipeline.request_stop()
        await asyncio.wait_for(task, 60)
        await server.close()
