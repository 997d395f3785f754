"""Hostile input (issue 10, items 1-4): a line must not be able to stop the stream or vanish.

- fault isolation: whatever one record raises, only that record is rejected (dead-lettered
  unchanged, counted and reported with its position), the rest of the batch flows on;
- nesting depth: deeper than `max_depth` is `too_deep` in every wrapper form, checked before
  any recursive decoder runs, in time linear in the line;
- CRI partial lines that never complete are dead-lettered as received, at their first line;
- a line over the line-size limit reaches a file dead letter whole, in bounded memory.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import synth
from tests.support.events import exec_event
from tests.support.fakes import ScriptedSink
from tetrapipe.event.decode import DEFAULT_MAX_DEPTH, BadInput, LineDecoder, fault, nesting_depth
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.pipeline import report as report_module
from tetrapipe.pipeline.processor import Processor
from tetrapipe.pipeline.report import BadInputReporter
from tetrapipe.pipeline.runner import EXIT_OK, Pipeline
from tetrapipe.pipeline.stats import Stats
from tetrapipe.sinks.file import FileDeadLetter
from tetrapipe.sources.follow.checkpoint import FilePosition
from tetrapipe.sources.stream import FileSource, StdinSource

DATA = Path(__file__).parents[1] / "data"
DOCS = [line for line in (DATA / "docs-examples.jsonl").read_bytes().splitlines() if line.strip()]
GOOD = [orjson.dumps(exec_event("/bin/ls", f"seq-{i}")) for i in range(3)]
TS = "2024-01-01T00:00:00.1Z"


def deep_object(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


def deep_array(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def deep_field(levels: int) -> bytes:
    """A valid event with one field nested `levels` deep below the event (the event adds one level)."""
    return GOOD[0][:-1] + b',"extra":' + deep_object(levels) + b"}"


def wrappers(line: bytes) -> dict[str, list[bytes]]:
    """`line` in every accepted form (CRI P+F: two lines)."""
    half = len(line) // 2
    return {
        "raw": [line],
        "fluentbit-string": [synth.wrap_fluentbit(line)],
        "fluentbit-object": [synth.wrap_object(line, "log")],
        "vector-string": [synth.wrap_vector(line)],
        "vector-object": [synth.wrap_object(line, "message")],
        "cri-f": [synth.wrap_cri(line)],
        "cri-p+f": [synth.wrap_cri(line[:half]).replace(b" F ", b" P ", 1), synth.wrap_cri(line[half:])],
        "fluentbit-cri-f": [orjson.dumps({"log": synth.wrap_cri(line).decode()})],
    }


def processed(processor: Processor, lines: list[bytes], *, final: bool = False, position: Any = 99,
              decoder: LineDecoder | None = None) -> Batch:
    """`lines` as one batch, through a Processor with its own decoder (fresh CRI state)."""
    fresh = Processor(processor.tagger, processor.classifier, decoder or LineDecoder())
    batch = Batch([Envelope(line, i + 1) for i, line in enumerate(lines)], position, final=final)
    fresh.process(batch)
    return batch


def reasons(batch: Batch) -> list[str]:
    return [e.error.reason for e in batch.bad if e.error is not None]


# -- 2. nesting depth ------------------------------------------------------------------------

def reference_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(reference_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(reference_depth, value), default=0)
    return 0


_text = st.text(alphabet=st.sampled_from('ab{}[]"\\\n é'), max_size=8)
_values = st.recursive(st.none() | st.integers() | _text,
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
                       max_leaves=40)


@settings(max_examples=300)
@given(value=_values, ensure_ascii=st.booleans(), indent=st.sampled_from([None, 1]))
def test_nesting_depth_is_exact_and_ignores_brackets_in_strings(value, ensure_ascii, indent):
    text = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent).encode()
    assert nesting_depth(text) == reference_depth(value)


def test_the_deepest_real_and_synthetic_events_are_far_below_the_default():
    deepest = max(nesting_depth(line) for line in DOCS)
    synthetic = max(nesting_depth(line) for line in synth.generate(5000, seed=7))
    assert deepest == 7 and synthetic <= deepest  # measured: docs 7, synthetic 6
    assert deepest + 1 < DEFAULT_MAX_DEPTH // 4  # +1: inside a Fluent Bit object; ample headroom
    assert sys.getrecursionlimit() > DEFAULT_MAX_DEPTH * 4  # and far from the interpreter's limit


@pytest.mark.parametrize("levels", [DEFAULT_MAX_DEPTH + 1, 1_000, 5_000, 100_000])
@pytest.mark.parametrize("build", [deep_object, deep_array, deep_field], ids=["object", "array", "field"])
@pytest.mark.parametrize("form", sorted(wrappers(b"{}")))
def test_deep_nesting_is_too_deep_in_every_form(processor, levels, build, form):
    lines = wrappers(build(levels))[form]
    batch = processed(processor, [GOOD[0], *lines, GOOD[1]])
    assert reasons(batch) == ["too_deep"]
    assert [e.position for e in batch.good] == [1, len(lines) + 2]  # the events around it flow on
    assert batch.bad[0].raw == b"\n".join(lines)  # kept as received (CRI P+F: both lines)
    assert batch.bad[0].position == 2


@pytest.mark.parametrize("form", sorted(wrappers(b"{}")))
def test_nesting_up_to_the_limit_passes_in_every_form(processor, form):
    # the event and the field together nest max_depth deep: the record as received is the limit,
    # so the object wrappers (one more level) are measured one level less deep
    levels = DEFAULT_MAX_DEPTH - 1 - (form.endswith("-object"))
    batch = processed(processor, wrappers(deep_field(levels))[form])
    assert reasons(batch) == [] and len(batch.good) == 1


def test_the_limit_is_configurable():
    assert LineDecoder(max_depth=10).decode(deep_field(9)) is not None
    with pytest.raises(BadInput) as info:
        LineDecoder(max_depth=10).decode(deep_field(10))
    assert info.value.reason == "too_deep" and "11 levels" in info.value.detail
    with pytest.raises(ValueError, match="max_depth"):
        LineDecoder(max_depth=0)


def test_many_brackets_inside_strings_are_not_nesting():
    event = exec_event("/bin/sh", "-c " + "{[" * 5000)
    decoded = LineDecoder().decode(orjson.dumps(event))
    assert decoded is not None and decoded.etype == "process_exec"


@pytest.mark.parametrize("line", [
    b"[" * 5000,  # truncated: the parser would recurse before noticing
    b'{"a":' * 5000,
    b'{"a":[' * 3000,
    b"x" + b"[" * 5000,
    b'2024-01-01T00:00:00Z stdout F ' + b"[" * 5000,
])
def test_truncated_and_malformed_deep_input_is_too_deep(line):
    with pytest.raises(BadInput) as info:
        LineDecoder().decode(line)
    assert info.value.reason == "too_deep"


@pytest.mark.parametrize("shape", [
    lambda n: b"[]" * (n // 2),  # many brackets, shallow
    lambda n: b"[" * n,  # deep and truncated
    lambda n: b'["' + b'\\"' * (n // 2),  # an unterminated string of escaped quotes
    lambda n: b'[' + b'"\\' * (n // 2),
    lambda n: (b'[' * 60 + b']' * 60) * (n // 120),  # just under the limit, repeated
], ids=["pairs", "opens", "escaped-quotes", "quote-backslash", "repeated-60"])
def test_hostile_lines_cost_linear_time(shape):
    n = 4 << 20
    line = shape(n)
    started = time.perf_counter()
    with pytest.raises(BadInput):
        LineDecoder().decode(line)
    assert time.perf_counter() - started < 10  # seconds; a quadratic scan would take hours


# -- 1. fault isolation -------------------------------------------------------------------------

class Boom(Exception):
    pass


class RaisingTagger:
    """Delegates to the real tagger, but raises on events of one binary."""

    def __init__(self, real: Any, binary: str, exc: type[BaseException] = Boom) -> None:
        self.real, self.binary, self.exc = real, binary, exc

    def tag(self, decoded: Any) -> Any:
        if decoded.view.process_exec is not None and decoded.view.process_exec.process.binary == self.binary:
            raise self.exc("event content must not be logged: s3cr3t")
        return self.real.tag(decoded)


class RaisingClassifier:
    def classify(self, body: Any) -> Any:
        raise KeyError("s3cr3t")


def test_a_record_whose_tagging_raises_is_rejected_alone(processor):
    tagger = RaisingTagger(processor.tagger, "/bin/boom")
    proc = Processor(tagger, processor.classifier)  # type: ignore[arg-type]
    boom = orjson.dumps(exec_event("/bin/boom"))
    batch = Batch([Envelope(line, i + 1) for i, line in enumerate([GOOD[0], boom, GOOD[1], boom, GOOD[2]])])
    proc.process(batch)
    assert [e.position for e in batch.good] == [1, 3, 5]
    assert [(e.position, e.raw) for e in batch.bad] == [(2, boom), (4, boom)]
    env = batch.bad[0]
    assert env.error is not None and env.error.reason == "internal_error" and env.error.fault
    assert env.error.detail.startswith("Boom in tests/pipeline/test_hostile_input.py:")
    assert "s3cr3t" not in env.error.detail  # the message may quote the record: never shown
    assert env.decoded is None and env.out == b"" and not env.tags.categories  # nothing half-filled


def test_a_record_whose_classification_raises_is_rejected_alone(processor):
    proc = Processor(processor.tagger, RaisingClassifier())  # type: ignore[arg-type]
    kprobe = next(line for line in DOCS if b'"process_kprobe"' in line)
    batch = Batch([Envelope(GOOD[0], 1), Envelope(kprobe, 2), Envelope(GOOD[1], 3)])
    proc.process(batch)
    assert [e.position for e in batch.good] == [1, 3]
    assert reasons(batch) == ["internal_error"] and batch.bad[0].error.detail.startswith("KeyError in ")


def test_a_decoder_that_raises_rejects_the_record_alone(processor):
    class Broken(LineDecoder):
        def decode(self, line: bytes) -> Any:
            if b"boom" in line:
                raise ZeroDivisionError("s3cr3t")
            return super().decode(line)

    boom = orjson.dumps(exec_event("/bin/boom"))
    batch = processed(processor, [GOOD[0], boom, GOOD[1]], decoder=Broken())
    assert [e.position for e in batch.good] == [1, 3] and reasons(batch) == ["internal_error"]
    assert batch.bad[0].raw == boom


def test_a_recursion_error_is_too_deep(processor):
    tagger = RaisingTagger(processor.tagger, "/bin/boom", RecursionError)
    proc = Processor(tagger, processor.classifier)  # type: ignore[arg-type]
    batch = Batch([Envelope(orjson.dumps(exec_event("/bin/boom")), 1)])
    proc.process(batch)
    assert reasons(batch) == ["too_deep"] and batch.bad[0].error.fault


def test_a_joined_cri_event_whose_tagging_raises_is_rejected_with_its_partial_lines(processor):
    tagger = RaisingTagger(processor.tagger, "/bin/boom")
    proc = Processor(tagger, processor.classifier)  # type: ignore[arg-type]
    event = orjson.dumps(exec_event("/bin/boom"))
    lines = wrappers(event)["cri-p+f"]
    batch = Batch([Envelope(line, i + 1) for i, line in enumerate([GOOD[0], *lines])])
    proc.process(batch)
    assert [e.position for e in batch.good] == [1]
    assert [(e.position, e.raw) for e in batch.bad] == [(2, b"\n".join(lines))]


def test_faults_are_reported_as_errors_with_their_own_rate_limit(monkeypatch):
    said: list[tuple[str, str]] = []
    monkeypatch.setattr(report_module, "emit", lambda out, level, message, **_: said.append((level, message)))
    reporter = BadInputReporter(burst=2, per_second=0.0, clock=lambda: 0.0)
    for n in range(5):  # a flood of ordinary bad input …
        env = Envelope(b"x", n)
        env.error = BadInput("invalid_json", "x")
        reporter.report(env)
    try:
        raise Boom("s3cr3t")
    except Boom as exc:
        error = fault(exc)
    for n in range(3):  # … does not hide the internal errors
        env = Envelope(b"y", 100 + n)
        env.error = error
        reporter.report(env)
    reporter.close()
    errors = [m for level, m in said if level == "error"]
    assert len(errors) == 3 and "line 100" in errors[0] and "internal_error: Boom in " in errors[0]
    assert "1 more internal errors not shown" in errors[2]
    assert all("s3cr3t" not in m for _, m in said)


# -- 3. CRI partial lines ---------------------------------------------------------------------

def cri(stream: str, tag: str, payload: bytes, ts: str = TS) -> bytes:
    return f"{ts} {stream} {tag} ".encode() + payload


EVENT = GOOD[0]


def test_partial_lines_orphaned_at_the_end_of_input_are_kept_as_received(processor):
    p1, p2 = cri("stdout", "P", EVENT[:30]) + b"\r", cri("stdout", "P", EVENT[30:60])
    batch = processed(processor, [GOOD[1], p1, p2], final=True)
    assert [e.position for e in batch.good] == [1]
    assert reasons(batch) == ["incomplete_partial"]
    assert batch.bad[0].raw == p1 + b"\n" + p2 and batch.bad[0].position == 2
    assert "end" in batch.bad[0].error.detail


def test_a_record_that_is_not_a_cri_line_orphans_the_partial_lines(processor):
    p1 = cri("stdout", "P", EVENT[:30])
    batch = processed(processor, [p1, GOOD[1], cri("stdout", "F", EVENT)])
    assert [e.position for e in batch.good] == [2, 3]  # the F line after it starts afresh
    assert [(e.position, e.raw, e.error.reason) for e in batch.bad] == [(1, p1, "incomplete_partial")]


def test_garbage_orphans_the_partial_lines_and_is_rejected_itself(processor):
    p1 = cri("stderr", "P", EVENT[:30])
    batch = processed(processor, [p1, b"garbage"])
    assert sorted((e.position, e.error.reason) for e in batch.bad) == [(1, "incomplete_partial"),
                                                                       (2, "invalid_json")]


def test_the_other_stream_does_not_interrupt_partial_lines(processor):
    # containerd writes stdout and stderr interleaved, line by line: a stderr line between the
    # parts of a long stdout line is normal
    other = orjson.dumps(exec_event("/bin/other"))
    lines = [cri("stdout", "P", EVENT[:30]), cri("stderr", "F", other), cri("stdout", "P", EVENT[30:70]),
             cri("stderr", "P", other[:20]), cri("stdout", "F", EVENT[70:]), cri("stderr", "F", other[20:])]
    batch = processed(processor, lines)
    assert reasons(batch) == []
    assert [(e.position, e.decoded.raw) for e in batch.good] == [(2, other), (5, EVENT), (6, other)]


def test_fluent_bit_records_of_partial_lines_are_kept_as_received(processor):
    records = [orjson.dumps({"log": cri("stdout", "P", EVENT[:30]).decode(), "stream": "stdout"}),
               orjson.dumps({"log": cri("stdout", "P", EVENT[30:60]).decode(), "stream": "stdout"})]
    batch = processed(processor, records, final=True)
    assert [(e.raw, e.error.reason) for e in batch.bad] == [(b"\n".join(records), "incomplete_partial")]


def test_partial_lines_over_the_size_limit_are_rejected_with_the_line_that_overflowed(processor):
    lines = [cri("stdout", "P", b"x" * 400) for _ in range(3)]
    batch = processed(processor, [*lines, GOOD[1]], decoder=LineDecoder(max_event_bytes=1000))
    assert [(e.position, e.raw, e.error.reason) for e in batch.bad] == [(1, b"\n".join(lines), "too_large")]
    assert [e.position for e in batch.good] == [4]


def test_a_group_whose_joined_payload_fails_is_rejected_whole(processor):
    lines = [cri("stdout", "P", b'{"process_exec":'), cri("stdout", "F", b'{"broken"}')]
    batch = processed(processor, [GOOD[1], *lines])
    assert [(e.position, e.raw) for e in batch.bad] == [(2, b"\n".join(lines))]


def test_orphans_from_an_earlier_batch_come_out_in_the_final_one(processor):
    proc = Processor(processor.tagger, processor.classifier, LineDecoder())
    p1 = cri("stdout", "P", EVENT[:30])
    first = Batch([Envelope(GOOD[1], 1), Envelope(p1, 2)], 100)
    proc.process(first)
    assert not first.bad and first.commit_position is None  # the commit waits for the group
    last = Batch([], 100, final=True)
    proc.process(last)
    assert [(e.position, e.raw) for e in last.bad] == [(2, p1)]
    assert last.commit_position == 100


@pytest.mark.parametrize("position", [FilePosition(1, 2, 300), 300])
def test_a_batch_ending_inside_a_group_commits_nothing_until_the_group_ends(processor, position):
    proc = Processor(processor.tagger, processor.classifier, LineDecoder())
    first = Batch([Envelope(GOOD[1], 1), Envelope(cri("stdout", "P", EVENT[:30]), 2)], position)
    proc.process(first)
    assert first.commit_position is None  # a restart must read the P line again
    second = Batch([Envelope(cri("stdout", "F", EVENT[30:]), 3)], position)
    proc.process(second)
    assert [e.decoded.raw for e in second.good] == [EVENT] and second.commit_position == position


def test_kafka_positions_are_not_held(processor):
    proc = Processor(processor.tagger, processor.classifier, LineDecoder())
    batch = Batch([Envelope(cri("stdout", "P", EVENT[:30]), ("t", 0, 5))], {("t", 0): 6})
    proc.process(batch)
    assert batch.commit_position == {("t", 0): 6}


# -- 4. oversized lines ---------------------------------------------------------------------------

async def run_pipeline(source: Any, processor: Processor, dead_letter: Any) -> tuple[int, Pipeline, ScriptedSink]:
    sink = ScriptedSink()
    pipeline = Pipeline(source, processor, [sink], dead_letter=dead_letter, stats=Stats(), log=io.StringIO(),
                        reporter=BadInputReporter(io.StringIO(), describe=source.describe))
    code = await asyncio.wait_for(pipeline.run(), 30)
    return code, pipeline, sink


@pytest.mark.parametrize("chunk", [997, 65536, 1 << 20])
async def test_an_oversized_line_reaches_the_file_dead_letter_whole(processor, tmp_path, chunk):
    big = orjson.dumps(exec_event("/bin/big", "x" * 300_000))  # an event over a 64 KiB limit
    data = b"\n".join([GOOD[0], big, GOOD[1], big + b"\r"]) + b"\n" + GOOD[2]
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    dead = FileDeadLetter(str(tmp_path / "dead.jsonl"))
    source = FileSource(str(path), chunk_size=chunk, max_line=64 << 10, spill=dead.spool)
    code, pipeline, sink = await run_pipeline(source, processor, dead)
    assert code == EXIT_OK
    assert [e.raw for e in sink.delivered] == [GOOD[0], GOOD[1], GOOD[2]]
    assert (tmp_path / "dead.jsonl").read_bytes() == big + b"\n" + big + b"\r\n"  # byte-identical
    assert pipeline.stats.bad == {"too_large": 2}  # counted once each
    assert pipeline.stats.dead_lettered_by_reason == {"too_large": 2}
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tetrapipe-spool")]  # spools are anonymous


class PipeSource(StdinSource):
    def __init__(self, fd: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fd = fd

    def _open(self) -> int:
        return self.fd


async def test_an_oversized_line_from_a_pipe_is_spilled_in_bounded_memory(processor, tmp_path):
    big = b"z" * (3 << 20)
    read_fd, write_fd = os.pipe()
    dead = FileDeadLetter(str(tmp_path / "dead.jsonl"))
    source = PipeSource(read_fd, chunk_size=64 << 10, max_line=256 << 10, spill=dead.spool)
    heads: list[int] = []
    feed = source.splitter.feed

    def watched(chunk: bytes) -> list[bytes]:
        out = feed(chunk)
        heads.append(len(source.splitter._tail))  # noqa: SLF001
        heads.extend(len(x) for x in out)
        return out

    source.splitter.feed = watched  # type: ignore[method-assign]

    def write() -> None:
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(GOOD[0] + b"\n" + big + b"\n" + GOOD[1] + b"\n")

    writer = asyncio.get_running_loop().run_in_executor(None, write)
    try:
        code, pipeline, sink = await run_pipeline(source, processor, dead)
        await writer
    finally:
        os.close(read_fd)
    assert code == EXIT_OK and [e.raw for e in sink.delivered] == [GOOD[0], GOOD[1]]
    assert (tmp_path / "dead.jsonl").read_bytes() == big + b"\n"
    assert max(heads) <= 256 << 10  # never more than the limit of one line held


async def test_without_a_dead_letter_an_oversized_line_is_counted_and_reported(processor, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(GOOD[0] + b"\n" + b"x" * 5000 + b"\n" + GOOD[1] + b"\n")
    source = FileSource(str(path), max_line=1000)
    report = io.StringIO()
    sink = ScriptedSink()
    pipeline = Pipeline(source, processor, [sink], stats=Stats(), log=io.StringIO(),
                        reporter=BadInputReporter(report, describe=source.describe))
    assert await pipeline.run() == EXIT_OK
    assert len(sink.delivered) == 2 and pipeline.stats.bad == {"too_large": 1}
    assert "line 2: too_large: line of 5000 bytes, longer than 1000" in report.getvalue()


# -- end to end: the command ------------------------------------------------------------------

TETRAPIPE = [sys.executable, "-m", "tetrapipe.cli.main", "run", "--quiet", "--log-format", "json"]


def test_tetrapipe_run_passes_a_deep_line_by_and_dead_letters_it(tmp_path):
    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    partial = cri("stdout", "P", EVENT[:40])
    data = b"\n".join([GOOD[0], deep, GOOD[1], deep_field(3000), GOOD[2], partial]) + b"\n"
    dead = tmp_path / "dead.jsonl"
    proc = subprocess.run([*TETRAPIPE, "--dead-letter", str(dead)], input=data, capture_output=True,
                          timeout=60, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    out = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert [o["process_exec"]["process"]["arguments"] for o in out] == ["seq-0", "seq-1", "seq-2"]
    assert dead.read_bytes() == deep + b"\n" + deep_field(3000) + b"\n" + partial + b"\n"
    reports = [json.loads(line) for line in proc.stderr.splitlines() if b"bad input at" in line]
    assert [(r["reason"], r["position"]) for r in reports] == [
        ("too_deep", "stdin line 2"), ("too_deep", "stdin line 4"), ("incomplete_partial", "stdin line 6")]
