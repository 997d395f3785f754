"""Differential test: every case transcribed from cilium/tetragon's own filter tests must pass.

The cases live in tests/data/tetragon_filters/*.json (each file names the Go test file and commit it
was transcribed from).  A filter case compiles ``filters`` as an allow list and checks the verdict on
``event``; an ``expect_error`` case must fail to compile (or to parse); a ``parse`` case checks
parse_filter_list.  Field-filter and redaction files have their own runner (test_fieldfilters_tetragon.py,
test_redact.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tetrapipe.event.decode import BadInput, LineDecoder
from tetrapipe.transforms.filter import compile_filters, event_type_of, parse_filter_list
from tetrapipe.transforms.filter_errors import FilterConfigError

DATA = Path(__file__).resolve().parents[1] / "data" / "tetragon_filters"
FILES = sorted(p for p in DATA.glob("*_test.json") if not p.name.startswith(("fieldfilters", "redaction")))


def _cases() -> list[tuple[str, dict]]:
    out = []
    for path in FILES:
        doc = json.loads(path.read_text())
        out += [(f"{path.stem}:{i}:{case['test']}", case) for i, case in enumerate(doc["cases"])]
    return out


CASES = _cases()


def test_transcription_is_complete() -> None:
    docs = [json.loads(p.read_text()) for p in FILES]
    assert all(d["commit"] == "4fbfe2d74ecb84acf79ed09a416f01b54185e8a6" for d in docs)
    assert len(CASES) == 186  # asserts transcribed; the rest are listed under "not_expressible"


@pytest.mark.parametrize("case", [c for _, c in CASES], ids=[i for i, _ in CASES])
def test_tetragon_case(case: dict) -> None:
    if "parse" in case:
        if case.get("expect_error"):
            with pytest.raises(FilterConfigError):
                parse_filter_list(case["parse"])
        else:
            assert parse_filter_list(case["parse"]) == case["expect_parsed"]
        return
    enable = case.get("enable_pid_set", True)
    if case.get("expect_error"):
        with pytest.raises(FilterConfigError):
            compile_filters(case["filters"], [], enable_pid_set=enable)
        return
    check = compile_filters(case["filters"], [], enable_pid_set=enable)
    event = case["event"]
    etype = case.get("event_type", event_type_of(event))
    assert check(event, etype) is case["expect"], case.get("message", "")
    # the same verdict on the lean view the run decodes (ExportFilter.decide), with a fresh pid_set memory
    try:
        decoded = LineDecoder().decode(json.dumps(event).encode())
    except BadInput:
        return  # not an event a run would filter (e.g. no event-type key)
    if decoded is not None and decoded.etype == etype:
        fresh = compile_filters(case["filters"], [], enable_pid_set=enable)
        assert fresh.decide(decoded) is case["expect"], case.get("message", "")
