"""Worker processes against a real broker: SIGKILL and restart, two workers in one group, SIGTERM drain.

Inputs are produced with partition = seq % P in one ordered stream, so a
sequence number maps to its input offset (seq // P): that is how the kill
test checks that only *uncommitted* offsets were redone.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from brokers import Broker, create_topic, unique_name
from test_kafka_helpers import SEQ, all_committed, committed, header, produce, read_all, wait_until, worker_config

from tests.support.synth import generate

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("kafka_worker.py")
PARTITIONS = 4


class Worker:
    """One `kafka_worker.py` process; its status file is read to watch it."""

    def __init__(self, tmp: Path, name: str, args: list[str]) -> None:
        self.status_path = tmp / f"{name}.status.json"
        self.log_path = tmp / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([sys.executable, str(WORKER), *args, "--status", str(self.status_path)],
                                            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"owned": [], "received": 0}

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    async def wait(self, timeout_s: float = 60.0) -> int:
        code = await asyncio.to_thread(self.process.wait, timeout_s)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def worker_args(broker: Broker, cfg: Path, raw: str, group: str, prefix: str) -> list[str]:
    return ["--config", str(cfg), "--kafka-bootstrap", broker.bootstrap, "--kafka-topic", raw, "--kafka-group", group,
            "--kafka-out-template", prefix + ".{category}", "--kafka-default-topic", prefix + ".other",
            "--kafka-dlq", prefix + ".dlq", "--grace", "20", "--max-in-flight", "4"]


async def setup_stream(broker: Broker, count: int) -> str:
    raw = unique_name("in")
    await create_topic(broker.bootstrap, raw, PARTITIONS)
    await produce_more(broker, raw, 0, count)
    return raw


async def output_seqs(broker: Broker, prefixes: list[str], tagger_groups: dict[str, str]) -> Counter[tuple[str, int]]:
    """How often each (output topic without its prefix, input seq) was written under `prefixes`."""
    topics = [f"{prefix}.{c}" for prefix in prefixes for c in [*tagger_groups, "other", "dlq"]]
    return Counter((r.topic.split(".", 1)[1], int(header(r, SEQ)))
                   for r in await read_all(broker.bootstrap, topics, timeout_s=120))


async def broker_shortfall(broker: Broker, acknowledged: dict[str, int]) -> dict[str, tuple[int, int]]:
    """{topic: (records the worker had acknowledged, records the broker holds)} where it holds fewer."""
    held = Counter(r.topic for r in await read_all(broker.bootstrap, list(acknowledged), timeout_s=120))
    return {topic: (n, held[topic]) for topic, n in acknowledged.items() if held[topic] < n}


async def test_sigkill_mid_stream_and_restart_loses_nothing(kafka_broker: Broker, tmp_path: Path, tagger) -> None:
    total = 50_000
    group, prefix, prefix_after = unique_name("g"), unique_name("out"), unique_name("out")
    raw = await setup_stream(kafka_broker, total)
    config = worker_config(tmp_path / "k.yaml", kafka_broker)

    # Each worker writes its own output topics, so what each had acknowledged can be checked against the broker.
    first = Worker(tmp_path, "first", worker_args(kafka_broker, config, raw, group, prefix))
    try:
        await wait_until(lambda: _true(first.status()["received"] >= 15_000), 120, "the first worker to get going")
        first.signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
    finally:
        first.kill()
    # Requests the worker sent just before it died may still land: wait until commits and outputs stop moving.
    at_kill, before = await settled_view(kafka_broker, group, raw, prefix, tagger.groups)
    assert sum(at_kill.values()) < total, "the kill came too late to test anything"
    # Delivered by the killed worker but not committed: what the restart must redo.
    window = {seq for seq in before if seq // PARTITIONS >= at_kill[seq % PARTITIONS]}

    second = Worker(tmp_path, "second", worker_args(kafka_broker, config, raw, group, prefix_after))
    try:
        await wait_until(lambda: all_committed(kafka_broker.bootstrap, group, raw, PARTITIONS), 180,
                         "the restarted worker to commit everything")
        second.signal(signal.SIGTERM)
        assert await second.wait() == 0, second.log()
    finally:
        second.kill()
    restarted = second.status()

    outputs = await output_seqs(kafka_broker, [prefix, prefix_after], tagger.groups)
    missing = sorted(set(range(total)) - {seq for _, seq in outputs})
    if missing:
        # The status file holds what the worker's sink had acknowledged (the killed one's up to 0.2 s stale,
        # so an undercount): a broker holding fewer records than that lost acknowledged writes itself.
        shortfall = await broker_shortfall(kafka_broker, {**first.status()["messages"], **restarted["messages"]})
        if shortfall:
            pytest.xfail(f"the {kafka_broker.kind} broker holds fewer records than it acknowledged to the workers "
                         f"(topic: (acknowledged, held)): {shortfall}; {len(missing)} events missing")
    if missing:
        pytest.fail(f"lost {len(missing)} events: (partition, offset) "
                    f"{[(q % PARTITIONS, q // PARTITIONS) for q in missing[:40]]}; committed at the kill "
                    f"{at_kill}; {len([q for q in missing if q in before])} of them were out before the "
                    f"restart; the restarted worker: {restarted}; its log: {second.log()}")
    duplicated = {seq for (_, seq), n in outputs.items() if n > 1}
    print(f"\nSIGKILL test: {len(before)} events delivered before the kill, {sum(at_kill.values())} committed; "
          f"{len(duplicated)} duplicated after the restart (uncommitted window {len(window)}); "
          f"restarted worker: {restarted}")
    # Small messages on failure: pytest prints whole sets when it runs under CI (no truncation).
    not_redone = sorted(window - duplicated)
    if not_redone:
        pytest.fail(f"{len(not_redone)} events delivered but not committed before the kill were not redone: "
                    f"seqs {not_redone[:20]}")
    redone_committed = {seq for seq in duplicated if seq // PARTITIONS < at_kill[seq % PARTITIONS]}
    if redone_committed:
        pytest.fail(f"{len(redone_committed)} events at committed offsets were sent again: "
                    f"seqs {sorted(redone_committed)[:20]}")
    assert len(window) <= len(before) - sum(at_kill.values())


async def settled_view(broker: Broker, group: str, raw: str, prefix: str,
                       tagger_groups: dict[str, str]) -> tuple[dict[int, int], set[int]]:
    """The group's commits and the delivered sequence numbers, once two readings 1 s apart agree (≤ 20 s)."""
    previous: tuple[dict[int, int], set[int]] | None = None
    for _ in range(20):
        current = (await committed(broker.bootstrap, group, raw, PARTITIONS),
                   {seq for _, seq in await output_seqs(broker, [prefix], tagger_groups)})
        if current == previous:
            return current
        previous = current
        await asyncio.sleep(1.0)
    raise AssertionError("the broker's view kept changing 20 s after the worker died")

