"""Integration-test fixtures.  The session's Kafka-protocol broker, `kafka_broker`, is tests/conftest.py's (one per
run, shared with tests/contracts; tests/support/kafka_broker.py).

Which broker: env TETRAPIPE_TEST_BROKER = tansu (default) | kafka | external,
or KAFKA_BOOTSTRAP_SERVERS for an already running one (see brokers.py).
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses kafka_broker as integration, so `-m integration` selects it."""
    for item in items:
        if "kafka_broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
