"""Redaction: Tetragon's own cases (tests/data/tetragon_filters/redaction_test.json) and ours."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tetrapipe.transforms.filter_errors import FilterConfigError
from tetrapipe.transforms.redact import compile_redaction

DATA = Path(__file__).resolve().parents[1] / "data" / "tetragon_filters"
DOC = json.loads((DATA / "redaction_test.json").read_text())
PASSWORD = r"(?:--password|-p)[\s=]+(\S+)"


@pytest.mark.parametrize("case", DOC["cases"], ids=[f"{i}:{c['test']}" for i, c in enumerate(DOC["cases"])])
def test_tetragon_case(case: dict) -> None:
    event = case["event"]
    before = copy.deepcopy(event)
    out, redacted = compile_redaction(case["redaction_filters"])(event, "process_exec")
    assert out == case["expect"]
    if "expect_redacted" in case:
        assert redacted is case["expect_redacted"]
    assert event == before


def test_parent_and_ancestors_each_by_their_own_binary() -> None:
    r = compile_redaction([{"binary_regex": ["mysql$"], "redact": [PASSWORD]}])
    ev = {"process_kprobe": {"process": {"binary": "/bin/sh", "arguments": "-p s1"},
                             "parent": {"binary": "/usr/bin/mysql", "arguments": "-p s2"},
                             "ancestors": [{"binary": "/usr/bin/mysql", "arguments": "--password s3 x"},
                                           {"binary": "/bin/bash", "arguments": "-p s4"}]}}
    out, redacted = r(ev, "process_kprobe")
    body = out["process_kprobe"]
    assert redacted
    assert body["process"]["arguments"] == "-p s1"
    assert body["parent"]["arguments"] == "-p *****"
    assert [a["arguments"] for a in body["ancestors"]] == ["--password ***** x", "-p s4"]
    assert body["process"] is ev["process_kprobe"]["process"]  # untouched records are shared


def test_configurable_replacement_and_unicode() -> None:
    r = compile_redaction([{"redact": [r"token=(\S+)"]}], replacement="[hidden]")
    out, _ = r({"process_exec": {"process": {"arguments": "héllo token=日本語 ok"}}}, "process_exec")
    assert out["process_exec"]["process"]["arguments"] == "héllo token=[hidden] ok"


def test_env_without_equals_after_redaction_becomes_invalid_key() -> None:
    r = compile_redaction([{"redact": [r"^(SECRET=x)"]}])
    out, _ = r({"process_exec": {"process": {"environment_variables": [{"Key": "SECRET", "Value": "x"}]}}},
               "process_exec")
    assert out["process_exec"]["process"]["environment_variables"] == [{"Key": "invalid", "Value": "*****"}]


def test_kprobe_string_args_only_when_asked() -> None:
    ev = {"process_kprobe": {"process": {"binary": "/bin/x"}, "args": [{"string_arg": "--password hunter2"},
                                                                         {"int_arg": 1}]}}
    assert compile_redaction([{"redact": [PASSWORD]}])(ev, "process_kprobe") == (ev, False)
    out, redacted = compile_redaction([{"redact": [PASSWORD]}], string_args=True)(ev, "process_kprobe")
    assert redacted and out["process_kprobe"]["args"] == [{"string_arg": "--password *****"}, {"int_arg": 1}]


def test_repeated_strings_report_no_spurious_redaction() -> None:
    r = compile_redaction([{"redact": [PASSWORD]}])
    for _ in range(3):  # memoised after the first call; an equal string must still come back "unchanged"
        ev = {"process_exec": {"process": {"arguments": "".join(["--pass", "word"])}}}
        assert r(ev, "process_exec") == (ev, False)
        ev = {"process_exec": {"process": {"arguments": "".join(["-p ", "x"])}}}
        assert r(ev, "process_exec")[1] is True


def test_non_process_events_and_no_filters_pass_through() -> None:
    r = compile_redaction([{"redact": [PASSWORD]}])
    ev = {"rate_limit_info": {"number_of_dropped_process_events": "3"}}
    assert r(ev, "rate_limit_info") == (ev, False)
    assert compile_redaction([]).is_noop


@pytest.mark.parametrize("bad, where", [
    ([{"redact": ["(abc"]}], r"^redaction_filters\[0\]\.redact\[0\]: missing \)"),
    ([{"redact": ["ok"], "binary_regex": ["[x"]}], r"^redaction_filters\[0\]\.binary_regex\[0\]: missing \]"),
    ([{"redacts": ["x"]}], r"^redaction_filters\[0\]\.redacts: unknown field"),
    ([{"redact": "x"}], r"^redaction_filters\[0\]\.redact: expected a list"),
])
def test_compile_errors_name_the_path(bad: list, where: str) -> None:
    with pytest.raises(FilterConfigError, match=where):
        compile_redaction(bad)


def test_string_args_of_a_process_with_a_null_binary_read_it_as_empty() -> None:
    """Found by tests/transforms/test_filter_lean.py: a null binary raised AttributeError (a dead letter)."""
    redactor = compile_redaction([{"redact": ["(?i)token=(\\S+)"], "binary_regex": ["^$"]}], string_args=True)
    event = {"process_kprobe": {"process": {"binary": None}, "args": [{"string_arg": "token=abc"}]}}
    out, redacted = redactor(event, "process_kprobe")
    assert redacted and out["process_kprobe"]["args"] == [{"string_arg": "token=*****"}]
