"""A real, scriptable OTLP logs receiver for integration tests.

Built only on the official OpenTelemetry protobuf/gRPC service definitions
(``opentelemetry-proto``), it serves the OTLP logs signal over

* gRPC   -- ``opentelemetry.proto.collector.logs.v1.LogsService/Export``
* HTTP   -- ``POST /v1/logs`` with ``application/x-protobuf`` or
  ``application/json`` (OTLP/JSON), optionally ``Content-Encoding: gzip``

in a *child process* (so tests can SIGKILL and restart it), and journals every
request it answers to a JSON-lines file.  The parent-side :class:`OtlpReceiver`
reads that journal back as flat :class:`ReceivedLog` values.

Failure injection: :meth:`OtlpReceiver.fail_next` makes the next N requests
(on either transport) fail with a chosen gRPC code / HTTP status, optionally
with a retry delay (gRPC ``RetryInfo`` detail, HTTP ``Retry-After`` header).
Rejected requests are journalled too (see :meth:`OtlpReceiver.requests`) but
their records are *not* part of :meth:`OtlpReceiver.received_log_records`.
Requests that cannot be decoded get HTTP 400 (gRPC: the framework's INTERNAL)
and are not journalled; error bodies are plain text, not ``google.rpc.Status``.

Compression evidence: each HTTP journal entry carries the request's
``Content-Encoding`` and its body size on the wire.  gRPC hides ``grpc-encoding``
from servicers, so with ``inspect_grpc_wire=True`` the gRPC port is a relay that
reads the client's HTTP/2 DATA frames and journals every gRPC message's
*compressed* flag and wire length (:meth:`OtlpReceiver.grpc_messages`).

TLS: with ``tls_dir`` (``server.crt``/``server.key``, plus ``client-ca.crt`` to
require client certificates signed by it) both servers speak TLS only and the
endpoints are ``https://``.  (``fail_next`` talks plain HTTP: not for TLS mode.)

It is also the read-back sink behind the rotel :class:`collector.Collector`.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
MAX_MESSAGE_BYTES = 512 * 1024 * 1024  # the test receiver must never be the one dropping data
CONTROL_PATH = "/__control/fail"


# --------------------------------------------------------------------------- process helpers


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for_ports(proc: subprocess.Popen[bytes], ports: list[int], timeout: float, log: Path) -> None:
    """Block until every port accepts a TCP connection; raise if ``proc`` dies or time runs out."""
    deadline = time.monotonic() + timeout
    pending = list(ports)
    while pending:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening; see {log}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"ports {pending} not accepting after {timeout}s; see {log}")
        try:
            with socket.create_connection((LOOPBACK, pending[0]), timeout=0.2):
                pending.pop(0)
        except OSError:
            time.sleep(0.02)


def end_process(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float = 10.0) -> None:
    """Send ``sig`` and reap the process; escalate to SIGKILL if it outlives ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


# --------------------------------------------------------------------------- decoding


