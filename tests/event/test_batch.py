"""The batch decode (tetrapipe.event.batch) gives every line exactly what the line-by-line decode gives.

Each test processes the same lines twice: with the batch path (a plain `LineDecoder`) and line by
line (a subclass overriding `decode`, which the batch path leaves alone), and compares every
record's outcome: output bytes and position, or dead-letter reason, bytes and position.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.hostile import deep_array, deep_object, in_every_wrapper, wrap_fluentbit
from tetrapipe.event.batch import decode_batch
from tetrapipe.event.decode import DEFAULT_MAX_DEPTH, LineDecoder
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.event.model import KNOWN_TYPES
from tetrapipe.pipeline.processor import Processor
from tetrapipe.rules.library import load_library
from tetrapipe.transforms.classify import Classifier
from tetrapipe.transforms.tag import Tagger

REAL = [line for line in (Path(__file__).parents[1] / "data" / "docs-examples.jsonl").read_bytes().splitlines()
        if line.strip()]
EXEC, EXIT, KPROBE = (next(line for line in REAL if line.startswith(b'{"' + t.encode())) for t in
                      ("process_exec", "process_exit", "process_kprobe"))
TAGGER = Tagger(load_library())
CLASSIFIER = Classifier(pod_cidrs=["10.244.0.0/16"], service_cidrs=["10.96.0.0/12"])


class LineByLine(LineDecoder):
    """The same decoder, but `decode_batch` declines it: every line goes through `decode`."""

    def decode(self, line: bytes) -> Any:
        return super().decode(line)


def outcomes(lines: list[bytes], decoder: LineDecoder) -> list[tuple[Any, ...]]:
    batch = Batch([Envelope(line, i + 1) for i, line in enumerate(lines)], final=True)
    Processor(TAGGER, CLASSIFIER, decoder).process(batch)
    return ([("good", e.position, e.out, e.decoded.etype, e.tags.categories) for e in batch.good]  # type: ignore[union-attr]
            + [("bad", e.position, e.raw, e.error.reason, e.error.detail) for e in batch.bad])  # type: ignore[union-attr]


def assert_same(lines: list[bytes], max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    assert outcomes(lines, LineDecoder(max_depth=max_depth)) == outcomes(lines, LineByLine(max_depth=max_depth))


def nested_in_event(levels: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    """An exec event nested `levels` deep in all, with no other bracket: its bracket count is its depth."""
    inner = levels - 2  # the top object and the body
    return b'{"process_exec":{"deep":' + opener * inner + b"1" + closer * inner + b"}}"


def test_real_events_are_decoded_as_a_batch_and_equal_line_by_line() -> None:
    decoded = decode_batch(LineDecoder(), REAL)
    assert decoded is not None
    modelled = [line for line, d in zip(REAL, decoded, strict=True) if d is not None]
    assert len(modelled) > len(REAL) // 2  # the others are types without a model (process_connect, ...)
    for line, d in zip(REAL, decoded, strict=True):
        if d is None:
            assert b'"process_' in line and not any(f'{{"{t}":'.encode() in line[:40] for t in KNOWN_TYPES)
            continue
        one = LineDecoder().decode(line)
        assert one is not None
        assert (d.raw, d.etype, d.view, d.vbody, d.incomplete, d.has_tetrapipe_key) == \
            (one.raw, one.etype, one.view, one.vbody, one.incomplete, one.has_tetrapipe_key)
    assert_same(REAL)


@pytest.mark.parametrize("levels", [DEFAULT_MAX_DEPTH - 1, DEFAULT_MAX_DEPTH, DEFAULT_MAX_DEPTH + 1])
def test_depth_at_the_limit_is_exact(levels: int) -> None:
    for line in (nested_in_event(levels), nested_in_event(levels, b'{"a":', b"}")):
        lines = [EXEC, line, EXIT]
        assert_same(lines)
        bad = [o[3] for o in outcomes(lines, LineDecoder()) if o[0] == "bad"]
        assert bad == (["too_deep"] if levels > DEFAULT_MAX_DEPTH else [])


def test_brackets_inside_strings_do_not_count_but_are_checked_exactly() -> None:
    lines = [EXEC[:-1] + b',"s":"' + b"{[" * 200 + b'"}', KPROBE]
    assert decode_batch(LineDecoder(), lines) is None  # past the bound: the exact check, line by line
    assert_same(lines)
    assert [o[0] for o in outcomes(lines, LineDecoder())] == ["good", "good"]


def test_an_envelope_with_a_partial_line_then_plain_events_orphans_the_group_as_line_by_line() -> None:
    partial = in_every_wrapper(EXEC)["cri_partial"][0]
    lines = [EXIT, wrap_fluentbit(partial), KPROBE, EXEC]
    decoded = decode_batch(LineDecoder(), lines)
    assert decoded is not None and decoded[1] is None  # the envelope is left to `decode`
    assert_same(lines)
    assert [o[3] for o in outcomes(lines, LineDecoder()) if o[0] == "bad"] == ["incomplete_partial"]


@pytest.mark.parametrize("odd", [b"", b"  ", EXEC + b" ", b"[1]", b"{not json}", b'{"time":"t"}',
                                 b'{"process_exec":{"process":{"binary":"\xff"}}}', b'{"process_future":{"a":1}}',
                                 deep_object(500), deep_array(500), EXEC[:-1] + b',"x":"\xc3\x28"}'])
def test_an_odd_line_among_events_gets_what_it_gets_line_by_line(odd: bytes) -> None:
    assert_same([EXEC, EXIT, odd, KPROBE])


_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=30)


@st.composite
def event_with_value(draw: st.DrawFn) -> bytes:
    event = json.loads(draw(st.sampled_from(REAL)))
    etype = next(k for k in event if k.startswith("process_"))
    event[etype][draw(st.sampled_from(["process", "args", "extra", "policy_name"]))] = draw(_json)
    return json.dumps(event, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


any_line = (st.sampled_from(REAL) | event_with_value()
            | st.integers(1, 3 * DEFAULT_MAX_DEPTH).map(nested_in_event)
            | st.sampled_from(REAL).flatmap(lambda line: st.sampled_from(sorted(
                x for xs in in_every_wrapper(line).values() for x in xs)))
            | st.binary(max_size=60).map(lambda b: b.replace(b"\n", b" ")))


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(any_line, min_size=1, max_size=12), st.sampled_from([3, 8, DEFAULT_MAX_DEPTH]))
def test_any_batch_gets_what_it_gets_line_by_line(lines: list[bytes], max_depth: int) -> None:
    assert_same(lines, max_depth)

