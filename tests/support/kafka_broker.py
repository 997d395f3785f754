"""The session's Kafka-protocol broker, one for every directory that needs one (tests/integration, tests/contracts).

The fixture `kafka_broker` is defined in tests/conftest.py from `session_broker()`, so a run that
collects several directories starts one broker (per kind: TETRAPIPE_TEST_BROKER = tansu | kafka |
external, or KAFKA_BOOTSTRAP_SERVERS; see tests/integration/brokers.py).  The broker helpers stay in
tests/integration and are imported from there as the module `brokers` — the same module object the
integration tests import, not a second copy.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

INTEGRATION = Path(__file__).resolve().parents[1] / "integration"


def brokers_module() -> Any:
    """tests/integration/brokers.py, imported as `brokers` (that directory put on sys.path, as pytest does)."""
    if str(INTEGRATION) not in sys.path:
        sys.path.insert(0, str(INTEGRATION))
    import brokers

    return brokers


def session_broker() -> Iterator[Any]:
    """A started broker, stopped and cleaned up when the generator is closed (the session's end).

    Never skips: if the broker cannot start, every test using it ERRORS with the reason (and the tail of
    the broker's log).  Tests that restart it must leave it running (restart() does) so later tests
    still find it.
    """
    broker = brokers_module().broker_from_env()
    try:
        broker.start()
        yield broker
    finally:
        broker.close()
