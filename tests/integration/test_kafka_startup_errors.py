"""Startup errors against the real test broker that say what to do: a broker refusing the idempotent producer
(Tansu does) names --kafka-no-idempotence and the config keys; with them, the same run delivers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from brokers import Broker, unique_name
from test_kafka_helpers import read_all

from tests.support import synth
from tetrapipe.pipeline.runner import EXIT_FAILED, EXIT_OK

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "tetrapipe.cli.main", "run", "--log-format", "text", "--quiet",
                           "--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12", *args],
                          input=stdin, capture_output=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("output", ["--kafka-out-template", "--kafka-dlq"])
async def test_a_broker_refusing_idempotence_gets_an_error_naming_the_fix(kafka_broker: Broker, output: str) -> None:
    if kafka_broker.supports_idempotence:
        pytest.skip(f"{kafka_broker.kind} accepts the idempotent producer: nothing to refuse")
    prefix = unique_name("idem")
    target = prefix + (".{category}" if output == "--kafka-out-template" else ".dlq")
    events = b"\n".join(synth.generate(20, seed=3)) + b"\n"
    refused = await asyncio.to_thread(run, ["--kafka-bootstrap", kafka_broker.bootstrap, output, target], events)
    err = refused.stderr.decode()
    assert refused.returncode == EXIT_FAILED, err
    assert "refused the idempotent producer" in err and "--kafka-no-idempotence" in err, err
    assert "kafka.sink.idempotence: false" in err and "kafka.dead_letter.idempotence: false" in err
    assert "InitProducerIdRequest" not in err  # the client's own line would precede ours, saying less
    if output == "--kafka-out-template":  # the fix the message names works
        fixed = await asyncio.to_thread(run, ["--kafka-bootstrap", kafka_broker.bootstrap, output, target,
                                              "--kafka-default-topic", prefix + ".other", "--kafka-no-idempotence"],
                                        events)
        assert fixed.returncode == EXIT_OK, fixed.stderr.decode()
        assert len(await read_all(kafka_broker.bootstrap, [prefix + ".other"], timeout_s=30)) > 0
