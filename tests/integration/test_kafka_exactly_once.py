"""Exactly-once mode (kafka.exactly_once) against a real broker: kills, SIGTERM, a broker restart, a takeover, refusals.

Inputs are produced with partition = seq % P and header `seq` (forwarded to
every output and dead-letter record); every 499th input is not JSON (poison:
it goes to the dead-letter topic).  "Exactly once" is checked with a
`read_committed` consumer: every seq is in the outputs, and no (output
topic, seq) appears twice.  A `read_uncommitted` consumer of the same topics
must see more records — the aborted transactions' — which proves the
transactions did the work (not luck in the timing of a kill).  A worker is
stopped mid-transaction deterministically: `--stall-after-writes N` makes
its sink hold the (N+1)th write after producing it, so that transaction
stays open with records in it.  Transactions need Apache Kafka
(TETRAPIPE_TEST_BROKER=kafka); on Tansu only the refusal tests run.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from brokers import Broker, create_topic, unique_name
from test_kafka_helpers import SEQ, all_committed, header, produce, wait_until, worker_config
from test_kafka_worker import PARTITIONS, Worker, _true, worker_args

from tests.support.synth import generate

TETRAPIPE = [sys.executable, "-m", "tetrapipe.cli.main", "run"]

pytestmark = pytest.mark.integration
POISON_EVERY = 499


def needs_transactions(broker: Broker) -> None:
    if broker.kind == "tansu":
        pytest.skip("Tansu has no transactions (no transactional InitProducerId): exactly once needs Apache Kafka "
                    "(TETRAPIPE_TEST_BROKER=kafka)")


def eos_config(path: Path, broker: Broker, transactional_id: str, **transactions: Any) -> Path:
    worker_config(path, broker)
    data = yaml.safe_load(path.read_text())
    data["kafka"]["exactly_once"] = True
    data["kafka"]["transactions"] = {"transactional_id": transactional_id, **transactions}
    path.write_text(yaml.safe_dump(data))
    return path


async def produce_stream(broker: Broker, raw: str, first_seq: int, count: int) -> None:
    values = [b'{"process_exec": ' if (first_seq + i) % POISON_EVERY == 0 else v
              for i, v in enumerate(generate(count, seed=first_seq + 1))]
    keys = [f"node-{i % 13}".encode() for i in range(count)]
    await produce(broker.bootstrap, raw, values, keys=keys, first_seq=first_seq,
                  partition_of=lambda i: (first_seq + i) % PARTITIONS)


async def read_outputs(bootstrap: str, topics: list[str], isolation: str) -> list[ConsumerRecord]:
    """Every record of `topics` a consumer with `isolation` sees now (up to the end offsets it is given)."""
    async with AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                isolation_level=isolation, max_partition_fetch_bytes=4 << 20) as consumer:
        tps = []
        for topic in topics:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - test helper: refresh now
            tps += [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)  # the last stable offset for read_committed
        records: list[ConsumerRecord] = []
        for _ in range(10_000):
            if all([await consumer.position(tp) >= end[tp] for tp in tps]):
                return records
            for batch in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                records.extend(batch)
        raise AssertionError("read_outputs: too many polls")


async def no_open_transaction(bootstrap: str, topics: list[str]) -> bool:
    """True when every partition's last stable offset equals its end: no transaction is open on them."""
    ends = {}
    for isolation in ("read_committed", "read_uncommitted"):
        async with AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, isolation_level=isolation) as c:
            await c._client.force_metadata_update()  # noqa: SLF001 - test helper: refresh now
            tps = [TopicPartition(t, p) for t in topics for p in sorted(c.partitions_for_topic(t) or ())]
            ends[isolation] = await c.end_offsets(tps)
    return ends["read_committed"] == ends["read_uncommitted"]


class Names(NamedTuple):
    """One test's consumer group, output topic prefix and input topic (unique per test)."""

    group: str
    prefix: str
    raw: str


async def input_topic(broker: Broker, total: int = 0) -> Names:
    """Fresh names, the input topic created, and `total` inputs produced into it (0: produce later)."""
    names = Names(unique_name("g"), unique_name("out"), unique_name("in"))
    await create_topic(broker.bootstrap, names.raw, PARTITIONS)
    if total:
        await produce_stream(broker, names.raw, 0, total)
    return names


def eos_args(broker: Broker, tmp_path: Path, names: Names, name: str, **transactions: Any) -> list[str]:
    """A worker's arguments with its own exactly-once config file and a unique transactional id."""
    config = eos_config(tmp_path / f"{name}.yaml", broker, unique_name(name), **transactions)
    return worker_args(broker, config, names.raw, names.group, names.prefix)


async def commit_all_then_stop(worker: Worker, broker: Broker, names: Names, what: str) -> None:
    """Wait (bounded) until every input offset is committed, then SIGTERM: it must exit 0."""
    await wait_until(lambda: all_committed(broker.bootstrap, names.group, names.raw, PARTITIONS), 240, what)
    worker.signal(signal.SIGTERM)
    assert await worker.wait() == 0, worker.log()


