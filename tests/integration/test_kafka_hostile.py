"""A hostile record in the middle of a Kafka partition: dead-lettered with its reason, and the
partition moves on — the records after it are processed and committed, the worker never stops.

Before issue 10, a deeply nested record raised RecursionError in the reader: the worker exited,
and its restarted successor read the same record and died again (the partition halted for good).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from brokers import Broker, create_topic, unique_name
from kafka_worker import build_pipeline
from test_kafka_helpers import SEQ, all_committed, committed, header, produce, read_all, wait_until, worker_config
from test_kafka_pipeline import argv

from tests.support.hostile import deep_array, deep_field_in_event, deep_object
from tests.support.synth import generate, wrap_cri, wrap_fluentbit
from tetrapipe.pipeline.runner import EXIT_OK

pytestmark = pytest.mark.integration


async def test_hostile_records_mid_partition_are_dead_lettered_and_the_partition_moves_on(
        kafka_broker: Broker, tmp_path: Path) -> None:
    raw, group, prefix = unique_name("hostile"), unique_name("g"), unique_name("out")
    await create_topic(kafka_broker.bootstrap, raw, 1)
    values = list(generate(300, seed=21))
    hostile = {50: deep_object(), 100: deep_array(), 150: deep_field_in_event(),
               200: wrap_fluentbit(deep_object()), 250: wrap_cri(deep_object())}
    for offset, line in hostile.items():
        values[offset] = line
    await produce(kafka_broker.bootstrap, raw, values)

    cfg = worker_config(tmp_path / "k.yaml", kafka_broker)
    pipeline = build_pipeline(argv(kafka_broker, cfg, [raw], group, prefix))
    task = asyncio.create_task(pipeline.run())

    async def done() -> bool:
        assert not task.done(), f"the worker stopped on its own (exit {task.result()})"
        return await all_committed(kafka_broker.bootstrap, group, raw, 1)

    try:
        await wait_until(done, 90, "the whole partition to be committed")
    finally:
        pipeline.request_stop()
        code = await asyncio.wait_for(task, 30)
    assert code == EXIT_OK
    assert (await committed(kafka_broker.bootstrap, group, raw, 1))[0] == len(values)

    dead = await read_all(kafka_broker.bootstrap, [prefix + ".dlq"])
    assert {int(header(r, "tetrapipe-source-offset")): r.value for r in dead} == hostile  # unchanged
    for record in dead:
        assert header(record, "tetrapipe-error").startswith(b"too_deep: "), header(record, "tetrapipe-error")
    out = await read_all(kafka_broker.bootstrap, pipeline.sinks[0].router.topics())  # type: ignore[attr-defined]
    assert {int(header(r, SEQ)) for r in out} == set(range(len(values))) - set(hostile), \
        "records after a hostile one were lost"
