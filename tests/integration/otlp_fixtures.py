"""Pytest fixtures for OTLP integration tests; import them from a conftest.py.

    from otlp_fixtures import otlp_collector, otlp_receiver  # noqa: F401

Both are function-scoped: every test gets fresh processes on fresh ports and an
empty read-back history, so tests cannot see each other's records.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from collector import Collector
from otlp_receiver import OtlpReceiver


@pytest.fixture
def otlp_collector(tmp_path: Path) -> Iterator[Collector]:
    """A started rotel :class:`Collector` (real OTLP gRPC + HTTP receivers) with exact read-back.

    Logs land in ``tmp_path/otlp-collector/``; everything is stopped at teardown, even if
    the test killed the collector.
    """
    collector = Collector(tmp_path / "otlp-collector")
    collector.start()
    try:
        yield collector
    finally:
        collector.stop()


@pytest.fixture
def otlp_receiver(tmp_path: Path) -> Iterator[OtlpReceiver]:
    """A started bare :class:`OtlpReceiver`: use it for scripted failures (``fail_next``)."""
    receiver = OtlpReceiver(tmp_path / "otlp-receiver")
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def otlp_wire_receiver(tmp_path: Path) -> Iterator[OtlpReceiver]:
    """A started :class:`OtlpReceiver` that also journals how requests crossed the wire.

    HTTP journal entries carry ``encoding``/``wire_bytes``; ``grpc_messages()`` lists each gRPC
    message's compressed flag and size (its gRPC port is a relay that reads the HTTP/2 frames).
    """
    receiver = OtlpReceiver(tmp_path / "otlp-wire-receiver", inspect_grpc_wire=True)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