def output_topics(prefix: str, groups: dict[str, str]) -> list[str]:
    return [f"{prefix}.{c}" for c in [*groups, "other", "dlq"]]


def seqs_of(records: list[ConsumerRecord]) -> Counter[tuple[str, int]]:
    return Counter((r.topic, int(header(r, SEQ) or -1)) for r in records)


async def assert_exactly_once(broker: Broker, prefix: str, groups: dict[str, str], total: int,
                              timeout_s: float = 90.0) -> tuple[int, int]:
    """Wait (bounded) until read_committed sees every seq; fail on a duplicate.  (committed, uncommitted) counts."""
    topics = output_topics(prefix, groups)
    missing: list[int] = []
    committed: list[ConsumerRecord] = []
    for _ in range(int(timeout_s / 2)):  # a dead worker's open transaction holds the LSO until it times out
        committed = await read_outputs(broker.bootstrap, topics, "read_committed")
        missing = sorted(set(range(total)) - {seq for _, seq in seqs_of(committed)})
        if not missing:
            break
        await asyncio.sleep(2)
    counts = seqs_of(committed)
    duplicated = sorted((topic, seq) for (topic, seq), n in counts.items() if n > 1)
    assert not duplicated, f"{len(duplicated)} (topic, seq) delivered more than once: {duplicated[:20]}"
    assert not missing, f"lost {len(missing)} events for a read_committed reader: seqs {missing[:20]}"
    poison = {seq for (topic, seq) in counts if topic.endswith(".dlq")}
    assert poison == set(range(0, total, POISON_EVERY)), "poison records are not in the dead-letter topic once"
    uncommitted = await read_outputs(broker.bootstrap, topics, "read_uncommitted")
    return len(committed), len(uncommitted)


async def test_sigkill_mid_transaction_and_restart_exactly_once(kafka_broker: Broker, tmp_path: Path,
                                                                tagger) -> None:
    needs_transactions(kafka_broker)
    total = 20_000
    names = await input_topic(kafka_broker, total)
    args = eos_args(kafka_broker, tmp_path, names, "txn")
    first = Worker(tmp_path, "first", [*args, "--stall-after-writes", "4"])
    try:
        await wait_until(lambda: _true(first.status().get("stalled", False)), 120, "the worker to stall")
        first.signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
    finally:
        first.kill()
    second = Worker(tmp_path, "second", args)  # the same transactional id: fences the first, aborts its transaction
    try:
        await commit_all_then_stop(second, kafka_broker, names, "the restarted worker to commit everything")
    finally:
        second.kill()
    committed, uncommitted = await assert_exactly_once(kafka_broker, names.prefix, tagger.groups, total)
    print(f"\nSIGKILL: {committed} committed output records; {uncommitted - committed} aborted ones in the log; "
          f"restarted worker: {second.status()}")
    assert uncommitted > committed, "no aborted records: the kill did not land inside a transaction"


async def test_sigterm_with_a_transaction_held_past_the_grace_period_aborts_it(kafka_broker: Broker, tmp_path: Path,
                                                                               tagger) -> None:
    """SIGTERM: the open transaction cannot commit within --grace, so it is aborted (exit 3); a restart redoes it."""
    needs_transactions(kafka_broker)
    total = 8_000
    names = await input_topic(kafka_broker, total)
    args = eos_args(kafka_broker, tmp_path, names, "txn", timeout_ms=300_000)
    held = Worker(tmp_path, "held", [*args, "--grace", "2", "--stall-after-writes", "1"])
    try:
        await wait_until(lambda: _true(held.status().get("stalled", False)), 120, "the worker to hold a transaction")
        held.signal(signal.SIGTERM)
        assert await held.wait() == 3, held.log()  # EXIT_DRAIN_INCOMPLETE: the held group was not delivered
    finally:
        held.kill()
    # Aborted by the worker itself, not left to the broker's timeout (5 minutes here): no transaction stays open.
    topics = output_topics(names.prefix, tagger.groups)
    await wait_until(lambda: no_open_transaction(kafka_broker.bootstrap, topics), 60,
                     "the last stable offsets to reach the ends (the held transaction aborted)")
    committed_now = await read_outputs(kafka_broker.bootstrap, topics, "read_committed")
    assert len(await read_outputs(kafka_broker.bootstrap, topics, "read_uncommitted")) > len(committed_now)
    again = Worker(tmp_path, "again", args)
    try:
        await commit_all_then_stop(again, kafka_broker, names, "the restarted worker to commit everything")
    finally:
        again.kill()
    await assert_exactly_once(kafka_broker, names.prefix, tagger.groups, total)