def any_value(value: Any) -> Any:
    """Convert an OTLP ``AnyValue`` to plain Python (arrays -> list, kvlists -> dict, empty -> None)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(key_values: Any) -> dict[str, Any]:
    """Convert repeated ``KeyValue`` to a dict (OTLP forbids duplicate keys, so a dict is lossless)."""
    return {kv.key: any_value(kv.value) for kv in key_values}


@dataclass(frozen=True)
class ReceivedLog:
    """One LogRecord exactly as the receiver got it, flattened with its resource and scope."""

    resource_attributes: dict[str, Any]
    scope_name: str
    scope_version: str
    time_unix_nano: int
    observed_time_unix_nano: int
    severity_number: int
    severity_text: str
    body: Any
    attributes: dict[str, Any]
    event_name: str
    trace_id: str  # hex, "" when unset
    span_id: str  # hex, "" when unset
    flags: int
    dropped_attributes_count: int


def flatten(request: Any) -> list[ReceivedLog]:
    """Flatten an ``ExportLogsServiceRequest`` into one :class:`ReceivedLog` per LogRecord, in order."""
    out: list[ReceivedLog] = []
    for resource_logs in request.resource_logs:
        resource = attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for rec in scope_logs.log_records:
                out.append(
                    ReceivedLog(
                        resource_attributes=resource,
                        scope_name=scope_logs.scope.name,
                        scope_version=scope_logs.scope.version,
                        time_unix_nano=rec.time_unix_nano,
                        observed_time_unix_nano=rec.observed_time_unix_nano,
                        severity_number=int(rec.severity_number),
                        severity_text=rec.severity_text,
                        body=any_value(rec.body),
                        attributes=attributes(rec.attributes),
                        event_name=rec.event_name,
                        trace_id=rec.trace_id.hex(),
                        span_id=rec.span_id.hex(),
                        flags=rec.flags,
                        dropped_attributes_count=rec.dropped_attributes_count,
                    )
                )
    return out


def _hex_ids_to_base64(doc: Any) -> None:
    """OTLP/JSON encodes traceId/spanId as hex, protobuf JSON mapping expects base64: rewrite in place."""
    for resource_logs in doc.get("resourceLogs", []) if isinstance(doc, dict) else []:
        for scope_logs in resource_logs.get("scopeLogs", []):
            for rec in scope_logs.get("logRecords", []):
                for key in ("traceId", "spanId"):
                    if rec.get(key):
                        rec[key] = base64.b64encode(bytes.fromhex(rec[key])).decode()


def parse_otlp_json(raw: bytes) -> Any:
    """Decode an OTLP/JSON logs request body (raises ``ValueError`` on malformed input)."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    doc = json.loads(raw)
    _hex_ids_to_base64(doc)
    try:
        return json_format.ParseDict(doc, ExportLogsServiceRequest())
    except json_format.ParseError as exc:
        raise ValueError(str(exc)) from exc


# --------------------------------------------------------------------------- parent-side API


@dataclass
class JournalEntry:
    """One answered request: when, over which transport, with what outcome ("ok" or the error)."""

    received_at: float
    transport: str  # "grpc" | "http-protobuf" | "http-json"
    outcome: str
    records: list[ReceivedLog] = field(default_factory=list)
    encoding: str | None = None  # HTTP: the Content-Encoding header ("" when absent); gRPC: None (see grpc_messages)
    wire_bytes: int | None = None  # HTTP: the body as sent (compressed or not); gRPC: None
    payload_bytes: int = 0  # the decoded ExportLogsServiceRequest, serialized as protobuf


@dataclass(frozen=True)
class GrpcMessage:
    """One gRPC message as it crossed the wire (client to server): compressed flag and length."""

    compressed: bool
    wire_bytes: int


class JournalReader:
    """Incrementally parse the append-only journal: each call only decodes lines added since the last.

    Why incremental: ``wait_for_count`` polls, and re-decoding 100k records per poll costs seconds.
    A torn last line (writer mid-append) is left for the next call.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._entries: list[JournalEntry] = []

    def entries(self) -> list[JournalEntry]:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

        if not self.path.exists():
            return list(self._entries)
        with self.path.open("rb") as journal:
            journal.seek(self._offset)
            chunk = journal.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            raw = json.loads(line)
            payload = base64.b64decode(raw["payload"])
            request = ExportLogsServiceRequest.FromString(payload)
            self._entries.append(JournalEntry(raw["t"], raw["transport"], raw["outcome"], flatten(request),
                                              raw.get("encoding"), raw.get("wire_bytes"), len(payload)))
        return list(self._entries)


_SETPRIV = shutil.which("setpriv")


def spawn(cmd: list[str], log_file: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``cmd`` with stdout+stderr appended to ``log_file`` (never the test's own stdout).

    On Linux the kernel SIGKILLs the child if the test process dies (PR_SET_PDEATHSIG, set by
    util-linux `setpriv` before it execs the command), so no orphans linger.  Not with a Python
    `preexec_fn`: that forces a plain fork() of a process running gRPC threads, whose fork
    handlers can abort the child before it execs (seen: rotel "exited with -6").
    """
    # The death signal fires when the spawning *thread* exits, so only arm it from the main
    # thread: a child started via asyncio.to_thread must not die with a pool worker.
    on_main = threading.current_thread() is threading.main_thread()
    prefix = [_SETPRIV, "--pdeathsig", "KILL"] if _SETPRIV and on_main else []
    with log_file.open("ab") as log:
        return subprocess.Popen([*prefix, *cmd], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env)


