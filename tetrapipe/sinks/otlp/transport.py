"""OTLP export transports (gRPC, HTTP) and the classification of their failures.

`await transport.export(body)` sends one encoded ExportLogsServiceRequest and
returns an `Accepted` (with the partial-success counts, if any) only when the
collector acknowledged it.  Every failure raises `ExportError` with a `kind`
that tells the sink what to do — the one place that maps OTLP status codes
(OTLP spec, "Failures" for gRPC and HTTP) to actions:

| kind        | gRPC                                                     | HTTP                  | sink does          |
|-------------|----------------------------------------------------------|-----------------------|--------------------|
| `retry`     | UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED,      | 408, 429, 5xx;        | raise retryable    |
|             | ABORTED, CANCELLED, DATA_LOSS, UNKNOWN, INTERNAL;        | connection errors,    | (runner backs off, |
|             | connection errors                                        | timeouts              | intake pauses)     |
| `too_large` | OUT_OF_RANGE, RESOURCE_EXHAUSTED "larger than max"       | 413                   | split the request  |
| `bad_data`  | INVALID_ARGUMENT                                         | 400                   | bisect, dead-letter|
| `fatal`     | UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED, ...;   | 401, 403, 404, other; | stop the run       |
|             | server certificate not verified                          | the same              |                    |

UNKNOWN/INTERNAL/500 are retried rather than bisected: they do not say the
data is at fault, and treating an outage as bad data would dead-letter good
events.  Retry hints: gRPC `google.rpc.RetryInfo` in `grpc-status-details-bin`,
HTTP `Retry-After` (seconds or an HTTP date).

A server certificate that does not verify (unknown CA, wrong name, expired) is
a configuration error like 401, not an outage: retrying cannot help, so it is
fatal.  (gRPC reports it only as UNAVAILABLE with the TLS error in the text.)
A server refusing *our* certificate (mTLS) stays `retry`: the client sees only
a TLS alert or a reset connection, which it cannot tell from an outage.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
from email.utils import parsedate_to_datetime
from typing import Any

import msgspec

from tetrapipe.sinks.otlp.http import HttpClient, HttpProtocolError, speaks_only_http2

LOGS_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
GZIP_LEVEL = 1  # throughput first: level 1 keeps most of the gain at a fraction of the CPU

_RETRY_GRPC = {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "ABORTED", "CANCELLED", "DATA_LOSS",
               "UNKNOWN", "INTERNAL"}
_TOO_LARGE_TEXT = ("larger than max", "too large", "message length")
# grpcio's handshake errors for a server certificate that does not verify: unknown CA (BoringSSL), wrong name
# (grpcio >= 1.6x: "Hostname Verification Check failed"; 1.63, the lowest allowed: "Peer name X is not in
# peer certificate" — scripts/check-deps lowest found it)
_CERT_UNVERIFIED_TEXT = ("CERTIFICATE_VERIFY_FAILED", "Hostname Verification Check failed",
                         "is not in peer certificate")
_CERT_HINT = "the server's certificate is not trusted: check tls.ca_file and the endpoint's host name"
# What grpcio says when the endpoint is an HTTP server: HTTP/2 without the gRPC service (404), or HTTP/1.x only.
_HTTP_SERVER_TEXT = ("Received http2 header with status: 404", "Trying to connect an http1.x server")


class ExportError(Exception):
    """A failed export: `kind` is retry | too_large | bad_data | fatal; `retry_after` is the server's hint."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class Accepted:
    """A successful export; `rejected` > 0 when the collector reported a partial success."""

    __slots__ = ("rejected", "message")

    def __init__(self, rejected: int = 0, message: str = "") -> None:
        self.rejected = rejected
        self.message = message


class TransportSettings(msgspec.Struct, frozen=True):
    """Resolved connection settings of one OTLP endpoint (see `tetrapipe.sinks.otlp.config`)."""

    url: str  # gRPC: scheme://host:port; HTTP: the full URL of the logs path
    protocol: str  # grpc | http/protobuf | http/json
    headers: tuple[tuple[str, str], ...] = ()
    compression: str = "none"  # none | gzip
    timeout: float = 10.0
    insecure: bool = False  # gRPC without scheme: plaintext
    ca_file: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None


# ----------------------------------------------------------------- response decoding


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> dict[int, Any]:
    """Top-level fields of a protobuf message (last wins; varint and length-delimited only)."""
    out: dict[int, Any] = {}
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            out[number], pos = _read_varint(data, pos)
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            out[number], pos = data[pos:pos + length], pos + length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def partial_success_protobuf(body: bytes) -> Accepted:
    """ExportLogsServiceResponse.partial_success(1) {rejected_log_records(1), error_message(2)}."""
    try:
        partial = _fields(body).get(1)
        if not partial:
            return Accepted()
        fields = _fields(partial)
        return Accepted(int(fields.get(1, 0)), bytes(fields.get(2, b"")).decode("utf-8", "replace"))
    except (ValueError, IndexError):
        return Accepted()  # an unreadable 2xx body is still an acknowledgement


