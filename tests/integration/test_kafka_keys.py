"""`--kafka-key node|pod|exec_id` through a real broker: each routed record's key is the event's field, read
from the one decoded view, and equals what the full typed model says (the source key when it is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
from brokers import Broker, create_topic, unique_name
from kafka_worker import build_pipeline
from test_kafka_helpers import SEQ, header, produce, read_all, worker_config
from test_kafka_pipeline import argv, run_until_committed

from tests.sinks.test_kafka_key_one_decode import full_model_key
from tests.support.synth import generate
from tetrapipe.event.decode import LineDecoder
from tetrapipe.pipeline.runner import EXIT_OK

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("strategy", ["node", "pod", "exec_id"])
async def test_routed_records_are_keyed_by_the_events_field(kafka_broker: Broker, tmp_path: Path,
                                                             strategy: str) -> None:
    raw, group, prefix = unique_name("keys"), unique_name("g"), unique_name("out")
    await create_topic(kafka_broker.bootstrap, raw, 1)
    values = list(generate(300, seed=41))
    source_keys = [f"src-{i}".encode() for i in range(len(values))]
    await produce(kafka_broker.bootstrap, raw, values, keys=source_keys)
    cfg = worker_config(tmp_path / "k.yaml", kafka_broker)
    pipeline = build_pipeline(argv(kafka_broker, cfg, [raw], group, prefix, "--kafka-key", strategy))
    assert await run_until_committed(pipeline, kafka_broker, group, {raw: 1}) == EXIT_OK
    out = await read_all(kafka_broker.bootstrap, pipeline.sinks[0].router.topics())  # type: ignore[attr-defined]
    assert {int(header(r, SEQ)) for r in out} == set(range(len(values)))  # every event, once or more per topic
    from_field = 0
    for record in out:
        seq = int(header(record, SEQ))  # type: ignore[arg-type]
        decoded = LineDecoder().decode(values[seq])
        assert decoded is not None
        want = full_model_key(decoded, strategy)
        assert record.key == (want.encode() if want else source_keys[seq])
        from_field += bool(want)
    assert from_field, f"{strategy}: no event carried the field (the test would prove nothing)"