async def test_broker_sigkill_and_restart_exactly_once(kafka_broker: Broker, tmp_path: Path, tagger) -> None:
    needs_transactions(kafka_broker)
    total = 20_000
    names = await input_topic(kafka_broker, total)
    # The held transaction outlives max_seconds (so it is aborted and redone), never the producer's timeout.
    args = eos_args(kafka_broker, tmp_path, names, "txn", max_seconds=3.0, timeout_ms=300_000)
    worker = Worker(tmp_path, "w", [*args, "--stall-after-writes", "4", "--stall-seconds", "6"])
    try:
        await wait_until(lambda: _true(worker.status().get("stalled", False)), 120, "the worker to hold a transaction")
        await kafka_broker.arestart(kill=True)
        await commit_all_then_stop(worker, kafka_broker, names, "the worker to commit everything after the restart")
    finally:
        worker.kill()
    committed, uncommitted = await assert_exactly_once(kafka_broker, names.prefix, tagger.groups, total)
    status = worker.status()
    print(f"\nbroker SIGKILL: {committed} committed, {uncommitted - committed} aborted records; worker: {status}")
    assert status["transactions"]["aborted"] >= 1
    assert uncommitted > committed, "no aborted records in the log"


async def test_two_workers_one_killed_survivor_takes_over_exactly_once(kafka_broker: Broker, tmp_path: Path,
                                                                      tagger) -> None:
    needs_transactions(kafka_broker)
    total = 20_000
    names = await input_topic(kafka_broker)
    # Distinct ids (two workers at once); a short transaction timeout: the killed one's is aborted by the broker.
    short = {"max_seconds": 4.0, "timeout_ms": 8_000}
    a = Worker(tmp_path, "a", [*eos_args(kafka_broker, tmp_path, names, "a", **short), "--stall-after-writes", "2"])
    b = Worker(tmp_path, "b", eos_args(kafka_broker, tmp_path, names, "b", **short))
    try:
        def split() -> bool:
            owned_a, owned_b = set(a.status()["owned"]), set(b.status()["owned"])
            return bool(owned_a) and bool(owned_b) and len(owned_a | owned_b) == PARTITIONS

        await wait_until(lambda: _true(split()), 90, "both workers to own partitions")
        await produce_stream(kafka_broker, names.raw, 0, total)
        await wait_until(lambda: _true(a.status().get("stalled", False)), 120, "worker a to hold a transaction")
        a.signal(signal.SIGKILL)
        assert await a.wait() == -signal.SIGKILL
        await wait_until(lambda: _true(len(b.status()["owned"]) == PARTITIONS), 90, "the survivor to take over")
        await commit_all_then_stop(b, kafka_broker, names, "the survivor to commit everything")
    finally:
        a.kill()
        b.kill()
    committed, uncommitted = await assert_exactly_once(kafka_broker, names.prefix, tagger.groups, total)
    print(f"\ntakeover: {committed} committed, {uncommitted - committed} aborted records; survivor: {b.status()}")
    assert uncommitted > committed, "no aborted records: worker a's open transaction left nothing behind"


def run_refused(*args: str) -> str:
    """`tetrapipe run --kafka-exactly-once ARGS`: it must exit 2 at startup; its stderr."""
    done = subprocess.run([*TETRAPIPE, "--kafka-exactly-once", *args], stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=120, check=False)
    err = done.stderr.decode(errors="replace")
    assert done.returncode == 2, err
    assert "cannot be kept" in err and "at-least-once" in err, err
    return err


def test_refused_with_another_output() -> None:
    """No broker needed: the run's outputs alone make exactly once impossible (stdout asked for with --format)."""
    err = run_refused("--kafka-bootstrap", "127.0.0.1:9", "--kafka-topic", "in", "--kafka-out-template",
                      "out.{category}", "--format", "json")
    assert "other than Kafka" in err and "stdout" in err, err


def test_refused_with_a_dead_letter_file(tmp_path: Path) -> None:
    err = run_refused("--kafka-bootstrap", "127.0.0.1:9", "--kafka-topic", "in", "--kafka-out-template",
                      "out.{category}", "--dead-letter", str(tmp_path / "dlq.jsonl"))
    assert "is not a Kafka topic" in err and "--kafka-dlq" in err, err


def test_refused_with_input_not_from_kafka(tmp_path: Path) -> None:
    err = run_refused("--kafka-bootstrap", "127.0.0.1:9", "--kafka-out-template", "out.{category}")
    assert "input is not a Kafka topic" in err, err


def test_refused_on_a_broker_without_transactions(kafka_broker: Broker) -> None:
    if kafka_broker.kind != "tansu":
        pytest.skip(f"the {kafka_broker.kind} broker has transactions; this refusal is tested on Tansu")
    err = run_refused("--kafka-bootstrap", kafka_broker.bootstrap, "--kafka-topic", unique_name("in"),
                      "--kafka-out-template", unique_name("out") + ".{category}")
    assert "transactional producer" in err and "Apache Kafka" in err, err
