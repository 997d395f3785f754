"""`tetrapipe run --workers 2` with a Kafka source, against the real broker: two group members in one process tree.

Both members get partitions (each member's /metrics, on `--metrics-port` P and
P + 1, reports lag for the partitions it owns: disjoint, together all of
them), every input record reaches the output topics, the input offsets are
all committed, and SIGTERM to the parent drains both members (status 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from brokers import Broker, create_topic, unique_name
from test_kafka_helpers import all_committed, produce, read_all, wait_until, worker_config

from tests.support.synth import generate

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 4
LAG = re.compile(r'^tetrapipe_kafka_consumer_lag\{partition="(\d+)",topic="([^"]+)"\}', re.MULTILINE)


def two_free_ports() -> int:
    """A port P such that P and P + 1 are both free now (bounded search)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise AssertionError("no two consecutive free ports")


def owned(port: int, topic: str) -> set[int]:
    """The partitions of `topic` a member reports lag for (those it owns); empty while it cannot answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:  # noqa: S310
            text = answer.read().decode()
    except OSError:
        return set()
    return {int(p) for p, t in LAG.findall(text) if t == topic}


async def output_topics(bootstrap: str, prefix: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if t.startswith(prefix + "."))
    finally:
        await admin.close()


async def test_two_members_share_the_partitions_and_deliver_every_record(kafka_broker: Broker,
                                                                        tmp_path: Path) -> None:
    raw, group, out = unique_name("wk-in"), unique_name("wk-g"), unique_name("wk-out")
    await create_topic(kafka_broker.bootstrap, raw, PARTITIONS)
    values = list(generate(2000, seed=17))
    await produce(kafka_broker.bootstrap, raw, values)
    config = worker_config(tmp_path / "k.yaml", kafka_broker)
    port = two_free_ports()
    log = (tmp_path / "stderr.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tetrapipe.cli.main", "run", "--config", str(config), "--kafka-bootstrap",
         kafka_broker.bootstrap, "--kafka-group", group, "--kafka-topic", raw, "--kafka-out-template",
         out + ".{category}", "--kafka-default-topic", out + ".other", "--kafka-dlq", out + ".dlq",
         "--metrics-port", str(port), "--metrics-address", "127.0.0.1", "--workers", "2", "--grace", "20"],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
        env={**os.environ, "TETRAPIPE_LOG_FORMAT": "json"})
    try:
        async def everything_committed() -> bool:
            assert proc.poll() is None, (tmp_path / "stderr.log").read_text()[-3000:]
            return await all_committed(kafka_broker.bootstrap, group, raw, PARTITIONS)

        await wait_until(everything_committed, 120, "every input offset committed")
        mine: dict[int, set[int]] = {}

        async def both_own_some() -> bool:
            mine.update({member: await asyncio.to_thread(owned, port + member, raw) for member in (0, 1)})
            return all(mine.values())

        try:
            await wait_until(both_own_some, 60, "both members to report their partitions")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; partitions reported per member: {mine}") from None
        assert not mine[0] & mine[1]
        assert mine[0] | mine[1] == set(range(PARTITIONS))
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 60) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)
        log.close()
    records = await read_all(kafka_broker.bootstrap, await output_topics(kafka_broker.bootstrap, out))
    delivered = {r.value[:r.value.rfind(b',"tetrapipe":')] for r in records if r.topic != out + ".dlq"}
    assert delivered == {v[:-1] for v in values}  # every record, each enriched from its own bytes
