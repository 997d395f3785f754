"""Integration-test fixtures: one real Kafka-protocol broker per test session.

Which broker: env TETRAPIPE_TEST_BROKER = tansu (default) | kafka | external,
or KAFKA_BOOTSTRAP_SERVERS for an already running one (see brokers.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from brokers import Broker, broker_from_env


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Broker]:
    """A started broker shared by the whole session, stopped and cleaned up at its end.

    Never skips: if the broker cannot start, every test using it ERRORS with
    the reason (and the tail of the broker's log). Tests that restart it must
    leave it running (restart() does) so later tests still find it.
    """
    broker = broker_from_env()
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses kafka_broker as integration, so `-m integration` selects it."""
    for item in items:
        if "kafka_broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
