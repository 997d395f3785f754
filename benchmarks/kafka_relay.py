"""Kafka → tetrapipe → Kafka against a naive aiokafka relay, same broker, same events, in one run.

Usage:  .venv/bin/python benchmarks/kafka_relay.py [--events 60000] [--rounds 3] [--partitions 3]
        TETRAPIPE_TEST_BROKER=kafka .venv/bin/python benchmarks/kafka_relay.py   # Apache Kafka (fetch-jars.sh first)
        KAFKA_BOOTSTRAP_SERVERS=host:9092 .venv/bin/python benchmarks/kafka_relay.py  # an existing cluster

The broker is started as the integration tests start it (tests/integration/brokers.py), with its data
in `--broker-dir` (default /dev/shm).  The input topic is filled once with `--events` synthetic 1.5 KB
Tetragon events (tests.support.synth).  Each round runs, in turn and each in a fresh process with a
fresh consumer group and fresh output topics (deleted afterwards):
  - naive:     consume a batch (getmany), `send` each message (acks=all), gather the futures, commit;
               no parsing;
  - tetrapipe: the Kafka source, the full pipeline (decode, classify, tag, summaries, enrich) and the
               routed Kafka sink (`out.{category}` + default topic), acks=all (at-least-once);
  - exactly-once: the same with `--kafka-exactly-once` (one transaction per delivery group, offsets
               inside it; default transaction bounds); its "acknowledgement" is the transaction commit.
               Only on a broker with transactions (Apache Kafka; skipped on Tansu).
Throughput = events / (time of the last acknowledgement − time the first batch arrived), so group
join time is excluded from both.  Prints per-round events/s, each relay's CPU time (with `--workers`: the
command and its members over their whole run, start-up and group join included) and the broker's
(Linux /proc), the medians and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "integration")]

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402
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
    done, first, cpu0 = 0, 0.0, 0.0
    try:
        while done < opts["events"]:
            batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
            if not batches:
                continue
            if not first:
                first, cpu0 = time.perf_counter(), time.process_time()
            futures = [await producer.send(out, r.value, key=r.key) for records in batches.values() for r in records]
            await asyncio.gather(*futures)
            done += len(futures)
            last, cpu1 = time.perf_counter(), time.process_time()
            await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()
    return {"events": done, "seconds": last - first, "cpu": cpu1 - cpu0}


async def tetrapipe(opts: dict[str, Any]) -> dict[str, float]:
    import msgspec

    from tetrapipe.cli.main import tune_gc
    from tetrapipe.config.kafka import KafkaSection, add_kafka_arguments, build_kafka, exactly_once_options
    from tetrapipe.config.root import Config, build_classifier, build_tagger
    from tetrapipe.pipeline.processor import Processor
    from tetrapipe.pipeline.runner import Pipeline

    tagger = build_tagger(Config().library)
    processor = Processor(tagger, build_classifier(Config().egress, ["10.244.0.0/16"], ["10.96.0.0/12"]))
    flags = argparse.ArgumentParser()
    add_kafka_arguments(flags)
    args = flags.parse_args(["--kafka-bootstrap", opts["bootstrap"], "--kafka-topic", opts["topic"],
                                "--kafka-group", opts["prefix"], "--kafka-out-template", opts["prefix"] + ".{category}",
                                "--kafka-default-topic", opts["prefix"] + ".other",
                                *(["--kafka-exactly-once"] if opts.get("exactly_once") else [])])
    sink = {"idempotence": opts["idempotence"], "compression": opts["compression"] or "none",
            "topics": {"partitions": opts["partitions"]}}
    section = msgspec.convert({"sink": sink, "transactions": {"transactional_id": opts["prefix"]}}, KafkaSection)
    source, sinks, dead_letter = build_kafka(args, section, groups=tagger.groups, environ={})
    pipeline = Pipeline(source, processor, sinks, **exactly_once_options(source, sinks, dead_letter, probe=False))
    sink: Any = sinks[0]
    transaction: Any = pipeline.transaction
    tune_gc()
    task = asyncio.create_task(pipeline.run())
    first = last = cpu0 = cpu1 = 0.0
    for _ in range(600_000):  # ~10 min at 1 ms per check, at most
        if task.done():
            break
        if not first and pipeline.stats.received:
            first, cpu0 = time.perf_counter(), time.process_time()
        done = (transaction.committed_records if transaction is not None
                else sink.routed + sink.defaulted + sink.dropped_untagged)
        if done >= opts["events"]:
            last, cpu1 = time.perf_counter(), time.process_time()
            break
        await asyncio.sleep(0.001)
    pipeline.request_stop()
    await task
    events = transaction.committed_records if transaction is not None else sink.routed + sink.defaulted
    if not last:  # the run ended before relaying everything: no rate to report
        raise SystemExit(f"the pipeline ended (exit code {pipeline.exit_code}) after {events} of {opts['events']} "
                         "events")
    return {"events": events, "seconds": last - first, "cpu": cpu1 - cpu0}


async def tetrapipe_cli(opts: dict[str, Any]) -> dict[str, float]:
    """`tetrapipe run --workers N` (N group members with N > 1), the command as deployed: from the first commit
    seen to the last input offset committed (commits come every second: both sides measured the same way)."""
    from aiokafka import TopicPartition

    scratch = tempfile.TemporaryDirectory()
    config = Path(scratch.name) / "kafka.yaml"
    config.write_text(json.dumps({"kafka": {"sink": {"idempotence": opts["idempotence"], "topics": {
        "partitions": opts["partitions"]}, "compression": opts["compression"] or "none"}}}))
    cmd = [sys.executable, "-m", "tetrapipe.cli.main", "run", "--quiet", "--workers", str(opts["workers"]),
           "--config", str(config), "--kafka-bootstrap", opts["bootstrap"], "--kafka-topic", opts["topic"],
           "--kafka-group", opts["prefix"], "--kafka-out-template", opts["prefix"] + ".{category}",
           "--kafka-default-topic", opts["prefix"] + ".other", "--pod-cidr", "10.244.0.0/16",
           "--service-cidr", "10.96.0.0/12"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    tps = [TopicPartition(opts["topic"], p) for p in range(opts["partitions"])]
    first = last = 0.0
    at_first = 0
    try:
        async with AIOKafkaConsumer(bootstrap_servers=opts["bootstrap"], group_id=opts["prefix"],
                                    enable_auto_commit=False) as watcher:
            for _ in range(6000):  # 10 min at most
                done = sum([(await watcher.committed(tp)) or 0 for tp in tps])
                if done and not first:
                    first, at_first = time.perf_counter(), done
                if done >= opts["events"]:
                    last = time.perf_counter()
                    break
                await asyncio.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(60)
        scratch.cleanup()
    # The command and its members (it waits for them), over its whole run: start-up and group join included.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"events": opts["events"] - at_first, "seconds": last - first, "cpu": usage.ru_utime + usage.ru_stime}


async def delete_outputs(bootstrap: str, prefix: str) -> None:
    """Delete a round's output topics, so rounds do not slow the broker down with ever more partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefix + ".")]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc), 0.0 when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_role(role: str, opts: dict[str, Any]) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--role", role, "--opts", json.dumps(opts)],
                          capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{role} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace, role: str, broker: Any, topic: str, round_no: int) -> float:
    """One timed run of `role` relaying `topic`; prints it with its own and the broker's CPU time."""
    name = role
    role, workers = role.split("-w") if "-w" in role else (role, "1")  # tetrapipe-wN: the command, N workers
    opts = {"bootstrap": broker.bootstrap, "topic": topic, "events": args.events, "workers": int(workers),
            "partitions": args.partitions, "prefix": unique_name(f"bench-{role}"),
            "idempotence": broker.supports_idempotence,
            "compression": None if args.compression == "none" else args.compression}
    broker_cpu = cpu_seconds(broker.pid)
    result = run_role("tetrapipe-cli" if name != role else role, opts)
    broker_cpu = cpu_seconds(broker.pid) - broker_cpu
    if not args.keep_topics:
        asyncio.run(delete_outputs(broker.bootstrap, opts["prefix"]))
    rate: float = result["events"] / result["seconds"]
    print(f"round {round_no + 1} {name:<12} {result['events']:>7.0f} events in "
          f"{result['seconds']:6.2f}s = {rate:>9,.0f} events/s; its CPU {result['cpu']:5.2f}s, "
          f"broker CPU over the whole run {broker_cpu:5.2f}s", flush=True)
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=None,
                        help="default 60000; 300000 with --workers N > 1, which is timed from the first offset "
                             "commit seen (commits come once a second: a short run would be mostly before it)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--compression", choices=("none", "gzip", "snappy", "lz4", "zstd"), default="none",
                        help="output compression, the same for both")
    parser.add_argument("--roles", default="naive,tetrapipe,exactly-once",
                        help="which relays run in each round, in order (e.g. tetrapipe,naive to swap); "
                             "exactly-once is left out on a broker without transactions (Tansu)")
    parser.add_argument("--broker-dir", default="/dev/shm" if os.access("/dev/shm", os.W_OK) else None,
                        help="directory for the broker's data (default: /dev/shm, a RAM disk, when writable). "
                             "On this VM's disk, Apache Kafka's throughput halved after ~200 MB had been written, "
                             "so rounds measured the disk, not the relays")
    parser.add_argument("--keep-topics", action="store_true",
                        help="keep each round's output topics (the default deletes them after the round)")
    parser.add_argument("--group-delay-ms", type=int, default=3000,
                        help="with --workers N > 1 on Apache Kafka: the broker's group.initial.rebalance.delay.ms "
                             "(default 3000, Kafka's own; the tests' broker uses 0)")
    parser.add_argument("--workers", type=int, default=1,
                        help="with N > 1: compare `tetrapipe run --workers 1` and `--workers N` (the command, N "
                             "consumer group members) instead of naive/tetrapipe; use --partitions >= N")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--opts", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        role = {"naive": naive, "tetrapipe": tetrapipe, "exactly-once": tetrapipe,
                "tetrapipe-cli": tetrapipe_cli}[args.role]
        print(json.dumps(asyncio.run(role({**json.loads(args.opts), "exactly_once": args.role == "exactly-once"}))))
        return 0

    if args.broker_dir:
        tempfile.tempdir = args.broker_dir  # where brokers.py makes the broker's work and data directory
    broker = broker_from_env()
    if args.workers > 1 and hasattr(broker, "group_delay_ms"):
        # Kafka's default (the tests' broker uses 0): N members starting together join the group's first
        # generation, rather than one member taking every partition and a rebalance stalling both mid-run.
        broker.group_delay_ms = args.group_delay_ms
    broker.start()
    if args.events is None:
        args.events = 300_000 if args.workers > 1 else 60_000
    if args.workers > 1:
        args.roles = f"tetrapipe-w1,tetrapipe-w{args.workers}"
    roles = args.roles.split(",")
    if broker.kind == "tansu" and "exactly-once" in roles:
        print("exactly-once left out: Tansu has no transactions (TETRAPIPE_TEST_BROKER=kafka to measure it)")
        roles.remove("exactly-once")
    rates: dict[str, list[float]] = {role: [] for role in roles}
    try:
        topic = unique_name("bench-in")
        asyncio.run(fill(broker.bootstrap, topic, args.events, args.partitions))
        for round_no in range(args.rounds):
            for role in roles:
                rates[role].append(measure(args, role, broker, topic, round_no))
    finally:
        broker.close()
    if args.workers > 1:
        one, many = (statistics.median(r) for r in rates.values())
        print(f"\n{broker.kind} broker, {args.events} events, {args.partitions} partitions: median --workers 1 "
              f"{one:,.0f} events/s, --workers {args.workers} {many:,.0f} events/s, ratio {many / one:.2f}")
        return 0
    if not rates.get("naive") or not rates.get("tetrapipe"):
        print({role: f"{statistics.median(r):,.0f}" for role, r in rates.items() if r})
        report_exactly_once(rates)
        return 0
    naive_rate, tp_rate = statistics.median(rates["naive"]), statistics.median(rates["tetrapipe"])
    print(f"\n{broker.kind} broker (data in {args.broker_dir or tempfile.gettempdir()}), {args.events} events "
          f"of ~1.5 KB, {args.partitions} partitions, compression {args.compression}")
    print(f"median naive relay: {naive_rate:,.0f} events/s")
    print(f"median tetrapipe:   {tp_rate:,.0f} events/s   ratio tetrapipe/naive = {tp_rate / naive_rate:.2f}")
    report_exactly_once(rates)
    return 0


def report_exactly_once(rates: dict[str, list[float]]) -> None:
    if rates.get("exactly-once") and rates.get("tetrapipe"):
        eos, alo = statistics.median(rates["exactly-once"]), statistics.median(rates["tetrapipe"])
        print(f"median exactly-once: {eos:,.0f} events/s   ratio exactly-once/at-least-once = {eos / alo:.2f}")


if __name__ == "__main__":
    sys.exit(main())
