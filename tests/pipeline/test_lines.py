"""Line splitting: order, lines across chunks, bounded memory for oversized lines."""

from __future__ import annotations

import random

import pytest

from pipeline.sources.lines import LineSplitter, Oversized


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


def test_unterminated_oversized_tail_is_reported_once():
    splitter = LineSplitter(10)
    out = splitter.feed(b"ok\n" + b"z" * 50)
    assert out[0] == b"ok" and type(out[1]) is Oversized
    assert splitter.feed(b"z" * 50) == []
    assert splitter.feed(b"zz\nnext\n") == [b"next"]
    assert splitter.finish() is None
    assert splitter.oversized == 1
