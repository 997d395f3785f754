"""Events too large for one Kafka message never stop the stream: they are dead-lettered, and
dead-letter records too large for one message are cut to fit and marked — against a real broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from brokers import Broker, create_topic, unique_name
from kafka_worker import build_pipeline
from test_kafka_helpers import all_committed, header, produce, read_all, wait_until, worker_config

from tests.support.events import exec_event
from tests.support.synth import generate
from tetrapipe.pipeline.runner import EXIT_OK

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


async def test_an_event_over_max_request_size_goes_to_the_dead_letter_topic(kafka_broker: Broker,
                                                                            tmp_path: Path) -> None:
    raw, group, prefix = unique_name("big"), unique_name("g"), unique_name("o")
    await create_topic(kafka_broker.bootstrap, raw, 1)
    big = orjson.dumps(exec_event("/tmp/payload", "A" * 60_000))  # fits the input topic, not the sink's limit
    values = [*generate(200, seed=9), big, *generate(200, seed=10)]
    await produce(kafka_broker.bootstrap, raw, values)
    cfg = worker_config(tmp_path / "k.yaml", kafka_broker, max_request_size=30_000, batch_size=16_384)
    pipeline = build_pipeline(["--config", str(cfg), "--kafka-bootstrap", kafka_broker.bootstrap,
                               "--kafka-group", group, "--kafka-topic", raw, "--kafka-dlq", prefix + ".dlq",
                               "--kafka-out-template", prefix + ".{category}", "--kafka-default-topic",
                               prefix + ".other", "--grace", "20"])
    task = asyncio.create_task(pipeline.run())
    try:
        await wait_until(lambda: all_committed(kafka_broker.bootstrap, group, raw, 1), 60, "everything committed")
    finally:
        pipeline.request_stop()
        assert await asyncio.wait_for(task, 30) == EXIT_OK
    sink = pipeline.sinks[0]
    assert sink.too_large == 1  # type: ignore[attr-defined]
    topics = [*sink.router.topics(), prefix + ".dlq"]  # type: ignore[attr-defined]
    records = await read_all(kafka_broker.bootstrap, topics)
    dlq = [r for r in records if r.topic == prefix + ".dlq"]
    assert [r.value for r in dlq] == [big]  # unchanged input bytes
    assert header(dlq[0], "tetrapipe-error").startswith(b"too_large_for_kafka: ")
    assert header(dlq[0], "tetrapipe-source-offset") == b"200"
    assert len(records) - len(dlq) >= 400  # every other event came out (some to several category topics)
    assert sink.routed + sink.defaulted + sink.dropped_untagged == 400  # type: ignore[attr-defined]


async def test_a_dead_letter_record_larger_than_a_message_is_cut_and_marked(kafka_broker: Broker) -> None:
    prefix = unique_name("cut")
    huge = b"{" + b"x" * 3_000_000  # a 3 MB malformed line on stdin
    args = [sys.executable, "-m", "tetrapipe.cli.main", "run", "--kafka-bootstrap", kafka_broker.bootstrap,
            "--kafka-out-template", prefix + ".{category}", "--kafka-dlq", prefix + ".dlq"]
    if not kafka_broker.supports_idempotence:
        args.append("--kafka-no-idempotence")
    stream = b"\n".join([*generate(50, seed=4), huge, *generate(50, seed=5)]) + b"\n"
    result = await asyncio.to_thread(subprocess.run, args, input=stream, capture_output=True, timeout=120, cwd=ROOT,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    logs = [orjson.loads(line) for line in result.stderr.splitlines()]
    assert any("cut to" in r["message"] and r["level"] == "error" for r in logs)
    dlq = await read_all(kafka_broker.bootstrap, [prefix + ".dlq"])
    assert len(dlq) == 1
    assert header(dlq[0], "tetrapipe-truncated-from") == b"3000001"
    assert huge.startswith(dlq[0].value) and 900_000 < len(dlq[0].value) < 1 << 20
    assert next(r for r in logs if r["message"] == "run summary")["dead_lettered"] == 1
