"""Smoke tests for the OTLP test infrastructure: rotel collector + scriptable receiver.

They prove, with the official OpenTelemetry Python exporters and a hand-built OTLP/JSON
request, that what a client sends is read back exactly once and field for field, and
that kill/restart and scripted failures behave as documented.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import grpc
import pytest
from collector import Collector
from google.rpc import error_details_pb2, status_pb2
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from otlp_fixtures import otlp_collector, otlp_receiver  # noqa: F401 (fixtures)
from otlp_receiver import OtlpReceiver, ReceivedLog

pytestmark = pytest.mark.integration

BASE_NS = 1_700_000_000_000_000_000
RESOURCE = {"service.name": "tetrapipe-smoke", "host.name": "ci"}
SCOPE = InstrumentationScope("smoke-scope", "1.2.3")


def make_records(start: int, count: int) -> list[ReadableLogRecord]:
    """SDK log records numbered ``start..start+count-1`` with string/int/bool/double/array attributes."""
    resource = Resource(RESOURCE)
    return [
        ReadableLogRecord(
            log_record=LogRecord(
                timestamp=BASE_NS + i,
                observed_timestamp=BASE_NS + i + 7,
                severity_text="WARN",
                severity_number=SeverityNumber.WARN,
                body=f"event {i}",
                attributes={"seq": i, "name": f"n{i}", "even": i % 2 == 0, "ratio": i / 4, "tags": ("a", f"t{i}")},
                event_name="tetragon.process_exec",
            ),
            resource=resource,
            instrumentation_scope=SCOPE,
        )
        for i in range(start, start + count)
    ]


def expected(i: int) -> ReceivedLog:
    """What the collector must hand back for record ``i`` of :func:`make_records`."""
    return ReceivedLog(
        resource_attributes=RESOURCE,
        scope_name=SCOPE.name,
        scope_version="1.2.3",
        time_unix_nano=BASE_NS + i,
        observed_time_unix_nano=BASE_NS + i + 7,
        severity_number=SeverityNumber.WARN.value,
        severity_text="WARN",
        body=f"event {i}",
        attributes={"seq": i, "name": f"n{i}", "even": i % 2 == 0, "ratio": i / 4, "tags": ["a", f"t{i}"]},
        event_name="tetragon.process_exec",
        trace_id="",
        span_id="",
        flags=0,
        dropped_attributes_count=0,
    )


def export_in_batches(exporter: Any, start: int, count: int, batch: int = 250) -> None:
    """Export ``count`` records in several requests; every request must succeed."""
    for first in range(start, start + count, batch):
        result = exporter.export(make_records(first, min(batch, start + count - first)))
        assert result == LogRecordExportResult.SUCCESS


def assert_exactly(records: Sequence[ReceivedLog], seqs: range) -> None:
    """Every expected record is present exactly once and equal field for field."""
    by_seq: dict[int, list[ReceivedLog]] = {}
    for rec in records:
        by_seq.setdefault(rec.attributes["seq"], []).append(rec)
    assert sorted(by_seq) == list(seqs)
    for seq, copies in by_seq.items():
        assert copies == [expected(seq)], f"record {seq}"


def grpc_exporter(endpoint: str, timeout: float = 5.0) -> GrpcLogExporter:
    return GrpcLogExporter(endpoint=endpoint, insecure=True, timeout=timeout)


def http_exporter(endpoint: str, timeout: float = 5.0) -> HttpLogExporter:
    return HttpLogExporter(endpoint=endpoint + "/v1/logs", timeout=timeout)


@pytest.mark.parametrize("transport", ["grpc", "http-protobuf"])
def test_sdk_export_reads_back_exactly_once(otlp_collector: Collector, transport: str) -> None:
    make = grpc_exporter if transport == "grpc" else http_exporter
    endpoint = otlp_collector.grpc_endpoint if transport == "grpc" else otlp_collector.http_endpoint
    exporter = make(endpoint)
    try:
        export_in_batches(exporter, 0, 1000)
    finally:
        exporter.shutdown()
    otlp_collector.wait_for_count(1000, timeout=10)
    assert_exactly(otlp_collector.received_log_records(), range(1000))


def otlp_json_request() -> dict[str, Any]:
    """A hand-built OTLP/JSON body (camelCase, int64 as strings, hex ids, typed AnyValues)."""
    record = {
        "timeUnixNano": "1700000000000000001",
        "observedTimeUnixNano": "1700000000000000002",
        "severityNumber": 17,
        "severityText": "ERROR",
        "eventName": "tetragon.process_kprobe",
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "flags": 1,
        "body": {"kvlistValue": {"values": [{"key": "msg", "value": {"stringValue": "héllo \"quoted\"\n"}}]}},
        "attributes": [
            {"key": "s", "value": {"stringValue": "x"}},
            {"key": "i", "value": {"intValue": "9007199254740993"}},
            {"key": "b", "value": {"boolValue": True}},
            {"key": "d", "value": {"doubleValue": 0.5}},
            {"key": "arr", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}}},
        ],
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "json-client"}}]}
    return {"resourceLogs": [{"resource": resource, "scopeLogs": [{"scope": {"name": "json-scope"}, "logRecords": [record]}]}]}


def post(url: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    """POST and return (status, body) for 2xx and HTTP errors alike."""
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read()


def test_hand_built_otlp_json_reads_back(otlp_collector: Collector) -> None:
    status, _ = post(otlp_collector.http_endpoint + "/v1/logs", json.dumps(otlp_json_request()).encode(), "application/json")
    assert status == 200
    [rec] = otlp_collector.wait_for_count(1, timeout=10)
    assert rec == ReceivedLog(
        resource_attributes={"service.name": "json-client"},
        scope_name="json-scope",
        scope_version="",
        time_unix_nano=1700000000000000001,
        observed_time_unix_nano=1700000000000000002,
        severity_number=17,
        severity_text="ERROR",
        body={"msg": 'héllo "quoted"\n'},
        attributes={"s": "x", "i": 9007199254740993, "b": True, "d": 0.5, "arr": ["a", "b"]},
        event_name="tetragon.process_kprobe",
        trace_id="5b8efff798038103d269b633813fc60c",
        span_id="eee19b7ec3c1b174",
        flags=1,
        dropped_attributes_count=0,
    )


def test_large_single_request_is_not_dropped(otlp_collector: Collector) -> None:
    """20,000 records in one request: rotel with default batching would silently drop it."""
    exporter = http_exporter(otlp_collector.http_endpoint, timeout=30)
    try:
        assert exporter.export(make_records(0, 20_000)) == LogRecordExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert len(otlp_collector.wait_for_count(20_000, timeout=20)) == 20_000


def test_kill_then_restart(otlp_collector: Collector) -> None:
    grpc_exp = grpc_exporter(otlp_collector.grpc_endpoint, timeout=1.5)
    http_exp = http_exporter(otlp_collector.http_endpoint, timeout=1.5)
    try:
        export_in_batches(grpc_exp, 0, 100)
        otlp_collector.wait_for_count(100, timeout=10)

        otlp_collector.kill()
        assert not otlp_collector.running
        assert grpc_exp.export(make_records(100, 10)) == LogRecordExportResult.FAILURE
        assert http_exp.export(make_records(100, 10)) == LogRecordExportResult.FAILURE

        otlp_collector.restart()
        assert otlp_collector.running
        export_in_batches(grpc_exp, 100, 100)
        export_in_batches(http_exp, 200, 100)
    finally:
        grpc_exp.shutdown()
        http_exp.shutdown()
    otlp_collector.wait_for_count(300, timeout=10)
    assert_exactly(otlp_collector.received_log_records(), range(300))


def raw_request(seq: int) -> logs_service_pb2.ExportLogsServiceRequest:
    """A one-record protobuf request, built with the official message types."""
    req = logs_service_pb2.ExportLogsServiceRequest()
    rec = req.resource_logs.add().scope_logs.add().log_records.add()
    rec.time_unix_nano = BASE_NS + seq
    kv = rec.attributes.add()
    kv.key, kv.value.int_value = "seq", seq
    return req


def test_receiver_scripted_grpc_failures(otlp_receiver: OtlpReceiver) -> None:
    otlp_receiver.fail_next(2, grpc_code="RESOURCE_EXHAUSTED", retry_after_s=3)
    with grpc.insecure_channel(otlp_receiver.grpc_endpoint.removeprefix("http://")) as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        for seq in (0, 1):
            with pytest.raises(grpc.RpcError) as failure:
                stub.Export(raw_request(seq), timeout=5)
            assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            details = dict(failure.value.trailing_metadata())["grpc-status-details-bin"]
            retry_info = error_details_pb2.RetryInfo()
            assert status_pb2.Status.FromString(details).details[0].Unpack(retry_info)
            assert retry_info.retry_delay.seconds == 3
        stub.Export(raw_request(2), timeout=5)

    assert [(e.transport, e.outcome) for e in otlp_receiver.requests()] == [
        ("grpc", "RESOURCE_EXHAUSTED"), ("grpc", "RESOURCE_EXHAUSTED"), ("grpc", "ok")
    ]  # fmt: skip
    assert [r.attributes["seq"] for r in otlp_receiver.received_log_records()] == [2]


def test_receiver_scripted_http_failures(otlp_receiver: OtlpReceiver) -> None:
    url = otlp_receiver.http_endpoint + "/v1/logs"
    otlp_receiver.fail_next(1, http_status=429, retry_after_s=2)
    req = urllib.request.Request(url, data=raw_request(0).SerializeToString(),
                                 headers={"Content-Type": "application/x-protobuf"})  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as failure:
        urllib.request.urlopen(req, timeout=5)
    with failure.value as err:
        assert (err.code, err.headers["Retry-After"]) == (429, "2")

    otlp_receiver.fail_next(1, http_status=400)
    assert post(url, json.dumps(otlp_json_request()).encode(), "application/json")[0] == 400
    assert post(url, json.dumps(otlp_json_request()).encode(), "application/json") == (200, b"{}")
    assert post(url, b"not json", "application/json")[0] == 400  # undecodable: rejected, not journalled
    assert [e.outcome for e in otlp_receiver.requests()] == ["HTTP 429", "HTTP 400", "ok"]
    assert len(otlp_receiver.wait_for_count(1, timeout=5)) == 1
