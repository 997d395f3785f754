"""The OTLP/HTTP client at shutdown: an interrupted request leaves no connection behind, and `close()` is bounded."""

from __future__ import annotations

import asyncio
from typing import Any

from tetrapipe.sinks.otlp.http import CLOSE_TIMEOUT, HttpClient, _Conn


async def test_a_cancelled_post_aborts_its_connection_instead_of_flushing_the_body() -> None:
    reading = asyncio.Event()
    ended = asyncio.Event()
    received = bytearray()

    async def silent_then_reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reading.wait()  # a collector that does not read (until the client gave up)
        try:
            while chunk := await reader.read(1 << 16):
                received.extend(chunk)
        except ConnectionError:
            pass
        finally:
            ended.set()
            writer.close()

    server = await asyncio.start_server(silent_then_reading, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        client = HttpClient(f"http://127.0.0.1:{port}/v1/logs", timeout=30)
        body = b"x" * (16 << 20)  # far more than the socket buffers hold: the client waits to send the rest
        post = asyncio.ensure_future(client.post(body, {}))
        await asyncio.sleep(0.3)
        post.cancel()
        await asyncio.gather(post, return_exceptions=True)
        reading.set()
        await asyncio.wait_for(ended.wait(), 5)
        # A graceful close would have kept the socket open until the whole body was sent.
        assert len(received) < len(body)
        await client.close()
    finally:
        server.close()


class _NeverClosedWriter:
    """A StreamWriter whose connection never finishes closing (a TLS peer that never answers close_notify)."""

    def __init__(self) -> None:
        self.aborted = False
        self.transport = self

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        await asyncio.Event().wait()

    def abort(self) -> None:
        self.aborted = True


async def test_close_is_bounded_and_aborts_what_does_not_close() -> None:
    client = HttpClient("http://127.0.0.1:9/v1/logs")
    writer: Any = _NeverClosedWriter()
    client._idle.append(_Conn(reader=None, writer=writer))  # type: ignore[arg-type]  # noqa: SLF001
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(client.close(), CLOSE_TIMEOUT + 2)
    assert asyncio.get_running_loop().time() - started < CLOSE_TIMEOUT + 0.5
    assert writer.aborted
