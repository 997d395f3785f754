"""Failure paths against a real broker, in process: a broker crash mid-stream, a sink stalled past
max_poll_interval, a rebalance whose drain times out.

Each test has its own topics and group.  Inputs are produced with partition
= seq % PARTITIONS (header `seq`), so every output names the input it came
from; "nothing lost" means every (output topic, seq) the processor routes is
present, duplicates are counted and reported.  Pipelines are assembled as
`tetrapipe run` does (tetrapipe.config.kafka.build_kafka), with a wrapper around the
Kafka sink that can stall or pace writes and records what was acknowledged,
and a committer whose commit calls are recorded.  Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import TopicPartition
from brokers import FAST_GROUP, Broker, create_topic, unique_name
from kafka_worker import load_section, parser
from test_kafka_helpers import SEQ, all_committed, committed, end_offsets, header, produce, read_all, wait_until

from tests.support.synth import generate
from tetrapipe.config.kafka import build_kafka
from tetrapipe.config.root import Config, build_classifier, build_tagger
from tetrapipe.event.envelope import Envelope
from tetrapipe.pipeline.commit import Committer
from tetrapipe.pipeline.processor import Processor
from tetrapipe.pipeline.runner import EXIT_OK, Pipeline, RetryPolicy
from tetrapipe.pipeline.stats import Stats

pytestmark = pytest.mark.integration
PARTITIONS = 4


class ControlledSink:
    """Wraps the Kafka sink: lets `pass_writes` writes through then stalls until `gate` is set; optional pacing.

    `acked` counts (partition, offset) of input records whose write the brokers acknowledged.
    """

    def __init__(self, inner: Any, *, pass_writes: int | None = None, delay: float = 0.0) -> None:
        self.inner = inner
        self.name = inner.name
        self.selection = inner.selection
        self.router = inner.router
        self.pass_writes = pass_writes
        self.delay = delay
        self.gate = asyncio.Event()
        if pass_writes is None:
            self.gate.set()
        self.blocked = asyncio.Event()  # a write is being held at the gate
        self.writes = 0
        self.acked: Counter[tuple[int, int]] = Counter()

    async def start(self) -> None:
        await self.inner.start()

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        self.writes += 1
        if not self.gate.is_set() and self.pass_writes is not None and self.writes > self.pass_writes:
            self.blocked.set()
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        await self.inner.write(envelopes)
        self.acked.update(e.position[1:] for e in envelopes)

    async def close(self) -> None:
        await self.inner.close()


class Member:
    """One pipeline (a consumer-group member) built as `tetrapipe run` would, instrumented for the tests."""

    def __init__(self, broker: Broker, cfg: Path, raw: str, group: str, prefix: str, *,
                 pass_writes: int | None = None, delay: float = 0.0, max_delivery_events: int = 4096) -> None:
        args = parser().parse_args([
            "--config", str(cfg), "--kafka-bootstrap", broker.bootstrap, "--kafka-topic", raw, "--kafka-group", group,
            "--kafka-out-template", prefix + ".{category}", "--kafka-default-topic", prefix + ".other",
            "--kafka-dlq", prefix + ".dlq"])
        config = Config()
        tagger = build_tagger(config.library)
        processor = Processor(tagger, build_classifier(config.egress, ["10.244.0.0/16"], ["10.96.0.0/12"]))
        source, sinks, dead_letter = build_kafka(args, load_section(args.config), groups=tagger.groups)
        assert source is not None and sinks and dead_letter is not None
        self.source = source
        self.sink = ControlledSink(sinks[0], pass_writes=pass_writes, delay=delay)
        self.topics = [*sinks[0].router.topics(), prefix + ".dlq"]
        # (position handed to the source, partitions owned at that moment, time)
        self.commits: list[tuple[dict[TopicPartition, int], set[TopicPartition], float]] = []
        self.abandoned: list[dict[TopicPartition, int]] = []  # positions of batches forgotten on revocation
        self.abandoned_records = 0
        self.forgot_at: float | None = None
        self.log = io.StringIO()
        committer = Committer(self._commit, interval=0.5)
        forget = committer.forget

        def recording_forget(owns: Any, remainder: Any = None) -> int:
            batches = [b for b in committer._pending if owns(b)]  # noqa: SLF001 - test instrumentation
            self.abandoned += [dict(b.commit_position) for b in batches]
            self.abandoned_records += sum(len(b) for b in batches)
            if self.forgot_at is None:
                self.forgot_at = time.monotonic()
            return forget(owns, remainder)

        committer.forget = recording_forget  # type: ignore[method-assign]
        self.pipeline = Pipeline(source, processor, [self.sink], dead_letter=dead_letter, stats=Stats(),
                                 committer=committer, grace=20, max_in_flight=4, log=self.log,
                                 max_delivery_events=max_delivery_events,
                                 retry=RetryPolicy(initial=0.1, maximum=2.0))
        self.task: asyncio.Task[int] | None = None

    async def _commit(self, position: dict[TopicPartition, int]) -> None:
        self.commits.append((dict(position), set(self.source._owned), time.monotonic()))  # noqa: SLF001
        await self.source.commit(position)

    @property
    def owned(self) -> set[TopicPartition]:
        return set(self.source._owned)  # noqa: SLF001

    def start(self) -> None:
        self.task = asyncio.create_task(self.pipeline.run())

    def alive(self) -> bool:
        assert self.task is not None
        if self.task.done():
            raise AssertionError(f"the pipeline ended early ({self.task.result()}):\n{self.log.getvalue()}")
        return True

    async def stop(self) -> int:
        assert self.task is not None
        self.pipeline.request_stop()
        return await asyncio.wait_for(self.task, 40)

    def in_flight_partitions(self) -> set[TopicPartition]:
        """Partitions of the batches registered with the committer and not yet committable."""
        return {tp for b in self.pipeline.committer._pending for tp in b.commit_position}  # noqa: SLF001

    async def close(self) -> None:
        """After a failure: stop (bounded), so no client is left open for later tests."""
        if self.task is None or self.task.done():
            return
        self.pipeline.request_stop()
        self.sink.gate.set()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 30)
        except BaseException:  # noqa: BLE001 - already failing; cancel whatever is left
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


def config(path: Path, broker: Broker, connection: dict[str, Any] | None = None, idempotence: bool = True,
           **source: Any) -> Path:
    idempotence = idempotence and broker.supports_idempotence
    section: dict[str, Any] = {
        "connection": connection or {},
        "source": {"session_timeout_ms": FAST_GROUP["session_timeout_ms"],
                   "heartbeat_interval_ms": FAST_GROUP["heartbeat_interval_ms"], "revoke_timeout": 10.0,
                   "max_records": 500, **source},
        "sink": {"idempotence": idempotence, "topics": {"partitions": 3}},
        "dead_letter": {"topic": "unused-overridden-by-flag", "idempotence": idempotence},
    }
    path.write_text(yaml.safe_dump({"kafka": section}))
    return path


async def stream(broker: Broker, count: int, *, first_seq: int = 0, raw: str | None = None) -> str:
    """Produce inputs seq first_seq … first_seq+count-1 to `raw` (a new topic when None); partition = seq % P."""
    if raw is None:
        raw = unique_name("in")
        await create_topic(broker.bootstrap, raw, PARTITIONS)
    keys = [f"node-{i % 13}".encode() for i in range(count)]
    await produce(broker.bootstrap, raw, list(generate(count, seed=first_seq + count)), keys=keys,
                  first_seq=first_seq, partition_of=lambda i: (first_seq + i) % PARTITIONS)
    return raw


async def outputs(broker: Broker, topics: list[str]) -> Counter[tuple[str, int]]:
    return Counter((r.topic, int(header(r, SEQ))) for r in await read_all(broker.bootstrap, topics, timeout_s=120))


def check_nothing_lost(got: Counter[tuple[str, int]], total: int, what: str) -> str:
    """Every input seq came out; returns a summary line with the duplicates (a (topic, seq) seen twice or more)."""
    seqs = {seq for _, seq in got}
    missing = sorted(set(range(total)) - seqs)
    duplicated = sum(n - 1 for n in got.values() if n > 1)
    summary = (f"{what}: {len(got)} distinct outputs for {len(seqs)}/{total} inputs, "
               f"{duplicated} duplicate messages ({sum(1 for n in got.values() if n > 1)} outputs written >1 time)")
    assert not missing, f"{summary}; LOST {len(missing)} inputs, e.g. seqs {missing[:10]}"
    return summary


async def committed_everything(broker: Broker, group: str, raw: str) -> bool:
    return await all_committed(broker.bootstrap, group, raw, PARTITIONS)


# -- 1. the broker crashes mid-stream and comes back ---------------------------------------------------

@pytest.mark.parametrize("idempotence", [True, False], ids=["idempotent", "plain"])
async def test_broker_killed_mid_stream_and_restarted_loses_nothing(
        kafka_broker: Broker, tmp_path: Path, idempotence: bool) -> None:
    """An idempotent producer rides the outage out inside aiokafka (its batches never expire: no duplicates);
    a plain one's batches expire after request_timeout_ms, so the sink fails retryably and the runner retries."""
    if kafka_broker.kind == "tansu":
        pytest.skip("Tansu keeps data in memory: a restart loses the topics; run with TETRAPIPE_TEST_BROKER=kafka")
    total = 20_000
    raw, group, prefix = await stream(kafka_broker, total), unique_name("g"), unique_name("out")
    # Paced (≤ 500 events per write, 0.1 s each) so that the crash lands mid-stream.
    # Requests time out after 5 s, well within the outage (a Kafka restart takes 10 s or more).
    cfg = config(tmp_path / "k.yaml", kafka_broker, connection={"request_timeout_ms": 5000}, idempotence=idempotence)
    member = Member(kafka_broker, cfg, raw, group, prefix, delay=0.1, max_delivery_events=500)
    started = time.monotonic()
    member.start()
    try:
        await wait_until(lambda: _true(member.alive() and member.pipeline.stats.received >= 4000), 60,
                         "the pipeline to get going")
        await kafka_broker.arestart(kill=True)  # SIGKILL: input, output and group coordinator all go away
        restarted = time.monotonic()
        member.alive()
        acked_at_restart = sum(member.sink.acked.values())
        await wait_until(lambda: _alive_and(member, lambda: committed_everything(kafka_broker, group, raw)), 150,
                         "the pipeline to commit everything after the restart")
        assert await member.stop() == EXIT_OK, member.log.getvalue()
    finally:
        await member.close()
    assert acked_at_restart < total, "the crash came too late to test anything"
    got = await outputs(kafka_broker, member.topics)
    summary = check_nothing_lost(got, total, f"broker SIGKILL + restart ({'idempotent' if idempotence else 'plain'})")
    ends = await end_offsets(kafka_broker.bootstrap, raw, PARTITIONS)
    assert await committed(kafka_broker.bootstrap, group, raw, PARTITIONS) == ends
    print(f"\n{summary}; {acked_at_restart} input records acknowledged before the crash; restart took "
          f"{restarted - started:.0f}s from start, all committed {time.monotonic() - restarted:.0f}s later; "
          f"sink retries {dict(member.pipeline.stats.sink_retries)}")


