"""gzip compression against a real collector (rotel): every protocol delivers every event exactly once,
and the requests really were compressed (the compressed bytes are what went out)."""

from __future__ import annotations

import asyncio
import gzip

import pytest
from collector import Collector
from otlp_fixtures import otlp_collector  # noqa: F401 (fixture)
from test_otlp_delivery import RecordingSource, assert_exactly_once, endpoint

from pipeline.process import Processor
from pipeline.runner import Pipeline
from sinks import otlp as otlp_module
from sinks import otlp_transport
from sinks.otlp_config import OtlpSinkConfig, build_sink
from tests.support import synth

pytestmark = pytest.mark.integration


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
