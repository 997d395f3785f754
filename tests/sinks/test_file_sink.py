"""The `file` sink on a real file: a torn last line (a writer killed mid-write) is cut on start, nothing else.

The cut line's record was never acknowledged, so the next run writes it again whole: after `start()` the
file holds exactly its complete lines, and what is written next starts on a line of its own.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tetrapipe.event.envelope import Envelope
from tetrapipe.formats import build_format
from tetrapipe.sinks import file_sink
from tetrapipe.sinks.file_sink import FileSink


def event(n: int) -> Envelope:
    env = Envelope(b"{}", n)
    env.out = b'{"n":%d}' % n
    return env


async def started(path: Path) -> FileSink:
    sink = FileSink(str(path), build_format("tetrapipe"))
    await sink.start()
    return sink


def warnings(err: str) -> list[dict]:
    return [r for r in map(orjson.loads, err.splitlines()) if r["level"] == "warning"]


@pytest.fixture(autouse=True)
def json_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    from tetrapipe import logs
    monkeypatch.setattr(logs._state, "format", "json")


async def test_a_torn_last_line_is_cut_and_the_next_write_starts_a_line(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"n":0}\n{"n":1}\n{"n":2,"hal')
    sink = await started(path)
    await sink.write([event(2), event(3)])
    await sink.close()
    assert path.read_bytes() == b'{"n":0}\n{"n":1}\n{"n":2}\n{"n":3}\n'
    [warning] = warnings(capsys.readouterr().err)
    assert warning["cut_bytes"] == len(b'{"n":2,"hal') and str(path) in warning["message"]


async def test_a_whole_file_is_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for content in (b"", b'{"n":0}\n', b"\n\n"):
        path = tmp_path / "events.jsonl"
        path.write_bytes(content)
        await (await started(path)).close()
        assert path.read_bytes() == content
    assert not warnings(capsys.readouterr().err)
    path = tmp_path / "new.jsonl"  # created as before
    await (await started(path)).close()
    assert path.read_bytes() == b""


async def test_a_torn_line_longer_than_one_read_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "events.jsonl"
    head = b"x" * 100 + b"\n"
    for torn in (b"y" * (3 * file_sink._TAIL_READ + 5), b"y" * file_sink._TAIL_READ):
        path.write_bytes(head + torn)
        await (await started(path)).close()
        assert path.read_bytes() == head
        path.write_bytes(torn)  # no newline at all: the whole file is the torn line
        await (await started(path)).close()
        assert path.read_bytes() == b""
    assert [w["cut_bytes"] for w in warnings(capsys.readouterr().err)] == [3 * file_sink._TAIL_READ + 5] * 2 + \
        [file_sink._TAIL_READ] * 2


@settings(max_examples=60, deadline=None)
@given(content=st.lists(st.sampled_from([b"\n", b"a", b"{}", b"\xff", b"z" * 70]), max_size=40).map(b"".join),
       read=st.sampled_from([1, 2, 3, 64]))
def test_start_keeps_exactly_the_complete_lines(content: bytes, read: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f"
        path.write_bytes(content)
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
        try:
            cut = file_sink.cut_torn_tail(fd, block=read)  # small reads: the scan back crosses blocks
        finally:
            os.close(fd)
        kept = content[:content.rfind(b"\n") + 1]
        assert path.read_bytes() == kept and cut == len(content) - len(kept)


async def test_a_fifo_is_opened_as_before(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        sink = await started(fifo)
        await sink.write([event(1)])
        await sink.close()
        assert os.read(reader, 100) == b'{"n":1}\n'
    finally:
        os.close(reader)
