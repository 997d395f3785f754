"""Export filters beyond Tetragon's own test cases: list semantics, subtle fields, compile errors, real events."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import orjson
import pytest

from tetrapipe.transforms import re2match
from tetrapipe.transforms.filter import compile_filters, event_type_of, parse_filter_list
from tetrapipe.transforms.filter_errors import FilterConfigError

DOCS = [orjson.loads(line) for line in (Path(__file__).resolve().parents[1] / "data" / "docs-examples.jsonl")
        .read_bytes().splitlines() if line.strip()]


def run(allow: list, deny: list, event: dict, **kw: bool) -> bool:
    return compile_filters(allow, deny, **kw)(event, event_type_of(event))


def exe(**process: object) -> dict:
    return {"process_exec": {"process": dict(process)}, "node_name": "n"}


def test_allow_or_deny_and() -> None:
    allow = [{"namespace": ["a"]}, {"binary_regex": ["curl"], "event_set": ["PROCESS_EXEC"]}]
    deny = [{"arguments_regex": ["--secret"]}]
    assert run(allow, deny, exe(pod={"namespace": "a"}))
    assert run(allow, deny, exe(binary="/usr/bin/curl"))
    assert not run(allow, deny, exe(binary="/usr/bin/curl", arguments="--secret x"))
    assert not run(allow, deny, exe(binary="/bin/ls"))
    assert run([], deny, exe(binary="/bin/ls"))  # no allow list: everything is allowed
    assert not run([], deny, exe(arguments="a --secret"))


def test_empty_filter_matches_everything_and_null_or_empty_list_is_unset() -> None:
    assert run([{}], [], {"rate_limit_info": {}})
    assert not run([], [{}], exe())
    assert run([{"namespace": None, "binary_regex": [], "health_check": None}], [], {"test": {}})
    assert compile_filters([], []).is_noop


def test_camel_case_names_and_numeric_enums_as_protojson_reads_them() -> None:
    f = compile_filters([{"binaryRegex": ["sh$"], "eventSet": [1]}], [])
    assert f(exe(binary="/bin/sh"), "process_exec")
    assert not f({"process_exit": {"process": {"binary": "/bin/sh"}}}, "process_exit")


def test_events_without_process() -> None:
    throttle = {"process_throttle": {"type": "THROTTLE_START", "cgroup": "x"}}
    assert not run([{"namespace": [""]}], [], throttle)  # host-process namespace needs a process
    assert run([{"health_check": False}], [], throttle)  # ...but "not a health check" holds without one
    assert not run([{"in_init_tree": False}], [], throttle)  # Tetragon would panic here
    # an event type Tetragon does not know has no process for its filters, and is UNDEF for event_set
    future = {"process_future_thing": {"process": {"binary": "/bin/sh"}}}
    assert not run([{"binary_regex": ["sh"]}], [], future)
    assert run([{"event_set": ["UNDEF"]}], [], future)


def test_unset_fields_read_as_proto_defaults() -> None:
    assert run([{"pid": [0]}], [], exe(binary="/x"))
    assert run([{"binary_regex": ["^$"]}], [], exe(pid=3))
    assert run([{"namespace": [""]}], [], exe(pod={"name": "p"}))  # a pod with an empty namespace
    assert not run([{"namespace_regex": [".*"]}], [], exe())


def test_policy_names_only_for_policy_event_types() -> None:
    f = [{"policy_names": ["p"]}]
    assert run(f, [], {"process_lsm": {"policy_name": "p"}})
    assert not run(f, [], {"process_usdt": {"policy_name": "p"}})


def test_capabilities_names_and_empty_filter() -> None:
    f = [{"capabilities": {"permitted": {"any": ["CAP_NET_RAW", 21]}}}]  # 21 = CAP_SYS_ADMIN
    assert run(f, [], exe(cap={"permitted": ["CAP_SYS_ADMIN"]}))
    assert not run(f, [], exe(cap={"permitted": ["CAP_CHOWN"]}))
    assert run([{"capabilities": {}}], [], exe(cap={}))  # no set constrained: any process with caps
    assert not run([{"capabilities": {}}], [], exe())


def test_pid_set_follows_children_and_keeps_tetragons_order() -> None:
    f = compile_filters([{"pid_set": [100]}], [], enable_pid_set=True)
    child = {"process_exec": {"process": {"pid": 200}, "parent": {"pid": 100}}}
    grandchild = {"process_kprobe": {"process": {"pid": 300}, "parent": {"pid": 200}}}
    assert not f(grandchild, "process_kprobe")  # 200 not seen yet
    assert f(child, "process_exec") and f(grandchild, "process_kprobe")
    # binary_regex runs before pid_set in Tetragon: a failing regex means the child is not remembered
    g = compile_filters([{"binary_regex": ["^/x$"], "pid_set": [100]}], [], enable_pid_set=True)
    assert not g(child, "process_exec")
    assert not g({"process_exec": {"process": {"pid": 300, "binary": "/x"}, "parent": {"pid": 200}}}, "process_exec")


def test_parse_filter_list_forms() -> None:
    assert parse_filter_list('{"a":1} {"b":2}\n\n{"c":[3]}\n') == [{"a": 1}, {"b": 2}, {"c": [3]}]
    with pytest.raises(FilterConfigError, match=r"^export\[1\]: expected a JSON object"):
        parse_filter_list('{"a":1}\n[1]', "export")


@pytest.mark.parametrize("allow, where", [
    ([{}, {}, {"binary_regex": ["ok", "(abc"]}], r"^filters\.allow\[2\]\.binary_regex\[1\]: missing \): \(abc$"),
    ([{"binary_regexx": ["a"]}], r"^filters\.allow\[0\]\.binary_regexx: unknown field"),
    ([{"namespace": "default"}], r"^filters\.allow\[0\]\.namespace: expected a list of strings"),
    ([{"pid": [-1]}], r"^filters\.allow\[0\]\.pid\[0\]: expected an unsigned 32-bit integer"),
    ([{"event_set": ["PROCESS_EXECUTE"]}], r"^filters\.allow\[0\]\.event_set\[0\]: unknown event type"),
    ([{"health_check": "yes"}], r"^filters\.allow\[0\]\.health_check: expected true or false"),
    ([{"labels": ["app in"]}], r"^filters\.allow\[0\]\.labels\[0\]: invalid label selector"),
    ([{"capabilities": {"effective": {"any": ["CAP_NOPE"]}}}],
     r"^filters\.allow\[0\]\.capabilities\.effective\.any\[0\]: unknown capability"),
    ([{"capabilities": {"effective": {}}}], r"capabilities\.effective: capability filter must define exactly one"),
    ([{"cel_expression": ["process_exec.process.nope == 1"]}],
     r"^filters\.allow\[0\]\.cel_expression\[0\]: error compiling CEL expression: .*nope"),
    ([{"container_id": ["\\C"]}], r"container_id\[0\]: invalid escape sequence"),
    ([{"pid_set": [1]}], r"^filters\.allow\[0\]\.pid_set: pid_set filters use a best-effort approach"),
    ("nope", r"^filters\.allow: expected a list"),
])
def test_compile_errors_name_the_path(allow: list, where: str) -> None:
    with pytest.raises(FilterConfigError, match=where):
        compile_filters(allow, [])


def test_regex_is_a_search_with_re2_syntax_and_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(re2match, "MEMO_SIZE", 4)
    m = re2match.AnyRegex([r"\bcurl\b", r"(?i)WGET", r"\Qa.b\E"], "p")
    for _ in range(3):
        for s, want in [("/usr/bin/curl", True), ("/usr/bin/curly", False), ("wget", True), ("axb", False),
                        ("xa.by", True), ("(a+)+$" * 3, False)]:
            assert m(s) is want
    assert len(m._memo) <= 4


def test_real_events_verdicts_and_no_mutation() -> None:
    allow = [{"event_set": ["PROCESS_EXEC", "PROCESS_EXIT"], "namespace": ["default"]},
             {"event_set": ["PROCESS_KPROBE"], "binary_regex": ["curl$"]}]
    deny = [{"arguments_regex": ["cilium\\.io"]}]
    f = compile_filters(allow, deny)
    before = copy.deepcopy(DOCS)
    verdicts = [f(e, event_type_of(e)) for e in DOCS]
    assert before == DOCS
    for e, v in zip(DOCS, verdicts, strict=True):
        t = event_type_of(e)
        proc = e[t].get("process", {})
        expected = ((t in ("process_exec", "process_exit") and proc.get("pod", {}).get("namespace") == "default")
                    or (t == "process_kprobe" and proc.get("binary", "").endswith("curl"))) \
            and "cilium.io" not in proc.get("arguments", "")
        assert v is expected, json.dumps(e)[:200]
    assert 0 < sum(verdicts) < len(DOCS)
