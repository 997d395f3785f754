"""Differential: the lean-view filter path decides exactly as the generic-dict path, field by field.

`ExportFilter.decide(decoded)` (lean checks where a line allows, generic otherwise) against
`ExportFilter(decoded.generic_root(), etype)` (every check on plain dicts, the path Tetragon's own
cases prove), on generated events -- including shapes the lean model refuses (then the view is
plain dicts) -- and generated allow/deny lines over every field of Tetragon's Filter.  The value
pools overlap, so lines match and miss often: breaking any field's lean check fails this test.
`Redactor.unchanged` against the redactor itself, and `run_stage` against the one-decode path it
replaced.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tetrapipe.event.decode import Decoded, LineDecoder
from tetrapipe.event.model import KNOWN_TYPES, LeanEvent
from tetrapipe.pipeline.filtering import run_keyed, run_stage
from tetrapipe.transforms import tetragon_schema as schema
from tetrapipe.transforms.filter import compile_filters
from tetrapipe.transforms.filter_checks import BUILDERS
from tetrapipe.transforms.filter_errors import FieldFilterError
from tetrapipe.transforms.filter_lean import LEAN_BUILDERS
from tetrapipe.transforms.filter_stage import FilterLists, RedactionConfig, Stage, compile_stage
from tetrapipe.transforms.redact import compile_redaction

ETYPES = [*sorted(schema.EVENT_TYPES), "process_unknown"]
BINARIES = ["/usr/bin/curl", "/bin/sh", "/usr/bin/kubelet", "/tmp/x", "", "curl"]
ARGS = ["", "-c make", "--password hunter2", "token=abc /-/ready", "-p=1 x", "a"]
NAMESPACES = ["", "default", "kube-system", "monitoring", "tenant-a"]
NAMES = ["", "web-1", "db-0", "curl"]
REGEXES = ["^/usr/bin/", "curl$", "^$", "a", "^(default|tenant-.*)$", "-", "^kube", "web|db", "[0-9]$"]
POLICIES = ["", "p1", "p2"]


def text(pool: list[str]) -> st.SearchStrategy[Any]:
    """Mostly pool values; sometimes null, or a number (the lean decode then refuses the event)."""
    return st.one_of(st.sampled_from(pool), st.just(None), st.just(7))


PODS = st.fixed_dictionaries({}, optional={
    "namespace": text(NAMESPACES), "name": text(NAMES),
    "container": st.fixed_dictionaries({}, optional={"name": text(NAMES), "maybe_exec_probe": st.booleans()}),
    "pod_labels": st.dictionaries(st.sampled_from(["app", "tier"]), st.sampled_from(["web", "db"]), max_size=2),
})
PROCESSES = st.fixed_dictionaries({}, optional={
    "binary": text(BINARIES), "arguments": text(ARGS), "pid": st.integers(1, 4), "docker": text(NAMES),
    "in_init_tree": st.booleans(), "pod": st.one_of(PODS, PODS, st.none()),
    "cap": st.fixed_dictionaries({}, optional={"effective": st.lists(st.sampled_from(
        ["CAP_SYS_ADMIN", "CAP_NET_RAW", "CAP_CHOWN"]), max_size=2)}),
    "environment_variables": st.lists(st.fixed_dictionaries({}, optional={
        "Key": st.sampled_from(["SECRET", "TOKEN", "HOME"]), "Value": st.sampled_from(["x", "token=1", ""])}),
        max_size=2),
})
BODIES = st.fixed_dictionaries({}, optional={
    "process": st.one_of(PROCESSES, PROCESSES, PROCESSES, st.none()), "parent": st.one_of(PROCESSES, st.none()),
    "ancestors": st.lists(PROCESSES, max_size=2), "policy_name": text(POLICIES),
    "args": st.lists(st.fixed_dictionaries({"string_arg": st.sampled_from(ARGS)}), max_size=2),
})
EVENTS = st.builds(lambda etype, body, node: {etype: body, "node_name": node},
                   st.one_of(st.sampled_from(["process_exec", "process_kprobe"]), st.sampled_from(ETYPES)),
                   st.one_of(BODIES, BODIES, BODIES, st.none()), st.sampled_from(["n1", "n2"])
                   ).filter(lambda e: any(type(v) is dict for v in e.values()) or any(k in KNOWN_TYPES for k in e))

REGEX_LISTS = st.lists(st.sampled_from(REGEXES), min_size=1, max_size=2)
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "event_set": st.lists(st.sampled_from(sorted(schema.EVENT_TYPE_NUMBERS)), min_size=1, max_size=3),
    "binary_regex": REGEX_LISTS, "parent_binary_regex": REGEX_LISTS, "ancestor_binary_regex": REGEX_LISTS,
    "arguments_regex": REGEX_LISTS, "parent_arguments_regex": REGEX_LISTS,
    "namespace": st.lists(st.sampled_from(NAMESPACES), min_size=1, max_size=2),
    "namespace_regex": REGEX_LISTS, "pod_regex": REGEX_LISTS, "container_id": REGEX_LISTS,
    "container_name_regex": REGEX_LISTS,
    "labels": st.lists(st.sampled_from(["app=web", "tier", "!app", "tier in (db)"]), min_size=1, max_size=2),
    "policy_names": st.lists(st.sampled_from(POLICIES), min_size=1, max_size=2),
    "health_check": st.booleans(), "pid": st.lists(st.integers(1, 4), min_size=1, max_size=2),
    "pid_set": st.lists(st.integers(1, 4), min_size=1, max_size=2), "in_init_tree": st.booleans(),
    "capabilities": st.sampled_from([{"effective": {"any": ["CAP_SYS_ADMIN"]}},
                                     {"effective": {"none": ["CAP_NET_RAW"]}}]),
    "cel_expression": st.sampled_from([["process_exec.process.binary == '/usr/bin/curl'"]]),
}
LINES = st.fixed_dictionaries({}, optional=FIELDS)
LEAN_LINES = st.fixed_dictionaries({}, optional={k: v for k, v in FIELDS.items() if k in LEAN_BUILDERS})


def decode(event: dict[str, Any]) -> Decoded:
    decoded = LineDecoder().decode(json.dumps(event).encode())
    assert decoded is not None
    return decoded


def test_the_generator_covers_every_field_and_the_lean_fields_are_a_subset() -> None:
    assert set(FIELDS) == set(BUILDERS)
    assert set(LEAN_BUILDERS) < set(BUILDERS)


@settings(max_examples=600)
@given(st.lists(LINES, max_size=3), st.lists(LINES, max_size=2), st.lists(EVENTS, min_size=1, max_size=6))
def test_decide_equals_the_generic_path_for_every_field(allow: list, deny: list, events: list) -> None:
    generic = compile_filters(allow, deny, enable_pid_set=True)
    lean = compile_filters(allow, deny, enable_pid_set=True)  # its own pid_set memory, fed the same events
    for event in events:
        decoded = decode(event)
        assert lean.decide(decoded) == generic(decode(event).generic_root(), decoded.etype), event


@settings(max_examples=600)
@given(st.lists(LEAN_LINES, min_size=1, max_size=3), st.lists(LEAN_LINES, max_size=2), EVENTS)
def test_lean_lines_decide_as_the_generic_checks(allow: list, deny: list, event: dict) -> None:
    """Lines of lean fields only: every line is lean, so this compares the lean checks alone."""
    flt = compile_filters(allow, deny)
    assert flt.lean_lines == len(allow) + len(deny)
    decoded = decode(event)
    assert flt.decide(decoded) == flt(decode(event).generic_root(), decoded.etype), event


def test_lean_lines_leave_the_generic_decode_undone() -> None:
    decoded = decode({"process_exec": {"process": {"binary": "/usr/bin/curl", "pod": {"namespace": "a"}}}})
    assert type(decoded.view) is LeanEvent
    flt = compile_filters([{"binary_regex": ["curl$"], "namespace": ["a"]}], [{"namespace": ["b"]}])
    assert flt.lean_lines == 2 and flt.decide(decoded)
    assert decoded._generic is None
    assert compile_filters([{"pid": [1]}], []).lean_lines == 0


REDACT = [["(?:--password|-p)[\\s=]+(\\S+)"], ["(?i)token=(\\S+)"], ["^SECRET=(.*)$"], ["^(a)$"], ["no-group"]]
REDACTIONS = st.lists(st.fixed_dictionaries({"redact": st.sampled_from(REDACT)}, optional={
    "binary_regex": st.lists(st.sampled_from(REGEXES), min_size=1, max_size=1)}), min_size=1, max_size=2)


@settings(max_examples=600)
@given(REDACTIONS, st.booleans(), EVENTS)
def test_unchanged_only_when_the_redactor_leaves_the_event_unchanged(items: list, string_args: bool,
                                                                    event: dict) -> None:
    redactor = compile_redaction(items, string_args=string_args)
    decoded = decode(event)
    root = decoded.generic_root()
    out, redacted = redactor(root, decoded.etype)
    if redactor.unchanged(decoded.raw, decoded.etype):
        assert out is root and not redacted


def test_unchanged_is_true_for_an_event_no_pattern_matches() -> None:
    redactor = compile_redaction([{"redact": ["--password[\\s=]+(\\S+)"]}])
    clean = decode({"process_exec": {"process": {"arguments": "-c make", "environment_variables": [
        {"Key": "HOME", "Value": "/root"}]}, "parent": {"arguments": "x"}}})
    secret = decode({"process_exec": {"process": {"arguments": "x"}, "ancestors": [{"arguments": "--password 1"}]}})
    assert redactor.unchanged(clean.raw, clean.etype)
    assert not redactor.unchanged(secret.raw, secret.etype)
    assert redactor(secret.generic_root(), secret.etype)[1]


def one_decode_run_stage(stage: Stage, decoded: Decoded) -> tuple[str | None, dict[str, Any] | None, bool]:
    """`run_stage` as it was before the lean path: everything on the generic decode (the reference)."""
    root = decoded.generic_root()
    event, etype, redacted = root, decoded.etype, False
    if stage.redact is not None:
        event, redacted = stage.redact(event, etype)
    if stage.export is not None and not stage.export(event, etype):
        return "filtered", None, False
    if (reason := run_keyed(stage, decoded, event, ())) is not None:
        return reason, None, False
    if stage.fields is not None:
        try:
            event = stage.fields(event, etype)
        except FieldFilterError:
            return "field_filter", None, False
    return None, (None if event is root else event), redacted


@settings(max_examples=600)
@given(st.lists(LINES, max_size=2), st.lists(LINES, max_size=2), st.one_of(st.just([]), REDACTIONS),
       st.booleans(), st.lists(EVENTS, min_size=1, max_size=4))
def test_run_stage_equals_the_one_decode_path(allow: list, deny: list, redaction: list, field_filter: bool,
                                              events: list) -> None:
    def stage() -> Stage | None:
        return compile_stage("", FilterLists(allow=allow, deny=deny, enable_pid_set=True),
                             [{"fields": "process.pid", "action": "EXCLUDE"}] if field_filter else [],
                             RedactionConfig(filters=redaction, string_args=True))
    new, old = stage(), stage()
    if new is None or old is None:
        return
    for event in events:
        assert run_stage(new, decode(event)) == one_decode_run_stage(old, decode(event)), event


ARGUMENT_REGEXES = st.lists(st.sampled_from(["hunter2", "\\*\\*\\*", "[0-9]$", "^-", "token"]), min_size=1,
                            max_size=2)
ARGUMENT_LINES = st.fixed_dictionaries({}, optional={
    "arguments_regex": ARGUMENT_REGEXES, "parent_arguments_regex": ARGUMENT_REGEXES,
    "event_set": st.just(["PROCESS_EXEC", "PROCESS_KPROBE"]), "pid_set": st.lists(st.integers(1, 4), min_size=1),
})
SECRETS = ["--password hunter2", "-p=1 x", "token=abc -", "a"]
SECRET_PROCESSES = st.fixed_dictionaries({"arguments": st.sampled_from(SECRETS), "pid": st.integers(1, 4)})
SECRET_EVENTS = st.builds(lambda etype, process, parent: {etype: {"process": process, "parent": parent}},
                          st.sampled_from(["process_exec", "process_kprobe", "process_throttle"]),
                          SECRET_PROCESSES, SECRET_PROCESSES)


@settings(max_examples=400)
@given(st.lists(ARGUMENT_LINES, max_size=2), st.lists(ARGUMENT_LINES, max_size=2),
       st.lists(st.fixed_dictionaries({"redact": st.sampled_from(REDACT[:3])}), min_size=1, max_size=2),
       st.lists(SECRET_EVENTS, min_size=1, max_size=6))
@example([{"arguments_regex": ["hunter2"]}], [], [{"redact": REDACT[0]}],
         [{"process_exec": {"process": {"arguments": "--password hunter2", "pid": 1}}}])
@example([], [{"parent_arguments_regex": ["[0-9]$"]}], [{"redact": REDACT[0]}],
         [{"process_kprobe": {"process": {"pid": 1}, "parent": {"arguments": "--password hunter2"}}}])
def test_run_stage_judges_redacted_arguments_as_redacted(allow: list, deny: list, redaction: list,
                                                         events: list) -> None:
    """Lines over the arguments redaction changes (and pid_set, whose memory depends on the order)."""
    def stage() -> Stage | None:
        return compile_stage("", FilterLists(allow=allow, deny=deny, enable_pid_set=True), "", redaction)
    new, old = stage(), stage()
    assert new is not None and old is not None
    for event in events:
        assert run_stage(new, decode(event)) == one_decode_run_stage(old, decode(event)), event


KEY_PATHS = ["categories", "event_type", "node_name", "time", "cluster_name", "function_name", "policy_name", "path",
             "process.binary", "process.arguments", "process.pod.namespace", "process.pod.name", "process.pod",
             "process", "args", "args[0].string_arg", "args[1]", "process.binary_properties",
             "process.binary_properties.setuid", "parent.binary", "process.pid", "process.cap.effective",
             "args[0].string_arg.count", "process.binary.upper", "node_name.strip"]  # a string has no fields


def reference_key(paths: list, event: dict, etype: str, categories: tuple) -> tuple:
    """The key by the contract of tetrapipe.transforms.event_keys, walked by hand over plain dicts."""
    top_level = {"node_name", "cluster_name", "time", "node_labels", "aggregation_info"}

    def freeze(v: Any) -> Any:
        if type(v) is dict:
            return ("__obj__", tuple(sorted((k, freeze(x)) for k, x in v.items())))
        return tuple(freeze(x) for x in v) if type(v) is list else v

    out: list[Any] = []
    for path in paths:
        if path in ("categories", "event_type"):
            out.append(tuple(categories) if path == "categories" else etype)
            continue
        steps: list[Any] = [int(s) if s.isdigit() else s for s in path.replace("[", ".").replace("]", "").split(".")]
        cur: Any = event if steps[0] in top_level else event.get(etype)
        for step in steps:
            if isinstance(step, int):
                cur = cur[step] if isinstance(cur, list) and step < len(cur) else None
            else:
                cur = cur.get(step) if isinstance(cur, dict) else None
        out.append(freeze(cur))
    return tuple(out)


def keys_equal_the_generic_decode(paths: list, event: dict, wide: bool) -> None:
    from tetrapipe.transforms.event_keys import KeyFields
    from tetrapipe.transforms.redact_view import RedactionLeanEvent

    keys = KeyFields(paths)
    decoder = LineDecoder()
    decoder.use_view(RedactionLeanEvent if wide else None)
    decoded = decoder.decode(json.dumps(event).encode())
    assert decoded is not None
    got = keys.values_of(decoded, None, ("egress",))
    root = decode(event).generic_root()
    assert got == keys.values(root, decoded.etype, ("egress",)), (paths, event)
    assert got == reference_key(paths, root, decoded.etype, ("egress",)), (paths, event)
    if keys.lean and type(decoded.view) is not dict:
        assert decoded._generic is None  # read from the view: no generic decode


@settings(max_examples=400)
@given(st.lists(st.sampled_from(KEY_PATHS), min_size=2, max_size=4), EVENTS, st.booleans())
def test_keys_from_the_lean_view_equal_the_generic_decode(paths: list, event: dict, wide: bool) -> None:
    keys_equal_the_generic_decode(paths, event, wide)


@pytest.mark.parametrize("path", KEY_PATHS)
@settings(max_examples=100)
@given(event=EVENTS, wide=st.booleans())
def test_each_key_path_from_the_lean_view_equals_the_generic_decode(path: str, event: dict, wide: bool) -> None:
    keys_equal_the_generic_decode([path], event, wide)


def test_the_default_rate_limit_keys_read_the_lean_view() -> None:
    from tetrapipe.transforms.event_keys import KeyFields

    assert KeyFields(["categories", "node_name", "process.binary"]).lean
    assert KeyFields(["process.pod.container.id", "function_name"]).lean is False  # not in the lean view
    assert KeyFields(["node_name", "process.pod"]).lean is False  # an object: a struct on the lean view
