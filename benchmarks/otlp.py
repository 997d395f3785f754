"""stdin → OTLP logs throughput of one tetrapipe process, per protocol, against the OpenTelemetry SDK in one run.

Usage:  .venv/bin/python benchmarks/otlp.py [--events 100000] [--rounds 3]

Topology, all on 127.0.0.1, chosen with --collector:
  forward (default):  worker --OTLP--> rotel (--disable-batching) --OTLP/gRPC--> counter.
      The counter is a gRPC server that counts LogRecords by walking the protobuf wire
      format; its count is what "arrived".  rotel's re-export costs it ~1.2 s of CPU per
      60,000 records, so this chain itself tops out near 45,000 records/s on one CPU.
  blackhole:  worker --OTLP--> rotel (--exporter blackhole): the collector receives, decodes
      and acknowledges every request, then discards it; what "arrived" is what the collector
      acknowledged, as the worker counted it (tetrapipe: records in accepted export requests
      minus partial rejections; the SDK path: records in exports that returned SUCCESS).
With `taskset`, the worker runs on CPU 0 and rotel (+ counter) on CPU 1.

Each round, in turn (interleaved, so machine noise hits all alike), with the same synthetic corpus:
  - tetrapipe-<protocol>: a tetrapipe process (stdin source → processor → OtlpSink; what `tetrapipe run
    --otlp-endpoint URL --otlp-protocol P` runs) for grpc, http/protobuf and http/json;
  - sdk-batch: the same decoding/tagging and the same records (attributes from tetrapipe's mapping), emitted
    through the OpenTelemetry SDK's LoggerProvider + BatchLogRecordProcessor (defaults) + OTLPLogExporter
    (HTTP/protobuf), then `shutdown()` (flush).  Its drops are events minus what the counter received.
Prints medians of events/s (wall time of the worker process, start to exit) and dropped records.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

MODES = ("tetrapipe-grpc", "tetrapipe-http/protobuf", "tetrapipe-http/json", "sdk-batch")
CIDRS = ["--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12"]


# ------------------------------------------------------------------ the counting receiver


def count_records(body: bytes) -> int:
    """LogRecords in an ExportLogsServiceRequest, by walking field tags (records are skipped, not decoded)."""
    from tetrapipe.sinks.otlp.transport import _iter_fields

    return sum(1 for _, rl in _iter_fields(body) for number, sl in _iter_fields(rl) if number == 2
               for n, _ in _iter_fields(sl) if n == 2)


def serve_counter(port: int, counter: multiprocessing.sharedctypes.Synchronized) -> None:  # type: ignore[name-defined]
    from concurrent import futures

    import grpc

    def export(request: bytes, context: object) -> bytes:
        n = count_records(request)
        with counter.get_lock():
            counter.value += n
        return b""

    handler = grpc.method_handlers_generic_handler("opentelemetry.proto.collector.logs.v1.LogsService", {
        "Export": grpc.unary_unary_rpc_method_handler(export)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2),
                         options=[("grpc.max_receive_message_length", 512 << 20)])
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


# ------------------------------------------------------------------ workers (run as child processes)


def _processor():  # type: ignore[no-untyped-def]
    from tetrapipe.config.root import Config, build_classifier, build_tagger
    from tetrapipe.pipeline.processor import Processor

    return Processor(build_tagger(Config().library),
                     build_classifier(Config().egress, ["10.244.0.0/16"], ["10.96.0.0/12"]))


def worker_tetrapipe(protocol: str, endpoint: str) -> int:
    """What `tetrapipe run --otlp-endpoint ENDPOINT --otlp-protocol PROTOCOL` does (stdin → OTLP)."""
    import argparse as ap
    import asyncio

    from tetrapipe.cli.main import tune_gc
    from tetrapipe.pipeline.runner import Pipeline
    from tetrapipe.sinks.otlp.config import build_otlp_sinks
    from tetrapipe.sources import StdinSource

    args = ap.Namespace(otlp_endpoint=[endpoint], otlp_protocol=protocol, otlp_header=[])
    sinks = build_otlp_sinks(args, None, None)
    pipeline = Pipeline(StdinSource(), _processor(), sinks)
    tune_gc()
    code = asyncio.run(pipeline.run())
    counters = sinks[0].counters
    sys.stderr.write(f"{dict(counters)}\n")
    sys.stderr.write(f"ACCEPTED {counters['exported']}\n")
    return code


def worker_sdk(endpoint: str) -> int:
    """The same records through the SDK's BatchLogRecordProcessor (defaults), then a flush."""
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    from tetrapipe.cli.main import tune_gc
    from tetrapipe.event.envelope import Batch, Envelope
    from tetrapipe.sinks.otlp.mapping import LogMapper

    accepted = 0

    class CountingExporter(OTLPLogExporter):  # type: ignore[misc]
        def export(self, batch):  # type: ignore[no-untyped-def]
            nonlocal accepted
            result = super().export(batch)
            if getattr(result, "name", None) == "SUCCESS":  # LogExportResult / LogRecordExportResult
                accepted += len(batch)
            return result

    provider = LoggerProvider(resource=Resource({"service.name": "tetrapipe"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(CountingExporter(endpoint=endpoint + "/v1/logs")))
    logger = provider.get_logger("tetrapipe")
    processor, mapper = _processor(), LogMapper()
    tune_gc()
    tail = b""
    while chunk := os.read(0, 1 << 20):
        lines = (tail + chunk).split(b"\n")
        tail = lines.pop()
        batch = Batch([Envelope(line, i) for i, line in enumerate(lines)])
        processor.process(batch)
        for env in batch.good:
            f = mapper.record(env)
            logger.emit(LogRecord(timestamp=f.time_ns, observed_timestamp=f.observed_ns,
                                  severity_text=f.severity_text, severity_number=SeverityNumber(f.severity),
                                  body=f.body.decode(), attributes=dict(f.attributes), event_name=f.event_name))
    provider.shutdown()
    sys.stderr.write(f"ACCEPTED {accepted}\n")
    return 0


# ------------------------------------------------------------------ driver


def taskset(cpu: str) -> list[str]:
    return ["taskset", "-c", cpu] if shutil.which("taskset") and (os.cpu_count() or 1) >= 2 else []


def run_mode(mode: str, corpus: Path, grpc_url: str, http_url: str, counter: object | None, events: int,
             pin: bool = True) -> tuple[float, int]:
    """(events/s, dropped) of one worker run."""
    protocol = mode.removeprefix("tetrapipe-")
    argv = ([sys.executable, __file__, "--worker-sdk", http_url] if mode == "sdk-batch" else
            [sys.executable, __file__, "--worker", protocol, grpc_url if protocol == "grpc" else http_url])
    before = counter.value if counter is not None else 0  # type: ignore[attr-defined]
    with corpus.open("rb") as stdin:
        started = time.perf_counter()
        proc = subprocess.run((taskset("0") if pin else []) + argv, stdin=stdin, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed: {proc.stderr.decode()[-2000:]}")
    if counter is None:  # blackhole: the collector's acknowledgements, as the worker counted them
        accepted = [line for line in proc.stderr.decode().splitlines() if line.startswith("ACCEPTED ")]
        return events / elapsed, events - int(accepted[-1].split()[1])
    received, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 2.0:  # rotel acknowledges before it forwards: let it drain
        now = counter.value - before  # type: ignore[attr-defined]
        if now != received:
            received, stable_since = now, time.monotonic()
        if received >= events:
            break
        time.sleep(0.1)
    return events / elapsed, events - received


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-pin", action="store_true", help="let the OS place the worker (default: CPU 0)")
    parser.add_argument("--collector", choices=("forward", "blackhole"), default="forward",
                        help="rotel forwards to a counting receiver (default), or acknowledges and discards")
    parser.add_argument("--worker", nargs=2, metavar=("PROTOCOL", "ENDPOINT"), help=argparse.SUPPRESS)
    parser.add_argument("--worker-sdk", metavar="ENDPOINT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker_tetrapipe(*args.worker)
    if args.worker_sdk:
        return worker_sdk(args.worker_sdk)

    from collector import rotel_binary
    from otlp_receiver import end_process, free_port, wait_for_ports

    from tests.support import synth

    work = Path(tempfile.mkdtemp(prefix="tetrapipe-otlp-bench-"))
    corpus = work / "events.jsonl"
    synth.write_file(corpus, args.events, seed=7)
    sink_port, grpc_port, http_port = free_port(), free_port(), free_port()
    counter, counting = None, None
    if args.collector == "forward":
        counter = multiprocessing.Value("q", 0)
        counting = multiprocessing.Process(target=serve_counter, args=(sink_port, counter), daemon=True)
        counting.start()
        if shutil.which("taskset"):
            subprocess.run(["taskset", "-pc", "1", str(counting.pid)], stdout=subprocess.DEVNULL, check=False)
        exporter = ["--exporter", "otlp", "--otlp-exporter-endpoint", f"http://127.0.0.1:{sink_port}",
                    "--otlp-exporter-protocol", "grpc", "--otlp-exporter-compression", "none"]
    else:
        exporter = ["--exporter", "blackhole"]
    rotel = subprocess.Popen(taskset("1") + [
        str(rotel_binary()), "start", "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
        "--otlp-http-endpoint", f"127.0.0.1:{http_port}", "--otlp-grpc-max-recv-msg-size-mib", "64",
        "--disable-batching", *exporter,
        "--pid-file", str(work / "rotel.pid"), "--log-file", str(work / "rotel-daemon.log")],
        stdout=(work / "rotel.log").open("wb"), stderr=subprocess.STDOUT)
    results: dict[str, list[tuple[float, int]]] = {mode: [] for mode in MODES}
    try:
        wait_for_ports(rotel, [grpc_port, http_port], 15, work / "rotel.log")
        for rnd in range(args.rounds):
            for mode in MODES:
                rate, dropped = run_mode(mode, corpus, f"http://127.0.0.1:{grpc_port}",
                                         f"http://127.0.0.1:{http_port}", counter, args.events, not args.no_pin)
                results[mode].append((rate, dropped))
                print(f"round {rnd + 1} {mode:26s} {rate:9,.0f} events/s  dropped {dropped:,}", flush=True)
    finally:
        end_process(rotel, signal.SIGTERM)
        if counting is not None:
            counting.kill()
    where = "worker unpinned" if args.no_pin else "worker on CPU 0"
    chain = "rotel -> counter" if args.collector == "forward" else "rotel, blackhole exporter"
    print(f"\n{args.events:,} events, median of {args.rounds} rounds ({where}; {chain} on CPU 1):")
    for mode, runs in results.items():
        rate = statistics.median(r for r, _ in runs)
        dropped = statistics.median(d for _, d in runs)
        print(f"  {mode:26s} {rate:9,.0f} events/s   dropped {dropped:,.0f} of {args.events:,}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