def partial_success_json(body: bytes) -> Accepted:
    try:
        doc = msgspec.json.decode(body) if body.strip() else {}
        partial = doc.get("partialSuccess") or {} if type(doc) is dict else {}
        return Accepted(int(partial.get("rejectedLogRecords") or 0), str(partial.get("errorMessage") or ""))
    except (msgspec.DecodeError, ValueError, TypeError, AttributeError):
        return Accepted()


def retry_info_seconds(status_details: bytes) -> float | None:
    """RetryInfo.retry_delay from a serialized google.rpc.Status (details: repeated Any)."""
    try:
        for number, value in _iter_fields(status_details):
            if number != 3:  # Status.details
                continue
            any_fields = _fields(value)
            if bytes(any_fields.get(1, b"")).endswith(b"google.rpc.RetryInfo"):
                delay = _fields(_fields(any_fields.get(2, b"")).get(1, b""))  # RetryInfo.retry_delay: Duration
                return int(delay.get(1, 0)) + int(delay.get(2, 0)) / 1e9
    except (ValueError, IndexError):
        return None
    return None


def _iter_fields(data: bytes) -> list[tuple[int, bytes]]:
    """Length-delimited fields of a message, repeated ones included, in order."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        if key & 7 == 2:
            length, pos = _read_varint(data, pos)
            out.append((key >> 3, data[pos:pos + length]))
            pos += length
        elif key & 7 == 0:
            _, pos = _read_varint(data, pos)
        else:
            pos += 8 if key & 7 == 1 else 4
    return out


def retry_after_seconds(value: str | None) -> float | None:
    """HTTP Retry-After: delay-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        import time

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def ssl_context(settings: TransportSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.ca_file)
    if settings.client_cert_file:
        context.load_cert_chain(settings.client_cert_file, settings.client_key_file)
    return context


# ----------------------------------------------------------------- transports


