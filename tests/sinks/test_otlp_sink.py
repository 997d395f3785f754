"""OtlpSink behaviour against a scripted in-memory transport: bounds, retries, bisection, partial success."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from tests.conftest import process_lines
from tests.support import synth
from tetrapipe.event.envelope import Envelope
from tetrapipe.pipeline.processor import Processor
from tetrapipe.sinks.base import SinkError
from tetrapipe.sinks.otlp.sink import OtlpSink
from tetrapipe.sinks.otlp.transport import (
    Accepted,
    ExportError,
    TransportSettings,
    partial_success_json,
    partial_success_protobuf,
    retry_after_seconds,
    retry_info_seconds,
)

SETTINGS = TransportSettings(url="http://127.0.0.1:1/v1/logs", protocol="http/protobuf")


class FakeTransport:
    """Decodes each request; `script(pids)` returns an Accepted or raises an ExportError."""

    def __init__(self, script: Callable[[list[int]], Accepted] | None = None) -> None:
        self.script = script or (lambda pids: Accepted())
        self.accepted: list[int] = []
        self.requests: list[list[int]] = []
        self.sizes: list[int] = []

    async def export(self, body: bytes) -> Accepted:
        request = ExportLogsServiceRequest.FromString(body)
        pids = [next(kv.value.int_value for kv in rec.attributes if kv.key == "process.pid")
                for rl in request.resource_logs for sl in rl.scope_logs for rec in sl.log_records]
        self.requests.append(pids)
        self.sizes.append(len(body))
        result = self.script(pids)
        self.accepted += pids
        return result

    async def close(self) -> None:
        return None


class ListDeadLetter:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        self.envelopes += envelopes


def events(processor: Processor, count: int) -> list[Envelope]:
    envs = process_lines(processor, list(synth.generate(count, seed=2, mix={"exec": 1})))
    return envs


def pid(env: Envelope) -> int:
    return env.decoded.body.process.pid  # type: ignore[union-attr]


async def make(transport: FakeTransport, **kw: object) -> OtlpSink:
    sink = OtlpSink(SETTINGS, transport=transport, log=io.StringIO(), **kw)  # type: ignore[arg-type]
    await sink.start()
    return sink


async def test_requests_are_bounded_in_records_and_bytes(processor: Processor) -> None:
    envs = events(processor, 300)
    transport = FakeTransport()
    sink = await make(transport, max_records=64, max_bytes=64 * 1024)
    await sink.write(envs)
    assert sorted(transport.accepted) == sorted(pid(e) for e in envs)
    assert all(len(r) <= 64 for r in transport.requests)
    assert max(transport.sizes) <= 64 * 1024 and len(transport.requests) >= 300 * 1500 // (64 * 1024)
    assert sink.counters["exported"] == 300


async def test_retryable_failure_raises_with_hint_and_does_not_resend_accepted(processor: Processor) -> None:
    envs = events(processor, 100)
    calls = {"n": 0}

    def script(pids: list[int]) -> Accepted:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ExportError("retry", "gRPC UNAVAILABLE: down", retry_after=3.0)
        return Accepted()

    transport = FakeTransport(script)
    sink = await make(transport, max_records=25, max_concurrent_requests=1)
    with pytest.raises(SinkError) as failure:
        await sink.write(envs)
    assert failure.value.retryable and failure.value.retry_after == 3.0
    await sink.write(envs)  # the runner retries the same list: only what was not accepted is sent again
    assert sorted(transport.accepted) == sorted(pid(e) for e in envs)
    assert len(transport.accepted) == len(set(transport.accepted)) == 100


async def test_invalid_argument_is_bisected_to_the_bad_record(processor: Processor) -> None:
    envs = events(processor, 50)
    bad = pid(envs[37])

    def script(pids: list[int]) -> Accepted:
        if bad in pids:
            raise ExportError("bad_data", "gRPC INVALID_ARGUMENT: bad record")
        return Accepted()

    transport = FakeTransport(script)
    dead = ListDeadLetter()
    sink = await make(transport, dead_letter=dead)
    await sink.write(envs)
    assert [e.raw for e in dead.envelopes] == [envs[37].raw]  # a copy, carrying the reason
    assert dead.envelopes[0].error is not None and dead.envelopes[0].error.reason == "refused_by_collector"
    assert sorted(transport.accepted) == sorted(pid(e) for e in envs if pid(e) != bad)
    assert sink.counters["dead_lettered"] == 1 and sink.counters["exported"] == 49
    assert len(transport.requests) <= 2 * 6 + 1  # log2(50) levels, two requests each


@pytest.mark.expect_errors
async def test_without_dead_letter_a_bad_record_is_counted_and_reported(processor: Processor) -> None:
    envs = events(processor, 8)
    bad = pid(envs[3])
    transport = FakeTransport(lambda pids: (_ for _ in ()).throw(ExportError("bad_data", "HTTP 400: no"))
                              if bad in pids else Accepted())
    sink = await make(transport)
    await sink.write(envs)
    assert sink.counters["dropped_invalid"] == 1 and sink.counters["exported"] == 7
    assert "no dead-letter path is configured: dropped" in sink.log.getvalue()  # type: ignore[attr-defined]


async def test_too_large_is_split_and_fatal_stops(processor: Processor) -> None:
    envs = events(processor, 40)
    transport = FakeTransport(lambda pids: (_ for _ in ()).throw(ExportError("too_large", "HTTP 413"))
                              if len(pids) > 10 else Accepted())
    sink = await make(transport)
    await sink.write(envs)
    assert sorted(transport.accepted) == sorted(pid(e) for e in envs)

    fatal = await make(FakeTransport(lambda pids: (_ for _ in ()).throw(ExportError("fatal", "HTTP 401"))))
    with pytest.raises(SinkError) as failure:
        await fatal.write(envs)
    assert not failure.value.retryable


@pytest.mark.expect_errors
async def test_partial_success_is_counted_and_reported(processor: Processor) -> None:
    sink = await make(FakeTransport(lambda pids: Accepted(2, "two were odd")))
    await sink.write(events(processor, 10))
    assert sink.counters["rejected_partial"] == 2 and sink.counters["exported"] == 8
    assert "two were odd" in sink.log.getvalue()  # type: ignore[attr-defined]


def test_response_decoding() -> None:
    from google.protobuf import any_pb2, duration_pb2
    from google.rpc import error_details_pb2, status_pb2
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

    response = ExportLogsServiceResponse()
    response.partial_success.rejected_log_records = 7
    response.partial_success.error_message = "bad ones"
    accepted = partial_success_protobuf(response.SerializeToString())
    assert (accepted.rejected, accepted.message) == (7, "bad ones")
    assert partial_success_protobuf(b"").rejected == 0
    accepted = partial_success_json(b'{"partialSuccess":{"rejectedLogRecords":"3","errorMessage":"x"}}')
    assert (accepted.rejected, accepted.message) == (3, "x")
    assert partial_success_json(b"{}").rejected == 0

    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2, nanos=500_000_000)))
    status = status_pb2.Status(code=8, message="slow down", details=[detail])
    assert retry_info_seconds(status.SerializeToString()) == 2.5
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None
    assert 0 <= (retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") or 0) < 1
