"""Line splitting: order, lines across chunks, bounded memory for oversized lines."""

from __future__ import annotations

import io
import random

import pytest

from tetrapipe.event.oversized import Oversized
from tetrapipe.sources.lines import LineSplitter


def split_all(data: bytes, chunk: int, max_line: int = 100) -> list[bytes]:
    splitter = LineSplitter(max_line)
    out: list[bytes] = []
    for i in range(0, len(data), chunk):
        out += splitter.feed(data[i:i + chunk])
    last = splitter.finish()
    return out + ([last] if last is not None else [])


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1000])
def test_lines_across_chunk_boundaries(chunk):
    rng = random.Random(chunk)
    lines = [bytes(rng.choice(b"abc{}") for _ in range(rng.randrange(0, 60))) for _ in range(200)]
    assert split_all(b"\n".join(lines) + b"\n", chunk) == lines
    assert split_all(b"\n".join(lines), chunk) == (lines if lines[-1] else lines[:-1])


@pytest.mark.parametrize("chunk", [5, 50, 150, 10_000])
def test_oversized_lines_keep_their_place_and_are_bounded(chunk):
    data = b"short1\n" + b"x" * 250 + b"\nshort2\n" + b"y" * 1000 + b"\nshort3\n"
    out = split_all(data, chunk)
    assert [bytes(x) if type(x) is not Oversized else "big" for x in out] == [
        b"short1", "big", b"short2", "big", b"short3"]
    assert all(len(x) <= 100 for x in out)
    assert out[1] == b"x" * 100


def test_an_oversized_line_is_returned_once_when_its_newline_comes():
    splitter = LineSplitter(10)
    assert splitter.feed(b"ok\n" + b"z" * 50) == [b"ok"]
    assert splitter.feed(b"z" * 50) == []
    out = splitter.feed(b"zz\nnext\n")
    assert out == [b"z" * 10, b"next"] and type(out[0]) is Oversized
    assert out[0].size == 102 and out[0].spool is None  # no spill: only the head is kept
    assert splitter.finish() is None
    assert splitter.oversized == 1


def test_an_unterminated_oversized_line_is_returned_by_finish():
    splitter = LineSplitter(10)
    assert splitter.feed(b"ok\n" + b"z" * 50) == [b"ok"]
    last = splitter.finish()
    assert type(last) is Oversized and last.size == 50 and last == b"z" * 10
    assert splitter.oversized == 1


def spill_into(spools: list[io.BytesIO]):
    def spill() -> io.BytesIO:
        spools.append(io.BytesIO())
        return spools[-1]
    return spill


@pytest.mark.parametrize("chunk", [1, 7, 64, 150, 10_000])
def test_a_spilled_oversized_line_is_kept_whole_in_its_spool(chunk):
    big1, big2 = bytes(range(256)).replace(b"\n", b"") * 3, b"y" * 1000
    data = b"short1\n" + big1 + b"\nshort2\n" + big2 + b"\r\nshort3\n" + b"z" * 500  # the last: no newline
    spools: list[io.BytesIO] = []
    splitter = LineSplitter(100, spill_into(spools))
    out: list[bytes] = []
    for i in range(0, len(data), chunk):
        out += splitter.feed(data[i:i + chunk])
        assert len(splitter._tail) <= 100  # noqa: SLF001 - memory bound: never a whole long line
    last = splitter.finish()
    assert last is not None
    out.append(last)
    assert [type(x) is Oversized for x in out] == [False, True, False, True, False, True]
    wholes = [x.spool.read() for x in out if type(x) is Oversized]
    assert wholes == [big1, big2 + b"\r", b"z" * 500]
    assert [x.size for x in out if type(x) is Oversized] == [len(big1), len(big2) + 1, 500]
    assert all(len(x) <= 100 for x in out)


def test_a_spill_that_fails_keeps_the_head():
    def broken() -> io.BytesIO:
        raise OSError("read-only file system")
    splitter = LineSplitter(10, broken)
    out = splitter.feed(b"x" * 30 + b"\n")
    assert type(out[0]) is Oversized and out[0] == b"x" * 10 and out[0].spool is None and out[0].size == 30


def test_discard_forgets_an_unfinished_oversized_line():
    spools: list[io.BytesIO] = []
    splitter = LineSplitter(10, spill_into(spools))
    splitter.feed(b"x" * 30)
    splitter.discard()
    assert spools[0].closed
    assert splitter.feed(b"ok\n") == [b"ok"]
