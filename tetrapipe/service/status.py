"""The status endpoint (`--metrics-port`): /metrics for Prometheus, /livez and /readyz for probes.

Served by asyncio on the pipeline's own event loop, on purpose:
- /livez answering at all proves the loop turns; a loop stuck in a
  synchronous call cannot answer, the probe times out, and the kubelet
  restarts the container — which is what liveness is for;
- metrics are read on the loop that writes them, so a scrape never sees a
  counter half-updated and needs no locks.

It speaks just enough HTTP/1.1 for probes and scrapers: one GET or HEAD per
connection, bounded request size and read time, `Connection: close`.
Content negotiation for /metrics (Prometheus text or OpenMetrics) is
prometheus_client's.  Nothing the server says includes event content or
configuration values.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

MAX_REQUEST_BYTES = 8192
READ_TIMEOUT = 5.0
Health = Callable[[], tuple[bool, bool, list[str]]]  # () → (live, ready, reasons not ready)


class StatusServer:
    """`start()` binds and serves in the background until `close()`; `port` is the bound port."""

    def __init__(self, registry: CollectorRegistry, health: Health, *, host: str = "0.0.0.0",  # noqa: S104
                 port: int = 9090) -> None:
        self.registry = registry
        self.health = health
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind (OSError when the address is taken: the caller reports it and exits)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  limit=MAX_REQUEST_BYTES, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return
            status, content_type, body, method = self._answer(head)
            writer.write(b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                         % (status.encode(), content_type.encode(), len(body)))
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _answer(self, head: bytes) -> tuple[str, str, bytes, str]:
        """(status line, content type, body, method) for one request head."""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return "400 Bad Request", "text/plain", b"bad request\n", "GET"
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"only GET and HEAD\n", method
        if target == "/metrics":
            headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
            accept = next((v.strip() for k, v in headers.items() if k.strip().lower() == "accept"), "")
            encoder, content_type = choose_encoder(accept)
            return "200 OK", content_type, encoder(self.registry), method
        if target in ("/livez", "/readyz"):
            live, ready, reasons = self.health()
            ok = live if target == "/livez" else ready
            text = "ok\n" if ok else "".join(f"{r}\n" for r in reasons or ["ended"])
            return ("200 OK" if ok else "503 Service Unavailable"), "text/plain; charset=utf-8", text.encode(), method
        return "404 Not Found", "text/plain", b"not found: try /metrics, /livez or /readyz\n", method