class GrpcTransport:
    """OTLP/gRPC; the request is sent as pre-encoded bytes (no message classes).

    Why grpcio's synchronous channel with futures, not grpc.aio: grpc.aio moves a
    request's HTTP/2 frames forward only when the event loop gets a turn, so a
    1.7 MB request (~30 flow-control windows) waits behind every batch being
    processed meanwhile (measured: 15,000 events/s through the pipeline).  The
    synchronous channel's own threads drive the transfer; completion is handed
    back to the loop with `call_soon_threadsafe`.
    """

    def __init__(self, settings: TransportSettings) -> None:
        import grpc

        self._grpc = grpc
        self.settings = settings
        scheme, sep, target = settings.url.partition("://")
        if not sep:
            scheme, target = ("http" if settings.insecure else "https"), settings.url
        target = target.rstrip("/")
        options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.enable_retries", 0)]
        if scheme == "https":
            creds = grpc.ssl_channel_credentials(*_read_tls_files(settings))
            self._channel = grpc.secure_channel(target, creds, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._export = self._channel.unary_unary(LOGS_METHOD)
        self._metadata = tuple((k.lower(), v) for k, v in settings.headers)
        self._compression = grpc.Compression.Gzip if settings.compression == "gzip" else grpc.Compression.NoCompression

    async def export(self, body: bytes) -> Accepted:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        call = self._export.future(body, timeout=self.settings.timeout, metadata=self._metadata,
                                   compression=self._compression)

        def resolve(_: Any) -> None:
            if not done.done():
                done.set_result(None)

        call.add_done_callback(lambda c: loop.call_soon_threadsafe(resolve, c))
        try:
            await done
        except asyncio.CancelledError:
            call.cancel()
            raise
        try:
            response = call.result()
        except self._grpc.RpcError as exc:
            raise _grpc_error(exc, self.settings.url) from None
        return partial_success_protobuf(response or b"")

    async def close(self) -> None:
        self._channel.close()


def _read_tls_files(settings: TransportSettings) -> tuple[bytes | None, bytes | None, bytes | None]:
    def read(path: str | None) -> bytes | None:
        if not path:
            return None
        with open(path, "rb") as f:
            return f.read()

    return read(settings.ca_file), read(settings.client_key_file), read(settings.client_cert_file)


def _grpc_error(exc: Any, url: str = "") -> ExportError:
    code = exc.code().name
    details = exc.details() or ""
    if any(t in details for t in _HTTP_SERVER_TEXT):  # retrying cannot help: the wrong protocol for the port
        return ExportError("fatal", f"gRPC {code}: {details} — {url} is an HTTP endpoint, not OTLP/gRPC: use "
                                    "--otlp-protocol http/protobuf (protocol: http/protobuf), or the collector's "
                                    "gRPC port (usually 4317)")
    hint = None
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            hint = retry_info_seconds(value)
    message = f"gRPC {code}: {details}"
    if code == "OUT_OF_RANGE" or (code == "RESOURCE_EXHAUSTED" and any(t in details for t in _TOO_LARGE_TEXT)):
        return ExportError("too_large", message)
    if code == "UNAVAILABLE" and any(t in details for t in _CERT_UNVERIFIED_TEXT):
        return ExportError("fatal", f"{message} ({_CERT_HINT})")
    if code in _RETRY_GRPC:
        return ExportError("retry", message, hint)
    if code == "INVALID_ARGUMENT":
        return ExportError("bad_data", message)
    return ExportError("fatal", message)


class HttpTransport:
    """OTLP/HTTP with protobuf or JSON bodies, optionally gzip-compressed (in a worker thread)."""

    def __init__(self, settings: TransportSettings) -> None:
        self.settings = settings
        self.json = settings.protocol == "http/json"
        context = ssl_context(settings) if settings.url.startswith("https:") else None
        self._client = HttpClient(settings.url, ssl_context=context, timeout=settings.timeout)
        headers = {"Content-Type": "application/json" if self.json else "application/x-protobuf",
                   "User-Agent": "tetrapipe"}
        if settings.compression == "gzip":
            headers["Content-Encoding"] = "gzip"
        headers.update(dict(settings.headers))
        self._headers = headers
        self._protocol_checked = settings.url.startswith("https:")  # the probe speaks plaintext HTTP/2 only

    async def _speaks_grpc(self, exc: BaseException) -> bool:
        """After a reset or a non-HTTP/1.1 answer: is this a gRPC (HTTP/2-only) port?  Probed until the
        answer is clear (a refused connection tells nothing), then never again."""
        if self._protocol_checked or not isinstance(
                exc, (ConnectionResetError, asyncio.IncompleteReadError, HttpProtocolError)):
            return False
        only_http2 = await speaks_only_http2(self._client.host, self._client.port, min(2.0, self.settings.timeout))
        self._protocol_checked = only_http2 is not None
        return only_http2 is True

    async def export(self, body: bytes) -> Accepted:
        if self.settings.compression == "gzip":
            # zlib releases the GIL: compressing in a thread uses another core, not the event loop's.
            body = await asyncio.to_thread(gzip.compress, body, GZIP_LEVEL)
        try:
            status, headers, data = await self._client.post(body, self._headers)
        except ssl.SSLCertVerificationError as exc:
            raise ExportError("fatal", f"HTTP request failed ({_CERT_HINT}): {exc!r}") from None
        except (OSError, TimeoutError, asyncio.IncompleteReadError, HttpProtocolError) as exc:
            if await self._speaks_grpc(exc):
                raise ExportError("fatal", f"HTTP request failed: {exc!r} — {self._client.host}:{self._client.port} "
                                           "speaks HTTP/2 only, like an OTLP/gRPC port (usually 4317), not "
                                           "OTLP/HTTP: use --otlp-protocol grpc (protocol: grpc) with endpoint "
                                           f"http://{self._client.host_header}, or the collector's HTTP port "
                                           "(usually 4318)") from None
            raise ExportError("retry", f"HTTP request failed: {exc!r}") from None
        if 200 <= status < 300:
            return partial_success_json(data) if self.json else partial_success_protobuf(data)
        message = f"HTTP {status}: {_error_text(data, headers)}".rstrip(": ")
        if status == 404:  # the server answers, but not at this path
            message += f" — nothing at {self.settings.url}: OTLP/HTTP collectors take logs at /v1/logs"
        if status in (408, 429) or status >= 500:
            return _raise(ExportError("retry", message, retry_after_seconds(headers.get("retry-after"))))
        if status == 413:
            return _raise(ExportError("too_large", message))
        if status == 400:
            return _raise(ExportError("bad_data", message))
        return _raise(ExportError("fatal", message))

    async def close(self) -> None:
        await self._client.close()


def _raise(error: ExportError) -> Accepted:
    raise error


def _error_text(data: bytes, headers: dict[str, str]) -> str:
    """The server's message: google.rpc.Status.message for protobuf bodies, else the text, shortened."""
    if headers.get("content-type", "").startswith("application/x-protobuf"):
        try:
            message = _fields(data).get(2)
            if isinstance(message, bytes):
                return message.decode("utf-8", "replace")[:300]
        except (ValueError, IndexError):
            pass
    return data[:300].decode("utf-8", "replace").strip()


def make_transport(settings: TransportSettings) -> GrpcTransport | HttpTransport:
    return GrpcTransport(settings) if settings.protocol == "grpc" else HttpTransport(settings)
