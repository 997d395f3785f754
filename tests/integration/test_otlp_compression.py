"""gzip compression over gRPC, HTTP/protobuf and HTTP/JSON: every event arrives exactly once, intact.

Two receivers: rotel (a real collector accepts our gzip; the client-side checks show the compressed
bytes are what went out) and the scripted receiver, which sees the wire: HTTP requests'
`Content-Encoding` and body size, and each gRPC message's compressed flag (read from the HTTP/2
frames) — so these tests cannot pass with compression silently off.  `compression: none` is the
control: the same evidence then says "not compressed".
"""

from __future__ import annotations

import asyncio
import gzip

import pytest
from collector import Collector
from otlp_fixtures import otlp_collector, otlp_wire_receiver  # noqa: F401 (fixtures)
from otlp_receiver import OtlpReceiver
from test_otlp_delivery import RecordingSource, assert_exactly_once, endpoint

from tests.support import synth
from tetrapipe.pipeline.processor import Processor
from tetrapipe.pipeline.runner import Pipeline
from tetrapipe.sinks.otlp import sink as otlp_module
from tetrapipe.sinks.otlp import transport as otlp_transport
from tetrapipe.sinks.otlp.config import OtlpSinkConfig, build_sink

pytestmark = pytest.mark.integration
PROTOCOLS = ["grpc", "http/protobuf", "http/json"]


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf", "http/json"])
async def test_gzip_requests_arrive_exactly_once(otlp_collector: Collector, processor: Processor, protocol: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    compressed: list[tuple[int, int]] = []  # (plain bytes, gzip bytes) per HTTP request

    real_compress = gzip.compress

    def counting_compress(data: bytes, level: int = 9) -> bytes:
        out = real_compress(data, level)
        compressed.append((len(data), len(out)))
        return out

    monkeypatch.setattr(otlp_transport.gzip, "compress", counting_compress)
    made: list[object] = []
    real_make = otlp_module.make_transport
    monkeypatch.setattr(otlp_module, "make_transport", lambda settings: made.append(real_make(settings)) or made[-1])
    source = RecordingSource(list(synth.generate(3000, seed=31)), batch_size=500)
    sink = build_sink(OtlpSinkConfig(endpoint=endpoint(otlp_collector, protocol), protocol=protocol,  # type: ignore[arg-type]
                                     compression="gzip"))
    assert await Pipeline(source, processor, [sink]).run() == 0
    records = await asyncio.to_thread(otlp_collector.wait_for_count, 3000, 60)
    assert_exactly_once(source, [r.body for r in records])
    (transport,) = made  # what went on the wire
    if protocol == "grpc":
        import grpc

        assert transport._compression == grpc.Compression.Gzip  # type: ignore[union-attr]  # noqa: SLF001
    else:
        assert transport._headers["Content-Encoding"] == "gzip"  # type: ignore[union-attr]  # noqa: SLF001
        assert len(compressed) == sink.counters["requests"] >= 1
        assert all(out < plain / 3 for plain, out in compressed), compressed  # JSON events compress well


async def run_to(receiver: OtlpReceiver, processor: Processor, protocol: str, n: int,
                 cfg: dict[str, object], environ: dict[str, str] | None = None) -> tuple[RecordingSource, int]:
    """Send `n` events through the pipeline; return the source and the number of requests sent."""
    source = RecordingSource(list(synth.generate(n, seed=33)), batch_size=500)
    url = receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint
    sink = build_sink(OtlpSinkConfig(endpoint=url, protocol=protocol, max_records=400, **cfg),  # type: ignore[arg-type]
                      environ=environ if environ is not None else {})
    assert await asyncio.wait_for(Pipeline(source, processor, [sink]).run(), 60) == 0
    records = await asyncio.to_thread(receiver.wait_for_count, n, 30)
    assert_exactly_once(source, [r.body for r in records])
    assert [e.outcome for e in receiver.requests()] == ["ok"] * sink.counters["requests"]
    return source, sink.counters["requests"]


def assert_wire(receiver: OtlpReceiver, protocol: str, gzipped: bool) -> None:
    """What the receiver saw on the wire: every request compressed (or, for the control, none)."""
    entries = receiver.requests()
    payload = sum(e.payload_bytes for e in entries)
    if protocol == "grpc":
        messages = receiver.grpc_messages()
        assert len(messages) == len(entries) >= 2
        assert [m.compressed for m in messages] == [gzipped] * len(messages)
        wire = sum(m.wire_bytes for m in messages)
    else:
        assert [e.encoding for e in entries] == ["gzip" if gzipped else ""] * len(entries)
        wire = sum(e.wire_bytes or 0 for e in entries)
    if gzipped:
        assert wire < payload / 3, (wire, payload)  # Tetragon JSON compresses well
    elif protocol != "http/json":
        assert wire >= payload, (wire, payload)  # protobuf as is (+ gRPC's 5-byte prefix)
    else:
        assert wire > payload, (wire, payload)  # JSON is larger than the same request in protobuf


@pytest.mark.parametrize("compression", ["gzip", "none"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_receiver_sees_compressed_requests_and_every_event_once(
        otlp_wire_receiver: OtlpReceiver, processor: Processor, protocol: str, compression: str) -> None:
    source, requests = await run_to(otlp_wire_receiver, processor, protocol, 2000, {"compression": compression})
    assert requests >= 5  # max_records=400: several requests, each one checked
    assert_wire(otlp_wire_receiver, protocol, gzipped=compression == "gzip")
    got = {r.body: r for r in otlp_wire_receiver.received_log_records()}
    for env in source.produced[:50]:  # the content survived decompression: body, time, node
        rec = got[env.out.decode()]
        assert rec.time_unix_nano > 0 and rec.resource_attributes["service.name"] == "tetrapipe"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_compression_from_the_otel_environment_variable(otlp_wire_receiver: OtlpReceiver,
                                                              processor: Processor, protocol: str) -> None:
    await run_to(otlp_wire_receiver, processor, protocol, 900, {},
                 environ={"OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "gzip"})
    assert_wire(otlp_wire_receiver, protocol, gzipped=True)
