"""The stdout sink's vectored write: blocks (a `formats.base.Blocks` format, `--workers`) reach the
descriptor whole and in order, however short the kernel's writes are."""

from __future__ import annotations

import os
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tetrapipe.event.envelope import Envelope
from tetrapipe.formats.base import Blocks
from tetrapipe.pipeline.workers import Prerendered
from tetrapipe.sinks import stdout
from tetrapipe.sinks.stdout import StdoutSink, write_all


class ShortWrites:
    """os.writev that takes at most `limit` bytes per call, recording what it got."""

    def __init__(self, limits: list[int]) -> None:
        self.limits = limits
        self.calls = 0
        self.got = bytearray()
        self.widest = 0

    def __call__(self, fd: int, buffers: list[memoryview]) -> int:
        limit = self.limits[self.calls % len(self.limits)]
        self.calls += 1
        self.widest = max(self.widest, len(buffers))
        data = b"".join(bytes(b) for b in buffers)[:limit]
        self.got += data
        return len(data)


@given(blocks=st.lists(st.binary(max_size=40), max_size=30), limits=st.lists(st.integers(1, 64), min_size=1))
def test_blocks_are_written_whole_and_in_order_through_short_writes(blocks: list[bytes], limits: list[int]) -> None:
    fake = ShortWrites(limits)
    real, iov_max = os.writev, stdout._IOV_MAX
    stdout.os.writev, stdout._IOV_MAX = fake, 4  # type: ignore[assignment]
    try:
        write_all(99, blocks)
    finally:
        stdout.os.writev, stdout._IOV_MAX = real, iov_max  # type: ignore[assignment]
    assert bytes(fake.got) == b"".join(blocks)
    assert fake.widest <= 4


def envelope_with(block: bytes) -> Envelope:
    env = Envelope(b"{}", 0)
    env.out = block
    return env


def test_prerendered_is_a_blocks_format_and_its_blocks_join_to_its_lines() -> None:
    fmt = Prerendered("tetrapipe")
    envelopes = [envelope_with(b"a\nb\n"), Envelope(b"{}", 1), envelope_with(b"c\n")]
    assert isinstance(fmt, Blocks)
    assert fmt.blocks(envelopes) == [b"a\nb\n", b"c\n"]
    assert b"".join(fmt.blocks(envelopes)) == fmt.lines(envelopes)


async def test_the_stdout_sink_writes_a_blocks_format_through_a_real_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks larger than a pipe's buffer, read by another thread: every byte arrives, in order, through
    vectored writes — also when the format is swapped in after the sink was built, as `--workers` does."""
    blocks = [bytes([65 + i]) * (300_000 + i) + b"\n" for i in range(5)]
    r, w = os.pipe()
    received = bytearray()
    vectored: list[int] = []
    real = os.writev

    def counted(fd: int, buffers: list[memoryview]) -> int:
        vectored.append(len(buffers))
        return real(fd, buffers)

    def drain() -> None:
        while chunk := os.read(r, 1 << 16):
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    sink = StdoutSink("tetrapipe", fd=w)
    sink.format = Prerendered("tetrapipe")
    monkeypatch.setattr(stdout.os, "writev", counted)
    try:
        await sink.write([envelope_with(b) for b in blocks])
        await sink.close()
    finally:
        monkeypatch.undo()  # before the reader thread's last reads and the asserts
        os.close(w)
        reader.join(10)
        os.close(r)
    assert bytes(received) == b"".join(blocks)
    assert vectored and vectored[0] == len(blocks)


@pytest.mark.parametrize("data", [[], [b"", b""]])
def test_no_bytes_to_write_makes_no_call(data: list[bytes]) -> None:
    fake = ShortWrites([1])
    real = os.writev
    stdout.os.writev = fake  # type: ignore[assignment]
    try:
        write_all(99, data)
    finally:
        stdout.os.writev = real  # type: ignore[assignment]
    assert fake.calls == 0
