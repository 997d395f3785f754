"""OTLP sink failure handling against real OTLP servers: retry hints, bisection of bad records, fan-out acks.

Retry hints and fan-out use the scriptable OtlpReceiver (rotel cannot be told to
throttle).  Bisection needs a server that refuses a request *because of one
record in it*, which neither rotel nor the receiver's count-based script can do:
`PoisonServer` below is a real gRPC + HTTP OTLP server on the official
`opentelemetry-proto` definitions that answers INVALID_ARGUMENT / HTTP 400 to any
request holding a record whose body contains the poison marker.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import msgspec
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from otlp_fixtures import otlp_collector, otlp_receiver  # noqa: F401 (fixtures)
from otlp_receiver import OtlpReceiver, free_port

from tests.support import synth
from tests.support.fakes import ListSource, ScriptedSink
from tetrapipe.event.envelope import Envelope
from tetrapipe.pipeline.processor import Processor
from tetrapipe.pipeline.runner import Pipeline, RetryPolicy
from tetrapipe.sinks.base import Selection
from tetrapipe.sinks.otlp.config import OtlpSinkConfig, build_sink

pytestmark = pytest.mark.integration
POISON = "POISON-PILL"


def endpoint(server: Any, protocol: str) -> str:
    return server.grpc_endpoint if protocol == "grpc" else server.http_endpoint


def pids(records: Sequence[Any]) -> list[int]:
    return [r.attributes["process.pid"] for r in records]


def env_pid(env: Envelope) -> int:
    return env.decoded.body.process.pid  # type: ignore[union-attr]


@pytest.mark.parametrize("protocol, failure", [
    ("grpc", {"grpc_code": "RESOURCE_EXHAUSTED"}), ("grpc", {"grpc_code": "UNAVAILABLE"}),
    ("http/protobuf", {"http_status": 429}), ("http/json", {"http_status": 503})])
async def test_retries_honor_the_servers_retry_hint(otlp_receiver: OtlpReceiver, processor: Processor,
                                                    protocol: str, failure: dict[str, Any]) -> None:
    lines = list(synth.generate(300, seed=31, mix={"exec": 1}))
    otlp_receiver.fail_next(2, retry_after_s=1, **failure)
    sink = build_sink(OtlpSinkConfig(endpoint=endpoint(otlp_receiver, protocol), protocol=protocol))  # type: ignore[arg-type]
    # Without the hint the runner would retry after ≤ 10 ms (initial 1 ms); with it, after 1 s each time.
    pipeline = Pipeline(ListSource(lines, batch_size=300), processor, [sink], retry=RetryPolicy(0.001, 5.0))
    started = time.monotonic()
    assert await pipeline.run() == 0
    assert time.monotonic() - started >= 1.9
    assert [e.outcome != "ok" for e in otlp_receiver.requests()] == [True, True, False]
    assert pipeline.stats.sink_retries[sink.name] == 2
    assert sorted(pids(otlp_receiver.received_log_records())) == sorted(
        msgspec.json.decode(line)["process_exec"]["process"]["pid"] for line in lines)


class PoisonServer:
    """OTLP gRPC + HTTP/protobuf server that refuses (as invalid) any request containing POISON."""

    def __init__(self) -> None:
        self.accepted: list[logs_service_pb2.ExportLogsServiceRequest] = []
        self.refused = 0
        self._lock = threading.Lock()
        self.grpc_port, self.http_port = free_port(), free_port()
        self.grpc_endpoint = f"http://127.0.0.1:{self.grpc_port}"
        self.http_endpoint = f"http://127.0.0.1:{self.http_port}"

    def judge(self, request: logs_service_pb2.ExportLogsServiceRequest) -> bool:
        poisoned = any(POISON in rec.body.string_value for rl in request.resource_logs
                       for sl in rl.scope_logs for rec in sl.log_records)
        with self._lock:
            if poisoned:
                self.refused += 1
            else:
                self.accepted.append(request)
        return not poisoned

    def records(self) -> list[Any]:
        with self._lock:
            return [rec for req in self.accepted for rl in req.resource_logs for sl in rl.scope_logs
                    for rec in sl.log_records]

    def start(self) -> None:
        server = self

        class Servicer(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 (generated name)
                if not server.judge(request):
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "record carries poison")
                return logs_service_pb2.ExportLogsServiceResponse()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:  # noqa: N802 (stdlib name)
                request = logs_service_pb2.ExportLogsServiceRequest.FromString(
                    self.rfile.read(int(self.headers["Content-Length"])))
                ok = server.judge(request)
                body = logs_service_pb2.ExportLogsServiceResponse().SerializeToString() if ok else b"poison"
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "application/x-protobuf" if ok else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Servicer(), self._grpc)
        self._grpc.add_insecure_port(f"127.0.0.1:{self.grpc_port}")
        self._grpc.start()
        self._http = ThreadingHTTPServer(("127.0.0.1", self.http_port), Handler)
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._grpc.stop(grace=1).wait(5)


@pytest.fixture
def poison_server() -> Iterator[PoisonServer]:
    server = PoisonServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class ListDeadLetter:
    name = "dead letters"

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def start(self) -> None:
        pass

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        self.envelopes += envelopes

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
async def test_invalid_argument_is_bisected_and_only_the_bad_record_is_dead_lettered(
        poison_server: PoisonServer, processor: Processor, protocol: str) -> None:
    events = [msgspec.json.decode(line) for line in synth.generate(1000, seed=32, mix={"exec": 1})]
    events[613]["process_exec"]["process"]["arguments"] = f"--payload {POISON}"
    lines = [msgspec.json.encode(e) for e in events]
    dead = ListDeadLetter()
    sink = build_sink(OtlpSinkConfig(endpoint=endpoint(poison_server, protocol), protocol=protocol))  # type: ignore[arg-type]
    source = ListSource(lines, batch_size=500)
    # the run's dead letter: delivery dead-letters what the sink rejects (tetrapipe.sinks.rejections)
    assert await Pipeline(source, processor, [sink], dead_letter=dead).run() == 0
    assert [e.raw for e in dead.envelopes] == [lines[613]]
    good = [e["process_exec"]["process"]["pid"] for i, e in enumerate(events) if i != 613]
    received = [next(kv.value.int_value for kv in r.attributes if kv.key == "process.pid")
                for r in poison_server.records()]
    assert sorted(received) == sorted(good)  # every good record exactly once
    assert 1 < poison_server.refused <= 2 * 9 + 1  # ≈ log2(500) levels of bisection
    assert sink.counters["dead_lettered"] == 1 and source.commits[-1] == 1000


async def test_fan_out_acknowledges_a_batch_only_when_every_selecting_sink_did(
        otlp_receiver: OtlpReceiver, processor: Processor) -> None:
    tagged = list(synth.generate_tagged(2000, seed=33))
    lines = [line for _, line in tagged]
    everything = ScriptedSink("stdout-like")
    security = build_sink(OtlpSinkConfig(endpoint=otlp_receiver.http_endpoint, name="otlp-security",
                                         select=Selection(groups=frozenset({"security"}), untagged=False)))
    source = ListSource(lines, batch_size=250)
    pipeline = Pipeline(source, processor, [everything, security], retry=RetryPolicy(0.02, 0.1))
    otlp_receiver.fail_next(10_000, http_status=503)  # the OTLP collector is "down"
    run = asyncio.create_task(pipeline.run())
    for _ in range(200):
        if everything.delivered:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(1.0)
    assert everything.delivered and not run.done()
    assert source.commits == [], "no batch may be acknowledged while the OTLP sink has not acknowledged it"
    otlp_receiver.fail_next(0)  # back up
    assert await asyncio.wait_for(run, 60) == 0
    assert source.commits[-1] == 2000 and len(everything.delivered) == 2000
    security_envs = [e for e in everything.delivered if "security" in e.tags.groups]
    received = otlp_receiver.wait_for_count(len(security_envs), 10)
    assert len(received) == len(security_envs) > 0
    assert {r.body for r in received} == {e.out.decode() for e in security_envs}
    assert all("security" in r.attributes["tetrapipe.groups"] for r in received)
