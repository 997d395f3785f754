"""Decoding: every event type, log-shipper envelopes, and bad input with clear reasons."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.support import synth
from tetrapipe.event.decode import BadInput, LineDecoder
from tetrapipe.event.model import KNOWN_TYPES

DOCS = (Path(__file__).parents[1] / "data" / "docs-examples.jsonl").read_bytes().splitlines()


def test_every_real_docs_event_decodes():
    decoder = LineDecoder()
    types = {decoder.decode(line).etype for line in DOCS}
    # the docs include types newer Tetragon no longer emits: they pass through by name
    assert {"process_exec", "process_exit", "process_kprobe", "process_connect", "process_close"} <= types


def test_every_synthetic_type_decodes():
    decoder = LineDecoder()
    seen = {decoder.decode(line).etype for line in synth.generate(3000, seed=3)}
    assert set(KNOWN_TYPES) - {"process_usdt"} <= seen | {"process_usdt"}
    assert "process_future_thing" in seen


@pytest.mark.parametrize("etype", KNOWN_TYPES)
def test_known_types_by_name(etype):
    d = LineDecoder().decode(orjson.dumps({etype: {"process": {"binary": "/bin/true"}}, "time": "t"}))
    assert d.etype == etype
    assert d.raw.startswith(b"{")


EVENT = DOCS[2]


@pytest.mark.parametrize("wrapped", [
    synth.wrap_cri(EVENT),
    synth.wrap_cri(EVENT, stream="stderr"),
    synth.wrap_fluentbit(EVENT),
    synth.wrap_vector(EVENT),
    synth.wrap_object(EVENT, "log"),
    synth.wrap_object(EVENT, "message"),
    b"  " + EVENT + b"\r",
    orjson.dumps({"log": synth.wrap_cri(EVENT).decode()}),  # Fluent Bit without the CRI parser
], ids=["cri", "cri-stderr", "fluentbit", "vector", "log-object", "message-object", "whitespace", "fb-raw-cri"])
def test_envelopes_unwrap_to_the_event_bytes(wrapped):
    d = LineDecoder().decode(wrapped)
    assert d.etype == "process_exec"
    assert orjson.loads(d.raw) == orjson.loads(EVENT)


def test_cri_partial_lines_are_joined():
    decoder = LineDecoder()
    head, tail = EVENT[:500], EVENT[500:]
    assert decoder.decode(b"2024-01-01T00:00:00.1Z stdout P " + head) is None
    d = decoder.decode(b"2024-01-01T00:00:00.2Z stdout F " + tail)
    assert d.raw == EVENT


def test_cri_partial_lines_are_bounded():
    decoder = LineDecoder(max_event_bytes=1000)
    decoder.decode(b"2024-01-01T00:00:00Z stdout P " + b"x" * 900)
    with pytest.raises(BadInput) as info:
        decoder.decode(b"2024-01-01T00:00:00Z stdout P " + b"x" * 200)
    assert info.value.reason == "too_large"


@pytest.mark.parametrize(("line", "reason"), [
    (b"not json at all", "invalid_json"),
    (b"[1, 2]", "not_an_object"),
    (b'"a string"', "not_an_object"),
    (b"42", "not_an_object"),
    (b'{"process_exec": {"process": ', "invalid_json"),
    (b"\x00\xff\xfe garbage", "invalid_json"),
    (b'{"process_exec": {"process": {"binary": "\xff"}}}', "invalid_utf8"),
    (b'{"process_exit": {"process": {"binary": "/bin/\xed\xa0\x80"}}}', "invalid_utf8"),  # a surrogate
    (b'{"process_exec": {"\xc3\x28": 1}}', "invalid_utf8"),  # in a key the lean model skips
    (b'{"log": {"process_exec": {"process": {"binary": "\xff"}}}}', "invalid_utf8"),
    (b'2024-01-01T00:00:00Z stdout F {"process_exec": {"process": {"binary": "\xff"}}}', "invalid_utf8"),
    (b'{"process_exec": {"process": {"binary": "ok"}}', "invalid_json"),
    (b"{}", "no_event_type"),
    (b'{"time": "2024-01-01T00:00:00Z", "node_name": "n"}', "no_event_type"),
    (b'{"log": 5}', "bad_envelope"),
    (b'{"log": "plain text"}', "bad_envelope"),
    (b"2024-01-01T00:00:00Z stderr F not json", "bad_envelope"),
    (b"", "blank"),
    (b"   ", "blank"),
])
def test_bad_input_reasons(line, reason):
    with pytest.raises(BadInput) as info:
        LineDecoder().decode(line)
    assert info.value.reason == reason
    assert info.value.detail


def test_every_synth_bad_line_is_rejected_or_flagged():
    decoder = LineDecoder()
    for line in synth.bad_lines(seed=1):
        try:
            d = decoder.decode(line)
        except BadInput:
            continue
        # bad lines that decode are valid events: missing fields they normally have, or 10 MB
        # long (under the 16 MiB line limit, so it is processed like any event)
        assert d is not None and (d.incomplete or len(line) > 10_000_000), line[:100]


def test_event_missing_process_is_flagged_incomplete():
    d = LineDecoder().decode(b'{"process_exec": {}, "time": "t"}')
    assert d.etype == "process_exec" and d.incomplete


def test_type_mismatch_falls_back_to_generic_view():
    d = LineDecoder().decode(b'{"process_exec": {"process": {"pid": "12", "binary": "/bin/x"}}, "time": "t"}')
    assert d.etype == "process_exec"
    assert isinstance(d.body, dict) and d.body["process"]["binary"] == "/bin/x"
