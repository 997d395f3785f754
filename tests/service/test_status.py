"""The status endpoint and the metrics it serves, against fakes: what /metrics, /livez and /readyz say."""

from __future__ import annotations

import asyncio
import io

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.events import exec_event
from tests.support.fakes import ListSource, ScriptedSink
from tetrapipe.pipeline.runner import Pipeline, RetryPolicy
from tetrapipe.service.metrics import registry_for
from tetrapipe.service.status import StatusServer


async def http(port: int, target: str, method: str = "GET", headers: str = "") -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP/1.1 request to 127.0.0.1:port → (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    parsed = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
    return int(status_line.split()[1]), parsed, body


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} from Prometheus text exposition."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode()) for s in family.samples}


def lines(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        binary = "/usr/bin/sudo" if i % 2 else "/bin/ls"
        out.append(b"{not json" if i % 10 == 9 else orjson.dumps(exec_event(binary, str(i))))
    return out


@pytest.fixture
async def served(processor):
    """A pipeline over 100 records (10 malformed) with a gated source, and its status server."""
    source = ListSource(lines(100), batch_size=10)
    source.gate = asyncio.Event()
    sink, dlq = ScriptedSink("out"), ScriptedSink("dlq")
    pipeline = Pipeline(source, processor, [sink], dead_letter=dlq, log=io.StringIO(),
                        retry=RetryPolicy(initial=0.001, maximum=0.01))
    server = StatusServer(registry_for(pipeline, "9.9.9"), pipeline.health, host="127.0.0.1", port=0)
    await server.start()
    yield pipeline, source, sink, server
    await server.close()


async def test_readyz_follows_the_pipeline_and_livez_ends_with_it(served):
    pipeline, source, sink, server = served
    assert (await http(server.port, "/readyz"))[0] == 503  # not started yet
    assert (await http(server.port, "/livez"))[0] == 200
    run = asyncio.create_task(pipeline.run())
    for _ in range(100):
        await asyncio.sleep(0.01)
        if (await http(server.port, "/readyz"))[0] == 200:
            break
    status, _, body = await http(server.port, "/readyz")
    assert (status, body) == (200, b"ok\n")
    source.gate.set()
    await run
    status, _, body = await http(server.port, "/livez")
    assert status == 503 and b"ended" in body


async def test_readyz_names_a_failing_sink_and_recovers(served):
    pipeline, source, sink, server = served
    sink.fail_retryable = 10**6
    pipeline.delivery.retry = RetryPolicy(initial=0.01, maximum=0.01)
    run = asyncio.create_task(pipeline.run())
    source.gate.set()
    for _ in range(200):
        await asyncio.sleep(0.01)
        if pipeline.failing:
            break
    status, _, body = await http(server.port, "/readyz")
    assert status == 503 and b"sink out: scripted outage" in body
    metrics = samples((await http(server.port, "/metrics"))[2])
    assert metrics[("tetrapipe_sink_up", (("sink", "out"),))] == 0
    assert metrics[("tetrapipe_sink_retries_total", (("sink", "out"),))] >= 1
    assert metrics[("tetrapipe_in_flight_events", ())] > 0
    sink.fail_retryable = 0
    await asyncio.wait_for(run, 10)
    assert not pipeline.failing


async def test_metrics_count_what_the_pipeline_did(served):
    pipeline, source, sink, server = served
    source.gate.set()
    await pipeline.run()
    status, headers, body = await http(server.port, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    m = samples(body)
    assert m[("tetrapipe_build_info", (("version", "9.9.9"),))] == 1
    assert m[("tetrapipe_records_received_total", (("source", "list"),))] == 100
    assert m[("tetrapipe_events_decoded_total", (("source", "list"),))] == 90
    assert m[("tetrapipe_records_bad_total", (("reason", "invalid_json"),))] == 10
    assert m[("tetrapipe_records_dead_lettered_total", (("reason", "invalid_json"),))] == 10
    assert m[("tetrapipe_events_sent_total", (("sink", "out"),))] == 90
    sent = {dict(labels)["category"]: v for (name, labels), v in m.items()
            if name == "tetrapipe_category_events_sent_total"}
    sudo = sum(1 for i in range(100) if i % 2 and i % 10 != 9)
    assert sent == {"sudo": sudo, "untagged": 90 - sudo}
    assert m[("tetrapipe_events_tagged_total", (("category", "sudo"),))] == sudo
    assert m[("tetrapipe_batch_latency_seconds_count", ())] == 10
    assert m[("tetrapipe_batch_latency_seconds_bucket", (("le", "+Inf"),))] == 10
    assert m[("tetrapipe_in_flight_events", ())] == 0
    assert m[("tetrapipe_commits_total", ())] >= 1
    assert m[("tetrapipe_last_commit_timestamp_seconds", ())] >= m[("tetrapipe_start_time_seconds", ())]
    assert ("process_resident_memory_bytes", ()) in m


async def test_openmetrics_is_negotiated(served):
    _, _, _, server = served
    status, headers, body = await http(server.port, "/metrics",
                                        headers="Accept: application/openmetrics-text; version=1.0.0\r\n")
    assert status == 200 and headers["content-type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


async def test_kafka_lag_is_exported_when_the_source_knows_it(processor):
    source = ListSource([])
    source.lag = lambda: {("events", 0): 7, ("events", 1): 0}  # type: ignore[attr-defined]
    pipeline = Pipeline(source, processor, [ScriptedSink()], log=io.StringIO())
    server = StatusServer(registry_for(pipeline, "1"), pipeline.health, host="127.0.0.1", port=0)
    await server.start()
    try:
        m = samples((await http(server.port, "/metrics"))[2])
    finally:
        await server.close()
    assert m[("tetrapipe_kafka_consumer_lag", (("partition", "0"), ("topic", "events")))] == 7
    assert m[("tetrapipe_kafka_consumer_lag", (("partition", "1"), ("topic", "events")))] == 0


@pytest.mark.parametrize(("request_text", "status"), [
    ("GET /nope HTTP/1.1", 404), ("POST /metrics HTTP/1.1", 405), ("garbage", 400),
])
async def test_bad_requests_get_http_errors(served, request_text, status):
    _, _, _, server = served
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request_text.encode() + b"\r\n\r\n")
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert raw.startswith(f"HTTP/1.1 {status} ".encode())


async def test_head_has_no_body_and_oversized_requests_are_cut(served):
    _, _, _, server = served
    status, headers, body = await http(server.port, "/livez", method="HEAD")
    assert status == 200 and headers["content-length"] == "3" and body == b""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
    try:  # closed without an answer (a reset, if the close overtook our unread bytes)
        assert await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionResetError:
        pass
    writer.close()
