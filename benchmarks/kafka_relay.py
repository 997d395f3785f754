"""Kafka → tetrapipe → Kafka against a naive aiokafka relay, same broker, same events, in one run.

Usage:  .venv/bin/python benchmarks/kafka_relay.py [--events 60000] [--rounds 3] [--partitions 3]
        TETRAPIPE_TEST_BROKER=kafka .venv/bin/python benchmarks/kafka_relay.py   # Apache Kafka (fetch-jars.sh first)
        KAFKA_BOOTSTRAP_SERVERS=host:9092 .venv/bin/python benchmarks/kafka_relay.py  # an existing cluster

The broker is started as the integration tests start it (tests/integration/brokers.py).  The input
topic is filled once with `--events` synthetic 1.5 KB Tetragon events (tests.support.synth).  Each
round runs, in turn and each in a fresh process with a fresh consumer group and fresh output topics:
  - naive:     consume a batch (getmany), `send` each message (acks=all), gather the futures, commit;
               no parsing;
  - tetrapipe: the Kafka source, the full pipeline (decode, classify, tag, summaries, enrich) and the
               routed Kafka sink (`out.{category}` + default topic), acks=all.
Throughput = events / (time of the last acknowledgement − time the first batch arrived), so group
join time is excluded from both.  Prints per-round events/s, the medians and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "integration")]

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from brokers import broker_from_env, create_topic, unique_name  # noqa: E402

from tests.support import synth  # noqa: E402


async def fill(bootstrap: str, topic: str, events: int, partitions: int) -> None:
    await create_topic(bootstrap, topic, partitions)
    async with AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                max_batch_size=512 << 10) as producer:
        futures = []
        for i, line in enumerate(synth.generate(events, seed=5)):
            futures.append(await producer.send(topic, line, key=f"node-{i % 13}".encode()))
        await asyncio.gather(*futures)


async def naive(opts: dict[str, Any]) -> dict[str, float]:
    out = opts["prefix"] + ".relay"
    await create_topic(opts["bootstrap"], out, opts["partitions"])
    consumer = AIOKafkaConsumer(opts["topic"], bootstrap_servers=opts["bootstrap"], group_id=opts["prefix"],
                                enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=1000)
    producer = AIOKafkaProducer(bootstrap_servers=opts["bootstrap"], acks="all",
                                enable_idempotence=opts["idempotence"], compression_type=opts["compression"])
    await consumer.start()
    await producer.start()
    done, first = 0, 0.0
    try:
        while done < opts["events"]:
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            if not batches:
                continue
            first = first or time.perf_counter()
            futures = [await producer.send(out, r.value, key=r.key) for records in batches.values() for r in records]
            await asyncio.gather(*futures)
            done += len(futures)
            last = time.perf_counter()
            await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()
    return {"events": done, "seconds": last - first}


async def tetrapipe(opts: dict[str, Any]) -> dict[str, float]:
    import msgspec

    from pipeline.cli import tune_gc
    from pipeline.config import Config, build_classifier, build_tagger
    from pipeline.process import Processor
    from pipeline.runner import Pipeline
    from sinks.kafka_cli import KafkaSection, add_kafka_arguments, build_kafka

    tagger = build_tagger(Config().library)
    processor = Processor(tagger, build_classifier(Config().egress, ["10.244.0.0/16"], ["10.96.0.0/12"]))
    flags = argparse.ArgumentParser()
    add_kafka_arguments(flags)
    args = flags.parse_args(["--kafka-bootstrap", opts["bootstrap"], "--kafka-topic", opts["topic"],
                                "--kafka-group", opts["prefix"], "--kafka-out-template", opts["prefix"] + ".{category}",
                                "--kafka-default-topic", opts["prefix"] + ".other"])
    sink = {"idempotence": opts["idempotence"], "compression": opts["compression"] or "none",
            "topics": {"partitions": opts["partitions"]}}
    section = msgspec.convert({"sink": sink}, KafkaSection)
    source, sinks, _ = build_kafka(args, section, groups=tagger.groups, environ={})
    pipeline = Pipeline(source, processor, sinks)
    sink: Any = sinks[0]
    tune_gc()
    task = asyncio.create_task(pipeline.run())
    first = last = 0.0
    for _ in range(600_000):  # ~10 min at 1 ms per check, at most
        if task.done():
            break
        if not first and pipeline.stats.received:
            first = time.perf_counter()
        if sink.routed + sink.defaulted + sink.dropped_untagged >= opts["events"]:
            last = time.perf_counter()
            break
        await asyncio.sleep(0.001)
    pipeline.request_stop()
    await task
    return {"events": sink.routed + sink.defaulted, "seconds": last - first}


def run_role(role: str, opts: dict[str, Any]) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--role", role, "--opts", json.dumps(opts)],
                          capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{role} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--compression", choices=("none", "gzip", "snappy", "lz4", "zstd"), default="none",
                        help="output compression, the same for both")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--opts", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        role = {"naive": naive, "tetrapipe": tetrapipe}[args.role]
        print(json.dumps(asyncio.run(role(json.loads(args.opts)))))
        return 0

    broker = broker_from_env()
    broker.start()
    try:
        topic = unique_name("bench-in")
        asyncio.run(fill(broker.bootstrap, topic, args.events, args.partitions))
        rates: dict[str, list[float]] = {"naive": [], "tetrapipe": []}
        for round_no in range(args.rounds):
            for role in ("naive", "tetrapipe"):
                opts = {"bootstrap": broker.bootstrap, "topic": topic, "events": args.events,
                        "partitions": args.partitions, "prefix": unique_name(f"bench-{role}"),
                        "idempotence": broker.supports_idempotence,
                        "compression": None if args.compression == "none" else args.compression}
                result = run_role(role, opts)
                rate = result["events"] / result["seconds"]
                rates[role].append(rate)
                print(f"round {round_no + 1} {role:<9} {result['events']:>7.0f} events in "
                      f"{result['seconds']:6.2f}s = {rate:>9,.0f} events/s", flush=True)
        naive_rate, tp_rate = statistics.median(rates["naive"]), statistics.median(rates["tetrapipe"])
        print(f"\n{broker.kind} broker, {args.events} events of ~1.5 KB, {args.partitions} partitions, "
              f"idempotence {'on' if broker.supports_idempotence else 'off'}, compression {args.compression}")
        print(f"median naive relay: {naive_rate:,.0f} events/s")
        print(f"median tetrapipe:   {tp_rate:,.0f} events/s   ratio tetrapipe/naive = {tp_rate / naive_rate:.2f}")
    finally:
        broker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