# -- 2. a sink stalled for longer than max_poll_interval ---------------------------------------------

async def test_sink_stalled_past_max_poll_interval_keeps_the_group_and_delivers_everything(
        kafka_broker: Broker, tmp_path: Path) -> None:
    total, poll_interval_s = 6000, 6.0
    raw, group, prefix = await stream(kafka_broker, total), unique_name("g"), unique_name("out")
    cfg = config(tmp_path / "k.yaml", kafka_broker, max_poll_interval_ms=int(poll_interval_s * 1000),
                 revoke_timeout=3.0)
    member = Member(kafka_broker, cfg, raw, group, prefix, pass_writes=2, max_delivery_events=500)
    member.start()
    try:
        await wait_until(lambda: _true(member.alive() and member.sink.blocked.is_set()), 60,
                         "the sink to stall")
        owned = member.owned
        assert len(owned) == PARTITIONS
        paused_seen = False
        stall_until = time.monotonic() + 2.5 * poll_interval_s
        for _ in range(200):  # ~15 s: well past max_poll_interval and several session timeouts
            if time.monotonic() >= stall_until:
                break
            member.alive()
            consumer = member.source._consumer  # noqa: SLF001
            paused_seen = paused_seen or bool(consumer is not None and consumer.paused())
            await asyncio.sleep(0.1)
        assert paused_seen, "the source never paused its partitions while the pipeline was full"
        assert member.source.revocations == 0, f"the consumer left its group:\n{member.log.getvalue()}"
        assert member.owned == owned
        read_while_stalled = member.pipeline.stats.received
        assert read_while_stalled < total, "everything was read before the stall: nothing held back"
        member.sink.gate.set()
        await wait_until(lambda: _alive_and(member, lambda: committed_everything(kafka_broker, group, raw)), 90,
                         "the pipeline to commit everything after the stall")
        assert member.source.revocations == 0
        assert await member.stop() == EXIT_OK, member.log.getvalue()
    finally:
        await member.close()
    got = await outputs(kafka_broker, member.topics)
    summary = check_nothing_lost(got, total, "sink stalled 15s > max_poll_interval 6s")
    assert sum(n - 1 for n in got.values()) == 0, f"{summary}: no rebalance, so nothing may be redone"
    assert member.pipeline.stats.received == total, "records were read twice (pause/resume must not rewind)"
    print(f"\n{summary}; {read_while_stalled} read before/while stalled, no rebalance")


