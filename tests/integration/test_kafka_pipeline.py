"""Kafka in and out through a real broker, in process: accounting, routing, order, poison messages, codecs.

Each test has its own topics and group.  The pipeline is the one `tetrapipe
run` builds (tests/integration/kafka_worker.build_pipeline).
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from brokers import Broker, create_topic, unique_name
from kafka_worker import build_pipeline
from test_kafka_helpers import SEQ, all_committed, committed, header, produce, read_all, wait_until, worker_config

from tests.support.synth import bad_lines, generate
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.pipeline.processor import Processor
from tetrapipe.pipeline.runner import EXIT_FAILED, EXIT_OK, Pipeline

pytestmark = pytest.mark.integration


def expected(processor: Processor, values: list[bytes]) -> list[Envelope]:
    batch = Batch([Envelope(v, i) for i, v in enumerate(values)])
    processor.process(batch)
    return batch.envelopes


def argv(broker: Broker, cfg: Path, topics: list[str], group: str, prefix: str, *extra: str) -> list[str]:
    flags = ["--config", str(cfg), "--kafka-bootstrap", broker.bootstrap, "--kafka-group", group,
             "--kafka-out-template", prefix + ".{group}.{category}", "--kafka-default-topic", prefix + ".other",
             "--kafka-dlq", prefix + ".dlq", "--grace", "20"]
    for topic in topics:
        flags += ["--kafka-topic", topic]
    return [*flags, *extra]


async def run_until_committed(pipeline: Pipeline, broker: Broker, group: str, topics: dict[str, int],
                              timeout_s: float = 90.0) -> int:
    """Run `pipeline` until the group committed the end of every input topic, then stop it gracefully."""
    task = asyncio.create_task(pipeline.run())

    async def done() -> bool:
        if task.done():
            return True
        return all([await all_committed(broker.bootstrap, group, t, n) for t, n in topics.items()])

    try:
        await wait_until(done, timeout_s, "the pipeline to commit all input")
    finally:
        pipeline.request_stop()
        code = await asyncio.wait_for(task, 30)
    return code


async def test_every_message_is_accounted_for_routed_in_order_with_headers(
        kafka_broker: Broker, processor: Processor, tmp_path: Path) -> None:
    raw, group, prefix = unique_name("in"), unique_name("g"), unique_name("out")
    await create_topic(kafka_broker.bootstrap, raw, 3)
    bad = [b for b in bad_lines() if b and len(b) < 100_000]  # blank is skipped, not bad; 10 MB exceeds the broker
    values = list(generate(3000, seed=7))
    for i, line in enumerate(bad):
        values.insert(200 + i * 300, line)
    keys = [f"node-{i % 7}".encode() for i in range(len(values))]
    await produce(kafka_broker.bootstrap, raw, values, keys=keys)

    cfg = worker_config(tmp_path / "k.yaml", kafka_broker)
    pipeline = build_pipeline(argv(kafka_broker, cfg, [raw], group, prefix))
    assert await run_until_committed(pipeline, kafka_broker, group, {raw: 3}) == EXIT_OK
    sink = pipeline.sinks[0]

    envs = expected(processor, values)
    want_cats = Counter(c for e in envs if e.decoded is not None for c in e.tags.categories)
    want_untagged = {i for i, e in enumerate(envs) if e.decoded is not None and not e.tags.categories}
    want_bad = {i for i, e in enumerate(envs) if e.error is not None}
    assert len(want_bad) >= 8  # some "bad" lines are still events (e.g. a process_exec without process)

    topics = sink.router.topics()  # type: ignore[attr-defined]
    records = await read_all(kafka_broker.bootstrap, [*topics, prefix + ".dlq"])
    by_topic: dict[str, list] = defaultdict(list)
    for r in records:
        by_topic[r.topic].append(r)
    got_cats = Counter()
    for topic, recs in by_topic.items():
        if topic.startswith(prefix + ".") and topic not in (prefix + ".other", prefix + ".dlq"):
            got_cats[topic.rsplit(".", 1)[1]] += len(recs)
    assert got_cats == want_cats, "per-category counts differ from the categories the processor assigns"
    default_seqs = {int(header(r, SEQ)) for r in by_topic[prefix + ".other"]}
    dlq = by_topic[prefix + ".dlq"]
    assert default_seqs == want_untagged
    assert {int(header(r, SEQ)) for r in dlq} == want_bad
    routed_seqs = {int(header(r, SEQ)) for t, rs in by_topic.items() for r in rs
                   if t not in (prefix + ".other", prefix + ".dlq")}
    assert routed_seqs | default_seqs | want_bad == set(range(len(values))), "some input never came out"
    assert not routed_seqs & default_seqs
    assert sink.routed + sink.defaulted + pipeline.stats.dead_lettered == len(values)  # type: ignore[attr-defined]
    assert sink.by_category == want_cats  # type: ignore[attr-defined]

    for r in dlq:  # unchanged bytes, and where they came from
        seq = int(header(r, SEQ))
        assert r.value == values[seq] and r.key == keys[seq]
        assert header(r, "tetrapipe-source-topic") == raw.encode()
        assert header(r, "tetrapipe-error") and header(r, "tetrapipe-source-offset") is not None
    for topic, recs in by_topic.items():
        if topic == prefix + ".dlq":
            continue
        for r in recs:
            env = envs[int(header(r, SEQ))]
            assert r.value == env.out and r.key == keys[int(header(r, SEQ))]
            assert header(r, "tetrapipe-categories") == ",".join(env.tags.categories).encode()
            assert header(r, "tetragon-event-type") == env.decoded.etype.encode()
            if env.decoded.egress is not None:
                assert header(r, "tetrapipe-zone") == env.decoded.egress.zone.encode()
        per_key: dict[bytes, list[int]] = defaultdict(list)
        for r in recs:  # read_all returns each partition in offset order; a key lives in one partition
            per_key[r.key].append(int(header(r, SEQ)))
        assert all(seqs == sorted(seqs) for seqs in per_key.values()), f"order per key lost in {topic}"


async def test_poison_message_goes_to_dlq_and_the_partition_moves_on(
        kafka_broker: Broker, tmp_path: Path) -> None:
    raw, group, prefix = unique_name("in"), unique_name("g"), unique_name("out")
    await create_topic(kafka_broker.bootstrap, raw, 1)
    values = list(generate(200, seed=3))
    values[100] = b'{"process_exec": {"process": truncated'
    await produce(kafka_broker.bootstrap, raw, values)

    cfg = worker_config(tmp_path / "k.yaml", kafka_broker)
    pipeline = build_pipeline(argv(kafka_broker, cfg, [raw], group, prefix))
    assert await run_until_committed(pipeline, kafka_broker, group, {raw: 1}) == EXIT_OK
    assert (await committed(kafka_broker.bootstrap, group, raw, 1))[0] >= 200

    [dead] = await read_all(kafka_broker.bootstrap, [prefix + ".dlq"])
    assert dead.value == values[100]
    assert header(dead, "tetrapipe-source-offset") == b"100" and header(dead, "tetrapipe-source-partition") == b"0"
    assert header(dead, "tetrapipe-error").startswith(b"invalid_json: ")
    out = await read_all(kafka_broker.bootstrap, pipeline.sinks[0].router.topics())  # type: ignore[attr-defined]
    assert {int(header(r, SEQ)) for r in out} == set(range(200)) - {100}, "messages after the poison one were lost"


async def test_compressed_input_batches_are_decoded(kafka_broker: Broker, tmp_path: Path) -> None:
    codecs = ["gzip", "snappy", "lz4", "zstd"]
    raws, group, prefix = [unique_name(f"in-{c}") for c in codecs], unique_name("g"), unique_name("out")
    values = list(generate(300, seed=11))
    for i, (codec, raw) in enumerate(zip(codecs, raws, strict=True)):
        await create_topic(kafka_broker.bootstrap, raw, 1)
        await produce(kafka_broker.bootstrap, raw, values, compression=codec, first_seq=i * 1000)

    pipeline = build_pipeline(argv(kafka_broker, worker_config(tmp_path / "k.yaml", kafka_broker), raws, group, prefix))
    assert await run_until_committed(pipeline, kafka_broker, group, dict.fromkeys(raws, 1)) == EXIT_OK
    assert pipeline.stats.received == 4 * 300 and not pipeline.stats.bad
    out = await read_all(kafka_broker.bootstrap, pipeline.sinks[0].router.topics())  # type: ignore[attr-defined]
    seqs = {int(header(r, SEQ)) for r in out}
    assert seqs == {i * 1000 + j for i in range(4) for j in range(300)}


@pytest.mark.expect_errors
async def test_missing_output_topic_with_creation_disabled_stops_startup_naming_it(
        kafka_broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw, group, prefix = unique_name("in"), unique_name("g"), unique_name("out")
    await create_topic(kafka_broker.bootstrap, raw, 1)
    pipeline = build_pipeline(argv(kafka_broker, worker_config(tmp_path / "k.yaml", kafka_broker), [raw], group, prefix,
                                   "--kafka-no-create-topics"))
    assert await asyncio.wait_for(pipeline.run(), 60) == EXIT_FAILED
    err = capsys.readouterr().err
    assert f"{prefix}.other" in err and "do not exist" in err, err
