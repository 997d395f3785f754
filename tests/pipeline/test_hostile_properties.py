"""Property-based tests: no input line, however built, escapes the processor as an exception,
and each one is accounted for exactly once — in the output with the event's own bytes as the
prefix, or in the dead letter unchanged (issue 10).

Inputs: arbitrary bytes; arbitrary JSON values (deep, wide, huge numbers, unusual unicode);
real events from tests/data mutated byte by byte; and each of those in every accepted envelope
(raw, Fluent Bit, Vector, CRI F, CRI P+F).  The example budget comes from the Hypothesis
profile (tests/conftest.py): small by default, large under `scripts/fuzz`.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.hostile import deep_array, deep_field_in_event, deep_object, in_every_wrapper
from tetrapipe.event.decode import LineDecoder
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.pipeline.processor import Processor

REAL = [line for line in (Path(__file__).parents[1] / "data" / "docs-examples.jsonl").read_bytes().splitlines()
        if line.strip()]

_scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**40), max_value=10**40)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=6)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=6), max_leaves=60)


@st.composite
def mutated_real_event(draw: st.DrawFn) -> bytes:
    """A real Tetragon event with a few bytes replaced, inserted or deleted."""
    line = bytearray(draw(st.sampled_from(REAL)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(line) - 1))
        op = draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = draw(st.integers(0, 255))
        if byte == 0x0A:  # a newline splits the line: the source's job, not this test's
            byte = 0x20
        if op == "replace":
            line[at] = byte
        elif op == "insert":
            line.insert(at, byte)
        elif len(line) > 1:
            del line[at]
    return bytes(line)


@st.composite
def event_with_json_value(draw: st.DrawFn) -> bytes:
    """A real event with one field set to an arbitrary JSON value (json: big ints, any unicode)."""
    event = json.loads(draw(st.sampled_from(REAL)))
    etype = next(k for k in event if k.startswith("process_"))
    field = draw(st.sampled_from(["process", "parent", "args", "extra", "policy_name"]))
    event[etype][field] = draw(json_values)
    return json.dumps(event, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


deep_lines = st.integers(min_value=1, max_value=20_000).flatmap(
    lambda n: st.sampled_from([deep_object(n), deep_array(n), deep_field_in_event(n)]))
no_newline_bytes = st.binary(max_size=300).map(lambda b: b.replace(b"\n", b" "))
any_line = (no_newline_bytes
            | json_values.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass"))
            | mutated_real_event() | event_with_json_value() | deep_lines | st.sampled_from(REAL))
WRAPPERS = sorted(in_every_wrapper(b"{}"))


def account(processor: Processor, lines: list[bytes]) -> tuple[list[Envelope], list[Envelope], Batch]:
    """Process `lines` as one batch with a fresh decoder (CRI partial state starts empty)."""
    fresh = Processor(processor.tagger, processor.classifier, LineDecoder())
    batch = Batch([Envelope(line, i + 1) for i, line in enumerate(lines)])
    fresh.process(batch)  # must not raise, whatever the lines are
    return batch.good, batch.bad, batch


def assert_accounted(lines: list[bytes], good: list[Envelope], bad: list[Envelope]) -> None:
    ids_good, ids_bad = {id(e) for e in good}, {id(e) for e in bad}
    assert not ids_good & ids_bad, "a record is both output and dead-lettered"
    for env in bad:
        # Unchanged: the input line itself, or a CRI P+F group as its lines were received.
        assert env.raw in (lines[env.position - 1], b"\n".join(lines[env.position - 1:])), \
            "a dead-lettered record was changed"
        assert env.error is not None and env.error.reason and env.out == b""
    for env in good:
        assert env.decoded is not None and env.error is None
        out = orjson.loads(env.out)  # the output is JSON …
        assert isinstance(out, dict) and "tetrapipe" in out  # … with the one added key
        if not env.decoded.has_tetrapipe_key:  # … and the event's own bytes as its prefix
            assert env.out.startswith(env.decoded.raw[:-1])


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(line=any_line, wrapper=st.sampled_from(WRAPPERS))
def test_every_line_in_every_wrapper_is_output_or_dead_lettered_exactly_once(
        processor: Processor, line: bytes, wrapper: str) -> None:
    try:
        lines = in_every_wrapper(line)[wrapper]
    except UnicodeDecodeError:  # the string wrappers need text; the raw bytes are covered by "raw"
        lines = [line]
    good, bad, _ = account(processor, lines)
    assert_accounted(lines, good, bad)
    # The last line completes the record (a CRI P line is joined into the F line's event).
    last = lines[-1]
    if last.strip():
        assert len(good) + len(bad) >= 1
    else:  # blank lines are skipped, counted as blank
        assert [e.error.reason for e in bad if e.error] in ([], ["blank"])


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lines=st.lists(any_line, min_size=1, max_size=20))
def test_a_batch_of_hostile_lines_loses_none_and_keeps_its_good_events(processor: Processor,
                                                                      lines: list[bytes]) -> None:
    with_real = [*lines, *REAL[:3]]  # good events after the hostile ones still come out
    good, bad, _ = account(processor, with_real)
    assert_accounted(with_real, good, bad)
    assert {e.position for e in good} | {e.position for e in bad} == set(range(1, len(with_real) + 1))
    assert {len(with_real) - 2, len(with_real) - 1, len(with_real)} <= {e.position for e in good}


@pytest.mark.parametrize("levels", [2_000, 5_000, 100_000])
@pytest.mark.parametrize("build", [deep_object, deep_array, deep_field_in_event])
def test_deep_nesting_is_too_deep_in_every_wrapper(processor: Processor, levels: int, build) -> None:
    for wrapper, lines in in_every_wrapper(build(levels)).items():
        good, bad, _ = account(processor, lines)
        assert not good, wrapper
        assert [e.error.reason for e in bad if e.error] == ["too_deep"], wrapper
        assert bad[0].raw == b"\n".join(lines), wrapper  # a P+F group: both lines, as received