# -- 3. a rebalance whose drain times out -------------------------------------------------------------

async def test_rebalance_drain_timeout_abandons_in_flight_batches_to_the_new_owner(
        kafka_broker: Broker, tmp_path: Path) -> None:
    total, head, revoke_timeout = 8000, 400, 1.5
    # A short head first (100 records per partition, 50 per batch): it fits in what the first member holds in
    # flight (≤ 2 x max_in_flight + 2 batches), so batches of every partition get stuck there — whatever the
    # broker's fetch order.  The rest of the stream comes after the rebalance.
    raw, group, prefix = await stream(kafka_broker, head), unique_name("g"), unique_name("out")
    cfg = config(tmp_path / "k.yaml", kafka_broker, revoke_timeout=revoke_timeout, max_records=50)
    first = Member(kafka_broker, cfg, raw, group, prefix, pass_writes=1, max_delivery_events=50)
    second = Member(kafka_broker, cfg, raw, group, prefix)
    first.start()
    try:
        await wait_until(lambda: _true(first.alive() and first.sink.blocked.is_set()
                                       and len(first.in_flight_partitions()) == PARTITIONS), 60,
                         "the first member to have batches of every partition stuck in its sink")
        assert len(first.owned) == PARTITIONS
        before = await committed(kafka_broker.bootstrap, group, raw, PARTITIONS)

        second.start()  # joins: the first must give up partitions while its batches cannot finish
        await wait_until(lambda: _true(first.alive() and second.alive() and bool(second.owned)
                                       and first.source.revocations >= 1), 60, "the second member to get partitions")
        assert first.abandoned, f"the drain did not time out:\n{first.log.getvalue()}"
        assert f"not delivered within {revoke_timeout:.1f}s" in first.log.getvalue()
        revoked_at = first.forgot_at
        assert revoked_at is not None
        lost = {tp for position in first.abandoned for tp in position} & second.owned
        assert lost, (f"none of the abandoned batches' partitions moved to the second member: abandoned "
                      f"{first.abandoned}, first owns {first.owned}, second owns {second.owned}")

        # The new owner redoes the abandoned range while the first member is still stuck.
        await stream(kafka_broker, total - head, first_seq=head, raw=raw)
        ends = await end_offsets(kafka_broker.bootstrap, raw, PARTITIONS)

        async def second_done() -> bool:
            done = await committed(kafka_broker.bootstrap, group, raw, PARTITIONS)
            return second.alive() and all(done[tp.partition] >= ends[tp.partition] for tp in second.owned)

        await wait_until(second_done, 60, "the second member to commit its partitions")
        for position in first.abandoned:
            for tp, next_offset in position.items():
                if tp in second.owned:
                    assert second.sink.acked[(tp.partition, next_offset - 1)] >= 1, \
                        f"abandoned {tp} up to {next_offset} was not redone by the new owner"
                    assert before[tp.partition] < next_offset

        first.sink.gate.set()  # the stuck deliveries complete now: duplicates, but never committed by the first
        await wait_until(lambda: _true(first.alive() and second.alive()
                                       and all(first.sink.acked[(tp.partition, o - 1)] for p in first.abandoned
                                               for tp, o in p.items())), 60,
                         "the first member's abandoned deliveries to complete")
        await wait_until(lambda: _alive_and(first, lambda: committed_everything(kafka_broker, group, raw)), 90,
                         "both members to commit everything")
        late = [(pos, owned) for pos, owned, t in first.commits if t >= revoked_at]
        for position, owned in late:
            assert set(position) <= owned, f"the first member committed partitions it no longer owns: {position}"
        assert all(set(position).isdisjoint(lost) for position, _ in late), "an abandoned batch was committed"
        after = await committed(kafka_broker.bootstrap, group, raw, PARTITIONS)
        assert all(after[p] >= ends[p] for p in ends), f"committed {after}, ends {ends}"  # >=: Tansu may overshoot
        assert await first.stop() == EXIT_OK, first.log.getvalue()
        assert await second.stop() == EXIT_OK, second.log.getvalue()
    finally:
        await asyncio.gather(first.close(), second.close())
    got = await outputs(kafka_broker, first.topics)
    summary = check_nothing_lost(got, total, "drain timeout on rebalance")
    print(f"\n{summary}; {len(first.abandoned)} batches ({first.abandoned_records} records) abandoned by the "
          f"first member, partitions {sorted(tp.partition for tp in lost)} moved to the second, which received "
          f"{second.pipeline.stats.received} records")


async def _true(value: bool) -> bool:
    return value


async def _alive_and(member: Member, check: Any) -> bool:
    """`member` is still running (else fail with its log) and `check()` is true."""
    member.alive()
    return bool(await check())
