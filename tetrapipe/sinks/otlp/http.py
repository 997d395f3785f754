"""A minimal asyncio HTTP/1.1 client for OTLP/HTTP POSTs: keep-alive pool, TLS, bounded time.

Why not a library: the project has no async HTTP client dependency, and OTLP
needs one request shape only (POST, Content-Length body, small response).
Running a blocking client in threads would keep requests alive past a
cancelled write; here every exchange runs under one `asyncio.timeout`.

Contract: `post()` returns (status, lower-cased headers, body) for any HTTP
status, or raises `OSError`/`TimeoutError`/`asyncio.IncompleteReadError`/
`HttpProtocolError` when no complete response arrived — the caller cannot
know whether the server processed the request (at-least-once: it may retry).
A connection is reused only after a complete response that allows it.
One whose exchange was interrupted (an error, a timeout, a cancelled write at
shutdown) is aborted, not closed: a graceful close would wait to flush a body
the server does not read.  `close()` returns within `CLOSE_TIMEOUT` seconds
(a TLS peer that never answers the close_notify would otherwise hold it for
the event loop's 30 s SSL shutdown timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from urllib.parse import urlsplit

_MAX_HEADER_BYTES = 64 * 1024
_MAX_BODY_BYTES = 16 * 1024 * 1024  # a collector's answer is small; a huge one is a broken peer
CLOSE_TIMEOUT = 1.0  # seconds `close()` waits for idle connections to shut down cleanly before aborting them


class HttpProtocolError(Exception):
    """The server's answer was not valid HTTP/1.1."""


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.transport.abort()


class HttpClient:
    """POSTs to one URL over a small pool of kept-alive connections (one per concurrent request)."""

    def __init__(self, url: str, *, ssl_context: ssl.SSLContext | None = None, timeout: float = 10.0,
                 max_idle: int = 4) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.host_header = parts.netloc.rpartition("@")[2]
        self.ssl = ssl_context if parts.scheme == "https" else None
        if parts.scheme == "https" and self.ssl is None:
            self.ssl = ssl.create_default_context()
        self.timeout = timeout
        self.max_idle = max_idle
        self._idle: list[_Conn] = []

    async def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """POST `body`; retried once on a fresh connection if a reused one turned out closed."""
        async with asyncio.timeout(self.timeout):
            while self._idle:
                conn = self._idle.pop()
                try:
                    return await self._exchange(conn, body, headers)
                except (ConnectionError, asyncio.IncompleteReadError):
                    continue  # the server closed an idle connection: that is not a failed request
            reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.ssl,
                                                           limit=_MAX_HEADER_BYTES)
            return await self._exchange(_Conn(reader, writer), body, headers)

    async def _exchange(self, conn: _Conn, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        reusable = interrupted = False
        try:
            head = [f"POST {self.path} HTTP/1.1", f"Host: {self.host_header}", f"Content-Length: {len(body)}"]
            head += [f"{k}: {v}" for k, v in headers.items()]
            conn.writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            conn.writer.write(body)
            await conn.writer.drain()
            status, response_headers, reusable = await self._read_head(conn.reader)
            data, complete = await self._read_body(conn.reader, response_headers)
            reusable = reusable and complete
            return status, response_headers, data
        except BaseException:
            reusable, interrupted = False, True
            raise
        finally:
            if reusable and len(self._idle) < self.max_idle:
                self._idle.append(conn)
            elif interrupted:
                conn.abort()
            else:
                conn.close()

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bool]:
        while True:
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise HttpProtocolError("response headers too large") from None
            lines = raw.decode("latin-1").split("\r\n")
            status_line = lines[0].split(" ", 2)
            if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or not status_line[1].isdigit():
                raise HttpProtocolError(f"bad status line {lines[0][:80]!r}")
            status = int(status_line[1])
            if 100 <= status < 200:
                continue  # an interim response (100 Continue): the real one follows
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            keep = headers.get("connection", "").lower() != "close" and status_line[0] == "HTTP/1.1"
            return status, headers, keep

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> tuple[bytes, bool]:
        """The response body, and whether the connection may carry another request."""
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    await _skip_trailers(reader)
                    return b"".join(chunks), True
                total += size
                if total > _MAX_BODY_BYTES:
                    raise HttpProtocolError("response body too large")
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit() or int(length) > _MAX_BODY_BYTES:
                raise HttpProtocolError(f"bad Content-Length {length[:40]!r}")
            return await reader.readexactly(int(length)), True
        # Neither length nor chunks: the body ends when the server closes the connection.
        return await reader.read(_MAX_BODY_BYTES), False

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        closing = [asyncio.ensure_future(_closed(conn)) for conn in idle]
        try:
            if closing:
                await asyncio.wait(closing, timeout=CLOSE_TIMEOUT)
        finally:  # also when cancelled: nothing outlives close()
            for conn, task in zip(idle, closing, strict=True):
                if not task.done():
                    task.cancel()
                    conn.abort()


# HTTP/2 "prior knowledge" (h2c): the client preface, then an empty SETTINGS frame (RFC 9113 3.4).
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_H2_SETTINGS = 0x04


async def speaks_only_http2(host: str, port: int, timeout: float = 2.0) -> bool | None:
    """Whether a plaintext endpoint answers HTTP/2 prior knowledge but not HTTP/1.1 — a gRPC port.

    True: HTTP/2 only; False: it answers HTTP/1.1 (the failure was something else); None: cannot tell
    (refused, timed out, neither).  Two short-lived connections; used only after a failed request.
    """
    try:
        async with asyncio.timeout(timeout):
            if await _first_bytes(host, port, b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n",
                                  7) == b"HTTP/1.":
                return False
            head = await _first_bytes(host, port, _H2_PREFACE, 9)
    except (OSError, TimeoutError):
        return None
    return True if len(head) == 9 and head[3] == _H2_SETTINGS else None


async def _first_bytes(host: str, port: int, request: bytes, n: int) -> bytes:
    """The first `n` bytes the server answers `request` with (fewer if it closes or resets first)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        try:
            return await reader.readexactly(n)
        except asyncio.IncompleteReadError as exc:
            return exc.partial
        except ConnectionError:
            return b""
    finally:
        writer.transport.abort()


async def _closed(conn: _Conn) -> None:
    with contextlib.suppress(OSError, ssl.SSLError):
        await conn.writer.wait_closed()


async def _skip_trailers(reader: asyncio.StreamReader) -> None:
    """After the last chunk: optional trailer lines, then an empty line."""
    while (await reader.readuntil(b"\r\n")) != b"\r\n":
        pass