class LoopbackServer:
    """Endpoints of a child-process OTLP server on 127.0.0.1 (`grpc_port`, `http_port`, `_proc` set by the subclass)."""

    grpc_port: int
    http_port: int
    log_file: Path
    start_timeout: float
    _proc: subprocess.Popen[bytes] | None

    tls_dir: Path | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls_dir is not None else "http"

    @property
    def grpc_endpoint(self) -> str:
        """OTLP/gRPC endpoint for exporters, e.g. ``http://127.0.0.1:41234``."""
        return f"{self.scheme}://{LOOPBACK}:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """OTLP/HTTP base URL; logs go to ``http_endpoint + "/v1/logs"``."""
        return f"{self.scheme}://{LOOPBACK}:{self.http_port}"

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def _spawn_and_wait(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
        """Start the child; return once both ports accept connections (killed again if they never do)."""
        self._proc = spawn(cmd, self.log_file, env=env)
        try:
            wait_for_ports(self._proc, [self.grpc_port, self.http_port], self.start_timeout, self.log_file)
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:  # noqa: D102 - subclasses say how
        raise NotImplementedError


class OtlpReceiver(LoopbackServer):
    """Run the receiver in a child process on fixed 127.0.0.1 ports.

    Contract: ``start()`` returns only once both ports accept connections (bounded by
    ``start_timeout``); ``kill()`` is SIGKILL; ``restart()`` reuses the same ports and the same
    journal, so records received before a restart stay readable.  Output of the child goes
    to ``<workdir>/receiver.log``, never to the test's stdout.
    """

    def __init__(self, workdir: Path | None = None, start_timeout: float = 15.0, tls_dir: Path | None = None,
                 inspect_grpc_wire: bool = False) -> None:
        self.tls_dir = tls_dir  # server.crt/server.key (+ client-ca.crt for mTLS): endpoints are https
        if tls_dir is not None and inspect_grpc_wire:
            raise ValueError("the gRPC wire can be inspected in plaintext only")
        self.inspect_grpc_wire = inspect_grpc_wire
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="otlp-receiver-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.journal = self.workdir / "journal.jsonl"
        self.grpc_wire = self.workdir / "grpc-wire.jsonl"
        self.log_file = self.workdir / "receiver.log"
        self.start_timeout = start_timeout
        self.grpc_port = free_port()
        self.http_port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._journal = JournalReader(self.journal)

    def start(self) -> None:
        """Spawn the child and wait until gRPC and HTTP both accept connections."""
        if self.running:
            return
        cmd = [sys.executable, str(Path(__file__).resolve()), str(self.grpc_port), str(self.http_port),
               str(self.journal),
               *(["--tls", str(self.tls_dir)] if self.tls_dir is not None else []),
               *(["--grpc-wire", str(self.grpc_wire)] if self.inspect_grpc_wire else [])]
        self._spawn_and_wait(cmd)

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM, bounded wait, then SIGKILL)."""
        end_process(self._proc, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the child -- a crash, nothing is flushed (the journal is written per request)."""
        end_process(self._proc, signal.SIGKILL)

    def restart(self) -> None:
        """Stop (gracefully if still alive) and start again on the same ports."""
        self.stop()
        self.start()

    def fail_next(
        self,
        count: int,
        grpc_code: str = "UNAVAILABLE",
        http_status: int = 503,
        retry_after_s: int | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Answer the next ``count`` export requests (either transport) with an error.

        ``grpc_code`` is a ``grpc.StatusCode`` name (e.g. "RESOURCE_EXHAUSTED", "INVALID_ARGUMENT");
        ``retry_after_s`` adds a ``google.rpc.RetryInfo`` detail (gRPC) / ``Retry-After`` header (HTTP);
        ``delay_s`` sleeps before answering (for client timeout tests).  Replaces any pending script.
        """
        spec = {"count": count, "grpc_code": grpc_code, "http_status": http_status,
                "retry_after_s": retry_after_s, "delay_s": delay_s}
        req = urllib.request.Request(self.http_endpoint + CONTROL_PATH, data=json.dumps(spec).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()

    def requests(self) -> list[JournalEntry]:
        """Every answered export request, accepted or rejected, in arrival order."""
        return self._journal.entries()

    def grpc_messages(self) -> list[GrpcMessage]:
        """Every gRPC message clients sent, in order (only with ``inspect_grpc_wire=True``)."""
        if not self.inspect_grpc_wire:
            raise RuntimeError("start the receiver with inspect_grpc_wire=True")
        if not self.grpc_wire.exists():
            return []
        text = self.grpc_wire.read_text()
        lines = text[: text.rfind("\n") + 1].splitlines()  # a torn last line is left for later
        return [GrpcMessage(**json.loads(line)) for line in lines]

    def received_log_records(self) -> list[ReceivedLog]:
        """All records from *accepted* requests, in arrival order (duplicates kept, so tests can see them)."""
        return [rec for entry in self.requests() if entry.outcome == "ok" for rec in entry.records]

    def wait_for_count(self, n: int, timeout: float = 10.0) -> list[ReceivedLog]:
        """Poll until at least ``n`` records were accepted; return them, or raise ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.received_log_records()
            if len(records) >= n:
                return records
            if time.monotonic() > deadline:
                raise TimeoutError(f"got {len(records)} of {n} log records within {timeout}s")
            time.sleep(0.05)


# --------------------------------------------------------------------------- child process


class _Server:
    """State shared by the gRPC and HTTP front ends inside the child process."""

    def __init__(self, journal: Path) -> None:
        self._lock = threading.Lock()
        self._journal = journal.open("ab")
        self._failure: dict[str, Any] = {"count": 0}

    def script_failure(self, spec: dict[str, Any]) -> None:
        with self._lock:
            self._failure = dict(spec)

    def take_failure(self) -> dict[str, Any] | None:
        """Consume one scripted failure, if any is pending."""
        with self._lock:
            if self._failure["count"] <= 0:
                return None
            self._failure["count"] -= 1
            return dict(self._failure)

    def record(self, transport: str, outcome: str, request: Any, wire: tuple[str, int] | None = None) -> None:
        """Append one journal line and flush it, so a later SIGKILL loses nothing acknowledged.

        ``wire``: (Content-Encoding, body bytes as sent) of an HTTP request."""
        line = {"t": time.time(), "transport": transport, "outcome": outcome,
                "payload": base64.b64encode(request.SerializeToString()).decode()}
        if wire is not None:
            line["encoding"], line["wire_bytes"] = wire
        with self._lock:
            self._journal.write(json.dumps(line).encode() + b"\n")
            self._journal.flush()


def _grpc_servicer(server: _Server) -> Any:
    import grpc
    from google.protobuf import duration_pb2
    from google.rpc import error_details_pb2, status_pb2
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc

    class LogsServicer(logs_service_pb2_grpc.LogsServiceServicer):
        def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 (generated name)
            failure = server.take_failure()
            if failure is None:
                server.record("grpc", "ok", request)
                return logs_service_pb2.ExportLogsServiceResponse()
            time.sleep(failure["delay_s"])
            code = grpc.StatusCode[failure["grpc_code"]]
            server.record("grpc", code.name, request)
            if failure["retry_after_s"] is not None:
                # OTLP/gRPC throttling: RetryInfo travels in the rich status trailer.
                detail = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=failure["retry_after_s"]))
                status = status_pb2.Status(code=code.value[0], message="scripted failure")
                status.details.add().Pack(detail)
                context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
            context.abort(code, "scripted failure")

    return LogsServicer()


def _http_handler(server: _Server) -> type[BaseHTTPRequestHandler]:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
        ExportLogsServiceRequest,
        ExportLogsServiceResponse,
    )

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real OTLP/HTTP exporters expect

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: the log file is enough
            pass

        def _reply(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:  # noqa: N802 (stdlib name)
            if self.headers.get("Content-Length") is None:  # chunked bodies are not supported: say so
                self.close_connection = True  # the unread body would poison a kept-alive connection
                return self._reply(411, b"Content-Length required", "text/plain")
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            wire = (self.headers.get("Content-Encoding", ""), len(raw))
            if self.path == CONTROL_PATH:
                server.script_failure(json.loads(raw))
                return self._reply(204, b"", "text/plain")
            if self.path != "/v1/logs":
                return self._reply(404, b"not found", "text/plain")
            ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
            is_json = ctype == "application/json"
            if ctype not in ("application/json", "application/x-protobuf"):
                return self._reply(415, b"unsupported content type", "text/plain")
            try:
                if self.headers.get("Content-Encoding", "") == "gzip":
                    raw = gzip.decompress(raw)
                request = parse_otlp_json(raw) if is_json else ExportLogsServiceRequest.FromString(raw)
            except Exception as exc:  # any decode error is the client's fault: 400 per the OTLP spec
                return self._reply(400, str(exc).encode(), "text/plain")
            transport = "http-json" if is_json else "http-protobuf"
            failure = server.take_failure()
            if failure is not None:
                time.sleep(failure["delay_s"])
                server.record(transport, f"HTTP {failure['http_status']}", request, wire)
                extra = {} if failure["retry_after_s"] is None else {"Retry-After": str(failure["retry_after_s"])}
                return self._reply(failure["http_status"], b"scripted failure", "text/plain", extra)
            server.record(transport, "ok", request, wire)
            body = b"{}" if is_json else ExportLogsServiceResponse().SerializeToString()
            self._reply(200, body, ctype)

    return Handler


class _GrpcMessageScanner:
    """Finds the gRPC messages in the client-to-server bytes of a plaintext HTTP/2 connection.

    No HPACK needed: after the 24-byte connection preface come frames (9-byte header: length,
    type, flags, stream id); a stream's DATA payloads (type 0, minus padding) are its gRPC
    messages back to back, each a 5-byte prefix (compressed flag, big-endian length) and a body.
    """

    def __init__(self, on_message: Any) -> None:
        self._buf = bytearray()
        self._preface = 24
        self._streams: dict[int, list[Any]] = {}  # stream id -> [partial prefix, body bytes still to come]
        self._on_message = on_message

    def feed(self, data: bytes) -> None:
        self._buf += data
        if self._preface:
            taken = min(self._preface, len(self._buf))
            del self._buf[:taken]
            self._preface -= taken
        while len(self._buf) >= 9:
            length = int.from_bytes(self._buf[0:3], "big")
            if len(self._buf) < 9 + length:
                return
            ftype, flags = self._buf[3], self._buf[4]
            stream = int.from_bytes(self._buf[5:9], "big") & 0x7FFFFFFF
            payload = bytes(self._buf[9:9 + length])
            del self._buf[:9 + length]
            if ftype == 0:  # DATA
                if flags & 0x8:  # PADDED
                    payload = payload[1:len(payload) - payload[0]]
                self._data(stream, payload)

    def _data(self, stream: int, payload: bytes) -> None:
        state = self._streams.setdefault(stream, [b"", 0])
        while payload:
            if state[1]:
                n = min(state[1], len(payload))
                state[1] -= n
                payload = payload[n:]
                continue
            need = 5 - len(state[0])
            state[0] += payload[:need]
            payload = payload[need:]
            if len(state[0]) == 5:
                compressed, size = state[0][0] == 1, int.from_bytes(state[0][1:5], "big")
                state[0], state[1] = b"", size
                self._on_message(compressed, 5 + size)


def _relay_grpc(listen_port: int, backend_port: int, wire_journal: Path) -> None:
    """Serve ``listen_port`` by relaying every connection to ``backend_port``, journalling its gRPC messages."""
    lock = threading.Lock()
    out = wire_journal.open("a")

    def note(compressed: bool, wire_bytes: int) -> None:
        with lock:
            out.write(json.dumps({"compressed": compressed, "wire_bytes": wire_bytes}) + "\n")
            out.flush()

    def pump(src: socket.socket, dst: socket.socket, scanner: _GrpcMessageScanner | None) -> None:
        try:
            while data := src.recv(65536):
                if scanner is not None:  # before forwarding: noted by the time the server can answer
                    scanner.feed(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
                with contextlib.suppress(OSError):
                    sock.shutdown(how)

    listener = socket.create_server((LOOPBACK, listen_port))

    def accept_loop() -> None:
        while True:
            client, _ = listener.accept()
            try:
                backend = socket.create_connection((LOOPBACK, backend_port), timeout=5)
            except OSError:
                client.close()
                continue
            backend.settimeout(None)
            threading.Thread(target=pump, args=(client, backend, _GrpcMessageScanner(note)), daemon=True).start()
            threading.Thread(target=pump, args=(backend, client, None), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()


def serve(grpc_port: int, http_port: int, journal: Path, tls_dir: Path | None = None,
          grpc_wire: Path | None = None) -> None:
    """Child entry point: serve until SIGTERM/SIGINT.

    With `tls_dir`: both servers speak TLS with `server.crt`/`server.key` from it and, when
    `client-ca.crt` is there too, require a client certificate signed by that CA (mTLS).
    With `grpc_wire`: gRPC listens on a relay that journals each message's compressed flag there."""
    import grpc
    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

    state = _Server(journal)
    options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=options)
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_grpc_servicer(state), grpc_server)
    address = f"{LOOPBACK}:{0 if grpc_wire is not None else grpc_port}"
    if tls_dir is None:
        bound = grpc_server.add_insecure_port(address)
    else:
        key, cert = (tls_dir / "server.key").read_bytes(), (tls_dir / "server.crt").read_bytes()
        client_ca = (tls_dir / "client-ca.crt").read_bytes() if (tls_dir / "client-ca.crt").exists() else None
        creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                            require_client_auth=client_ca is not None)
        bound = grpc_server.add_secure_port(address, creds)
    if bound != grpc_port and not (grpc_wire is not None and bound):
        raise SystemExit(f"cannot bind gRPC port {grpc_port}")
    http_server = ThreadingHTTPServer((LOOPBACK, http_port), _http_handler(state))
    http_server.daemon_threads = True
    if tls_dir is not None:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_dir / "server.crt", tls_dir / "server.key")
        if (tls_dir / "client-ca.crt").exists():
            context.load_verify_locations(tls_dir / "client-ca.crt")
            context.verify_mode = ssl.CERT_REQUIRED
        http_server.socket = context.wrap_socket(http_server.socket, server_side=True)
    grpc_server.start()
    if grpc_wire is not None:
        _relay_grpc(grpc_port, bound, grpc_wire)  # clients reach gRPC through it, on the advertised port
    threading.Thread(target=http_server.serve_forever, args=(0.05,), daemon=True).start()  # fast shutdown()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"otlp receiver pid={os.getpid()} grpc={grpc_port} http={http_port}", flush=True)
    while not stop.wait(0.1):  # timed wait: keeps the main thread responsive to signals
        pass
    http_server.shutdown()
    grpc_server.stop(grace=2).wait(5)


if __name__ == "__main__":
    import argparse

    cli = argparse.ArgumentParser()
    cli.add_argument("grpc_port", type=int)
    cli.add_argument("http_port", type=int)
    cli.add_argument("journal", type=Path)
    cli.add_argument("--tls", type=Path, default=None)
    cli.add_argument("--grpc-wire", type=Path, default=None)
    a = cli.parse_args()
    serve(a.grpc_port, a.http_port, a.journal, a.tls, a.grpc_wire)
