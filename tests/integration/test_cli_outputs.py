"""`tetrapipe run` as users run it, with the issues' short command lines, against real servers.

Kafka: `--kafka-bootstrap --kafka-topic --kafka-group --kafka-out-template --kafka-default-topic
--kafka-dlq`, then SIGTERM: every input message is in exactly one place (routed topics, default
topic, DLQ) and the group's offsets are committed.  OTLP: `--otlp-endpoint URL < events.jsonl`
puts every event into the collector.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
from brokers import Broker, create_topic, unique_name
from collector import Collector
from otlp_fixtures import otlp_collector  # noqa: F401 (fixture)
from test_kafka_helpers import all_committed, produce, read_all, wait_until

from tests.conftest import process_lines
from tests.support import synth

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "tests" / "data" / "docs-examples.jsonl").read_bytes()
TETRAPIPE = [sys.executable, "-m", "tetrapipe.cli.main", "run"]


async def test_kafka_short_form_routes_everything_once_and_commits(kafka_broker: Broker, processor, tmp_path):
    bootstrap = kafka_broker.bootstrap
    raw, group = unique_name("raw"), unique_name("group")
    prefix = unique_name("out")
    await create_topic(bootstrap, raw, 2)
    events = list(synth.generate(3000, seed=21)) + [b"{poison", b"[]"]
    await produce(bootstrap, raw, events)
    args = [*TETRAPIPE, "--kafka-bootstrap", bootstrap, "--kafka-topic", raw, "--kafka-group", group,
            "--kafka-out-template", prefix + ".{category}", "--kafka-default-topic", prefix + ".other",
            "--kafka-dlq", prefix + ".dlq"]
    if not kafka_broker.supports_idempotence:
        args.append("--kafka-no-idempotence")
    env = {**os.environ, "POD_CIDR": "10.244.0.0/16", "SERVICE_CIDR": "10.96.0.0/12"}
    with (tmp_path / "worker.log").open("wb") as log:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=ROOT)
    try:
        await wait_until(lambda: all_committed(bootstrap, group, raw, 2), 90, "offsets committed to the end")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 60) == 0, (tmp_path / "worker.log").read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    expected = Counter()
    for env_ in process_lines(processor, events):
        if env_.error is not None:
            expected["dlq"] += 1
        elif env_.tags.categories:
            expected.update(env_.tags.categories)
        else:
            expected["other"] += 1
    topics = [f"{prefix}.{name}" for name in expected]
    records = await read_all(bootstrap, topics)
    got = Counter(r.topic.removeprefix(prefix + ".") for r in records)
    assert got == expected
    dlq = sorted(r.value for r in records if r.topic.endswith(".dlq"))
    assert dlq == sorted([b"{poison", b"[]"])
    one = next(r for r in records if r.topic.endswith(".egress"))
    assert "egress" in orjson.loads(one.value)["tetrapipe"]["categories"]


def test_otlp_short_form_delivers_every_event(otlp_collector: Collector):  # noqa: F811
    result = subprocess.run([*TETRAPIPE, "--otlp-endpoint", otlp_collector.http_endpoint], input=DOCS,
                            capture_output=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert result.stdout == b""  # stdout is the default output only when no other sink is given
    otlp_collector.wait_for_count(54, timeout=30)
    records = otlp_collector.received_log_records()
    assert len(records) == 54
    assert {r.attributes["tetragon.event_type"] for r in records} >= {"process_exec", "process_kprobe"}