async def test_two_workers_split_partitions_and_one_takes_over_after_sigterm(
        kafka_broker: Broker, tmp_path: Path, tagger) -> None:
    group, prefix = unique_name("g"), unique_name("out")
    raw = unique_name("in")
    await create_topic(kafka_broker.bootstrap, raw, PARTITIONS)
    args = worker_args(kafka_broker, worker_config(tmp_path / "k.yaml", kafka_broker), raw, group, prefix)
    a, b = Worker(tmp_path, "a", args), Worker(tmp_path, "b", args)
    try:
        def split() -> bool:
            owned_a, owned_b = set(a.status()["owned"]), set(b.status()["owned"])
            return bool(owned_a) and bool(owned_b) and not owned_a & owned_b and len(owned_a | owned_b) == PARTITIONS

        await wait_until(lambda: _true(split()), 90, "both workers to own partitions")
        await produce_more(kafka_broker, raw, 0, 20_000)
        await wait_until(lambda: _true(a.status()["received"] > 0 and b.status()["received"] > 0), 60,
                         "both workers to process events")
        owned_by_a = a.status()["owned"]
        a.signal(signal.SIGTERM)
        assert await a.wait() == 0, a.log()
        after_a = await committed(kafka_broker.bootstrap, group, raw, PARTITIONS)
        assert all(after_a[int(tp.rsplit(":", 1)[1])] > 0 for tp in owned_by_a), "SIGTERM drain committed nothing"

        await produce_more(kafka_broker, raw, 20_000, 10_000)
        await wait_until(lambda: _true(len(b.status()["owned"]) == PARTITIONS), 90, "the survivor to take over")
        await wait_until(lambda: all_committed(kafka_broker.bootstrap, group, raw, PARTITIONS), 120,
                         "the survivor to commit everything")
        b.signal(signal.SIGTERM)
        assert await b.wait() == 0, b.log()
    finally:
        a.kill()
        b.kill()
    seqs = {seq for _, seq in await output_seqs(kafka_broker, [prefix], tagger.groups)}
    missing = sorted(set(range(30_000)) - seqs)
    if missing:
        pytest.fail(f"lost {len(missing)} events: seqs {missing[:20]}")


async def produce_more(broker: Broker, raw: str, first_seq: int, count: int) -> None:
    values = list(generate(count, seed=first_seq + 1))
    keys = [f"node-{i % 13}".encode() for i in range(count)]
    await produce(broker.bootstrap, raw, values, keys=keys, first_seq=first_seq,
                  partition_of=lambda i: (first_seq + i) % PARTITIONS)


async def _true(value: bool) -> bool:
    return value


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers read KAFKA_* from the environment: keep the test's own settings from leaking in."""
    for name in list(os.environ):
        if name.startswith("KAFKA_") and name != "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)
