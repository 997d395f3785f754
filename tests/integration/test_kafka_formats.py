"""`kafka.sink.format`: routed records in another format (OCSF, ECS), through a real broker."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from brokers import Broker, create_topic, unique_name
from kafka_worker import build_pipeline
from test_kafka_helpers import SEQ, header, produce, read_all, worker_config
from test_kafka_pipeline import argv, run_until_committed

from tests.formats import ecs_validator, ocsf_validator
from tests.support.synth import generate
from tetrapipe.pipeline.runner import EXIT_OK

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("fmt", "validate"), [("ocsf", ocsf_validator.validate), ("ecs", ecs_validator.validate)])
async def test_routed_records_carry_the_sinks_format(kafka_broker: Broker, tmp_path: Path, fmt: str,
                                                     validate) -> None:
    raw, group, prefix = unique_name("fmt"), unique_name("g"), unique_name("out")
    await create_topic(kafka_broker.bootstrap, raw, 1)
    values = list(generate(300, seed=31))
    await produce(kafka_broker.bootstrap, raw, values)
    cfg = worker_config(tmp_path / "k.yaml", kafka_broker, format=fmt)
    pipeline = build_pipeline(argv(kafka_broker, cfg, [raw], group, prefix))
    assert await run_until_committed(pipeline, kafka_broker, group, {raw: 1}) == EXIT_OK
    out = await read_all(kafka_broker.bootstrap, pipeline.sinks[0].router.topics())  # type: ignore[attr-defined]
    assert {int(header(r, SEQ)) for r in out} == set(range(300))  # every event, routed as before
    problems = [p for r in out for p in validate(orjson.loads(r.value))]
    assert not problems, problems[:10]
