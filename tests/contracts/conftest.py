"""Fixtures of the contract suites: the real servers some implementations need.

The helpers of tests/integration (brokers.py, collector.py, otlp_receiver.py,
otlp_fixtures.py, test_kafka_helpers.py) are imported from there, not copied:
that directory is put on sys.path here, as pytest does for tests/integration
itself.  `kafka_broker` is tests/conftest.py's session fixture, shared with
tests/integration: a run that collects both directories starts one broker.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
if str(INTEGRATION) not in sys.path:
    sys.path.insert(0, str(INTEGRATION))

from brokers import Broker, broker_from_env  # noqa: E402
from otlp_fixtures import otlp_collector  # noqa: E402, F401 (fixture)


@pytest.fixture
def private_kafka_broker(kafka_broker: Broker) -> Iterator[Broker]:
    """A broker of the same kind as `kafka_broker`, for one test that stops and restarts it.

    Not the shared one: stopping that would fail whatever else uses it (and Tansu loses every
    topic on a restart).  An external broker cannot be stopped by the tests: skipped then.
    """
    if kafka_broker.kind == "external":
        pytest.skip("an external broker (KAFKA_BOOTSTRAP_SERVERS) cannot be stopped and restarted by the tests")
    broker = broker_from_env()
    try:
        broker.start()
        yield broker
    finally:
        broker.close()
