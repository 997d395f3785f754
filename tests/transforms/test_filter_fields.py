"""Field filters: Tetragon's own cases (tests/data/tetragon_filters/fieldfilters_test.json) and ours."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.transforms.test_filter_lean import EVENTS
from tetrapipe.transforms import fieldmask
from tetrapipe.transforms import tetragon_schema as schema
from tetrapipe.transforms.filter import parse_filter_list
from tetrapipe.transforms.filter_errors import FieldFilterError, FilterConfigError
from tetrapipe.transforms.filter_fields import compile_field_filters

DATA = Path(__file__).resolve().parents[1] / "data" / "tetragon_filters"
DOC = json.loads((DATA / "fieldfilters_test.json").read_text())


@pytest.mark.parametrize("case", DOC["cases"], ids=[f"{i}:{c['test']}" for i, c in enumerate(DOC["cases"])])
def test_tetragon_case(case: dict) -> None:
    if "parse" in case:
        if case.get("expect_error"):
            with pytest.raises(FilterConfigError):
                parse_filter_list(case["parse"], "field_filters")
            return
        filters = compile_field_filters(parse_filter_list(case["parse"], "field_filters"))
        assert filters.paths(0)[0] == case["expect_first_path"]
        return
    event = case["event"]
    before = copy.deepcopy(event)
    etype = next(k for k in event if k.startswith("process_"))
    assert compile_field_filters(case["field_filters"])(event, etype) == case["expect"]
    assert event == before  # the input is not mutated


EXEC = {"process_exec": {"process": {"pid": 7, "binary": "/bin/sh", "arguments": "-c x", "exec_id": "e",
                                     "pod": {"namespace": "ns", "name": "p", "pod_labels": {"a": "1", "b": "2"}}},
                         "parent": {"pid": 1, "binary": "/sbin/init"},
                         "ancestors": [{"pid": 1, "binary": "a"}, {"pid": 0, "binary": "b"}]},
        "node_name": "n1", "time": "2024-05-14T09:00:00Z"}
KPROBE = {"process_kprobe": {"process": {"binary": "/usr/bin/curl"}, "function_name": "tcp_connect",
                             "args": [{"sock_arg": {"saddr": "10.0.0.1", "daddr": "1.1.1.1", "dport": 443}},
                                      {"int_arg": 3, "label": "fd"}]}}


def test_include_keeps_only_paths_and_top_level() -> None:
    f = compile_field_filters([{"fields": "process.binary,ancestors.binary", "action": "INCLUDE"}])
    assert f(EXEC, "process_exec") == {
        "process_exec": {"process": {"binary": "/bin/sh"}, "ancestors": [{"binary": "a"}, {"binary": "b"}]},
        "node_name": "n1", "time": "2024-05-14T09:00:00Z"}


def test_exclude_drops_paths_and_shares_the_rest() -> None:
    f = compile_field_filters([{"fields": ["process.arguments", "parent"], "action": "EXCLUDE"}])
    out = f(EXEC, "process_exec")
    assert "arguments" not in out["process_exec"]["process"] and "parent" not in out["process_exec"]
    assert out["process_exec"]["ancestors"] is EXEC["process_exec"]["ancestors"]
    assert out["process_exec"]["process"]["pod"] is EXEC["process_exec"]["process"]["pod"]


def test_names_are_compared_after_tetragons_camel_case_fixup() -> None:
    f = compile_field_filters([{"fields": "process.execId,process.Pid", "action": "INCLUDE"}])
    assert f(EXEC, "process_exec")["process_exec"] == {"process": {"exec_id": "e", "pid": 7}}


def test_maps_are_atomic_and_cannot_be_selected_into() -> None:
    f = compile_field_filters([{"fields": "process.pod.pod_labels", "action": "INCLUDE"}])
    assert f(EXEC, "process_exec")["process_exec"] == {"process": {"pod": {"pod_labels": {"a": "1", "b": "2"}}}}
    with pytest.raises(FilterConfigError, match=r"field_filters\[0\]\.fields: 'process\.pod\.pod_labels\.a'.*map"):
        compile_field_filters([{"fields": "process.pod.pod_labels.a", "action": "EXCLUDE"}])


def test_kprobe_argument_oneof_is_named_like_tetragon() -> None:
    f = compile_field_filters([{"event_set": ["PROCESS_KPROBE"], "fields": "function_name,args.arg.sock_arg.daddr"}])
    assert f(KPROBE, "process_kprobe") == {"process_kprobe": {"function_name": "tcp_connect",
                                                              "args": [{"sock_arg": {"daddr": "1.1.1.1"}}, {}]}}
    f = compile_field_filters([{"event_set": ["PROCESS_KPROBE"], "fields": "args.arg", "action": "EXCLUDE"}])
    assert f(KPROBE, "process_kprobe")["process_kprobe"]["args"] == [{}, {"label": "fd"}]
    with pytest.raises(FilterConfigError, match=r"Tetragon names the oneof: args\.arg\.sock_arg"):
        compile_field_filters([{"event_set": ["PROCESS_KPROBE"], "fields": "args.sock_arg"}])


def test_unknown_path_is_an_error_only_if_no_targeted_type_has_it() -> None:
    with pytest.raises(FilterConfigError, match=r"^field_filters\[1\]\.fields: 'process\.argument'"):
        compile_field_filters([{"fields": "process.pid"}, {"fields": "process.argument", "action": "EXCLUDE"}])
    # function_name exists in kprobe/lsm events only: fine with no event_set, ignored for exec (as Tetragon does)
    f = compile_field_filters([{"fields": "function_name,process.pid"}])
    assert f(EXEC, "process_exec")["process_exec"] == {"process": {"pid": 7}}
    with pytest.raises(FilterConfigError, match="function_name"):
        compile_field_filters([{"event_set": ["PROCESS_EXEC"], "fields": "function_name"}])


@pytest.mark.parametrize("bad, where", [
    ([{"action": "DROP"}], r"field_filters\[0\]\.action: unknown field filter action"),
    ([{"event_set": ["PROCESS_EXECC"]}], r"field_filters\[0\]\.event_set\[0\]: unknown event type"),
    ([{"fields": "process..pid"}], r"field_filters\[0\]\.fields: invalid field path"),
    ([{"feilds": "process.pid"}], r"field_filters\[0\]\.feilds: unknown field"),
    ([{"fields": "process.binary.x"}], r"process\.binary is a string"),
])
def test_compile_errors_name_the_path(bad: list, where: str) -> None:
    with pytest.raises(FilterConfigError, match=where):
        compile_field_filters(bad)


def test_shape_mismatch_fails_closed() -> None:
    weird = {"process_exec": {"process": "not-an-object", "parent": {"binary": "/x", "pid": 1}}}
    inc = compile_field_filters([{"fields": "process.binary,parent.pid", "action": "INCLUDE"}])
    assert inc(weird, "process_exec") == {"process_exec": {"parent": {"pid": 1}}}
    exc = compile_field_filters([{"fields": "process.binary", "action": "EXCLUDE"}])
    assert exc(weird, "process_exec") == {"process_exec": {"parent": {"binary": "/x", "pid": 1}}}


def test_event_without_its_object_raises() -> None:
    f = compile_field_filters([{"fields": "process.pid"}])
    with pytest.raises(FieldFilterError):
        f({"process_exec": "garbage"}, "process_exec")


def test_unknown_event_type_is_filtered_by_name() -> None:
    ev = {"process_future_thing": {"process": {"pid": 3, "binary": "/b"}, "extra": 1}}
    f = compile_field_filters([{"fields": "process.pid"}])
    assert f(ev, "process_future_thing") == {"process_future_thing": {"process": {"pid": 3}}}


def test_event_set_and_inversion() -> None:
    only_exec = compile_field_filters([{"event_set": ["PROCESS_EXEC"], "fields": "process.pid", "action": "EXCLUDE"}])
    not_exec = compile_field_filters([{"event_set": ["PROCESS_EXEC"], "fields": "process", "action": "EXCLUDE",
                                       "invert_event_set": True}])
    assert "pid" not in only_exec(EXEC, "process_exec")["process_exec"]["process"]
    assert only_exec(KPROBE, "process_kprobe") is KPROBE
    assert not_exec(EXEC, "process_exec") is EXEC
    assert "process" not in not_exec(KPROBE, "process_kprobe")["process_kprobe"]


def _exclude_walking_the_object(plan: Any, obj: dict) -> dict:
    """fieldmask.exclude as it was: every key of the object looked up in the plan (the reference)."""
    if not plan.fields:
        return obj
    out = None
    for key, value in obj.items():
        sub = plan.get(key, fieldmask._DROP)
        if sub is fieldmask._DROP:
            continue
        if sub is fieldmask.LEAF:
            kept = fieldmask._DROP
        elif type(value) is dict:
            kept = _exclude_walking_the_object(sub, value)
        elif type(value) is list and all(type(v) is dict for v in value):
            new = [_exclude_walking_the_object(sub, v) for v in value]
            kept = value if all(a is b for a, b in zip(new, value, strict=True)) else new
        else:
            kept = fieldmask._DROP
        if kept is value:
            continue
        out = dict(obj) if out is None else out
        if kept is fieldmask._DROP:
            del out[key]
        else:
            out[key] = kept
    return obj if out is None else out


EXCLUDE_PATHS = ["process.pid", "process.pod", "process.pod.name", "process.cap", "parent", "parent.binary",
                 "ancestors.arguments", "process.environment_variables", "args.arg.string_arg", "policy_name"]


@settings(max_examples=400)
@given(st.lists(st.sampled_from(EXCLUDE_PATHS), min_size=1, max_size=4), EVENTS)
def test_exclude_equals_the_object_walk(paths: list, event: dict) -> None:
    etype = next(iter(event))
    body = event[etype]
    if type(body) is not dict:
        return
    message = schema.EVENT_TYPES[etype][2] if etype in schema.EVENT_TYPES else None
    plan, _ = fieldmask.compile_plan(message, paths)
    got, want = fieldmask.exclude(plan, body), _exclude_walking_the_object(plan, body)
    assert got == want and list(got) == list(want) and (got is body) == (want is body), (paths, event)


FIELD_ITEMS = st.lists(st.fixed_dictionaries(
    {"fields": st.lists(st.sampled_from(EXCLUDE_PATHS), min_size=1, max_size=3).map(",".join),
     "action": st.sampled_from(["EXCLUDE", "EXCLUDE", "INCLUDE"])},
    optional={"event_set": st.sampled_from([["PROCESS_EXEC"], ["PROCESS_KPROBE", "PROCESS_EXIT"]]),
              "invert_event_set": st.booleans()}), min_size=1, max_size=2)


@settings(max_examples=600)
@given(FIELD_ITEMS, EVENTS)
def test_unchanged_only_when_the_filters_return_the_event_itself(items: list, event: dict) -> None:
    from tetrapipe.event.decode import LineDecoder

    try:
        filters = compile_field_filters(items)
    except FilterConfigError:  # a path none of the item's event types has
        return
    decoded = LineDecoder().decode(json.dumps(event).encode())
    assert decoded is not None
    if filters.unchanged(decoded):
        root = decoded.generic_root()
        assert filters(root, decoded.etype) is root, (items, event)


def test_unchanged_without_the_generic_decode_when_the_paths_are_absent() -> None:
    from tetrapipe.event.decode import LineDecoder

    filters = compile_field_filters([{"fields": "process.cap,parent.ns,ancestors.arguments", "action": "EXCLUDE"}])
    for event, unchanged in (({"process_exec": {"process": {"binary": "/bin/sh"}, "parent": {"pid": 1},
                                                "ancestors": [{"pid": 2}]}}, True),
                             ({"process_exec": {"process": {"cap": {}}}}, False),
                             ({"process_exec": {"ancestors": [{"arguments": "x"}]}}, False),
                             ({"process_exec": {"parent": None}}, False),  # exclude drops a null it descends into
                             ({"process_exec": {"ancestors": ["x"]}}, False)):
        decoded = LineDecoder().decode(json.dumps(event).encode())
        assert decoded is not None
        assert filters.unchanged(decoded) is unchanged, event
        assert decoded._generic is None
        assert (filters(decoded.generic_root(), "process_exec") is decoded.generic_root()) is unchanged
    include = compile_field_filters([{"fields": "process.binary", "action": "INCLUDE"}])
    assert not include.unchanged(LineDecoder().decode(b'{"process_exec":{"process":{"binary":"x"}}}'))
