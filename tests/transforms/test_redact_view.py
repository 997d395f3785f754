"""The redaction view (tetrapipe.transforms.redact_view): what redaction reads, decoded with the event.

Differential: `Redactor.unchanged_lean` / `unchanged_decoded` against the redactor itself and against
the narrow raw-bytes `unchanged`; `run_stage` on events decoded into the view against the one-decode
path; and the view changes nothing else -- the lean fields and the processor's output bytes are those
of the plain lean view.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import process_lines
from tests.support import synth
from tests.transforms.test_filter_lean import EVENTS, LINES, REDACTIONS, one_decode_run_stage
from tetrapipe.config.root import Config, build_classifier, build_filters
from tetrapipe.event.decode import Decoded, LineDecoder
from tetrapipe.event.model import LeanEvent
from tetrapipe.pipeline.filtering import run_stage
from tetrapipe.pipeline.processor import Processor
from tetrapipe.transforms.filter_stage import FilterLists, RedactionConfig, Stage, compile_stage
from tetrapipe.transforms.redact import compile_redaction
from tetrapipe.transforms.redact_view import RedactionLeanEvent, view_for
from tetrapipe.transforms.tag import Tagger


def decode(event: dict[str, Any], view: type[LeanEvent] | None = RedactionLeanEvent) -> Decoded:
    decoder = LineDecoder()
    decoder.use_view(view)
    decoded = decoder.decode(json.dumps(event).encode())
    assert decoded is not None
    return decoded


@settings(max_examples=600)
@given(REDACTIONS, st.booleans(), EVENTS)
def test_unchanged_lean_only_when_the_redactor_leaves_the_event_unchanged(items: list, string_args: bool,
                                                                         event: dict) -> None:
    redactor = compile_redaction(items, string_args=string_args)
    decoded = decode(event)
    root = decoded.generic_root()
    out, redacted = redactor(root, decoded.etype)
    unchanged = redactor.unchanged_decoded(decoded)
    if unchanged:
        assert out is root and not redacted, event
    if type(decoded.view) is RedactionLeanEvent:  # the same answer as the narrow decode of the bytes
        assert unchanged == redactor.unchanged(decoded.raw, decoded.etype), event


def test_unchanged_lean_reads_parent_ancestors_and_environment() -> None:
    redactor = compile_redaction([{"redact": ["--password[\\s=]+(\\S+)", "^SECRET=(.*)$"]}])
    clean = decode({"process_exec": {"process": {"arguments": "-c make", "environment_variables": [
        {"Key": "HOME", "Value": "/root"}]}, "parent": {"arguments": "x"}}})
    assert type(clean.view) is RedactionLeanEvent and redactor.unchanged_decoded(clean)
    for secret in ({"parent": {"arguments": "--password 1"}}, {"ancestors": [{}, {"arguments": "--password 1"}]},
                   {"process": {"environment_variables": [{"Key": "SECRET", "Value": "s"}]}},
                   {"parent": {"environment_variables": [{"Key": "SECRET", "Value": "s"}]}}):
        decoded = decode({"process_exec": secret})
        assert type(decoded.view) is RedactionLeanEvent
        assert not redactor.unchanged_decoded(decoded), secret
        assert redactor(decoded.generic_root(), decoded.etype)[1]


def test_a_process_whose_binary_no_filter_names_is_not_searched() -> None:
    redactor = compile_redaction([{"redact": ["--password[\\s=]+(\\S+)"], "binary_regex": ["mysql$"]}])
    for binary, unchanged in (("/usr/bin/mysql", False), ("/bin/sh", True), (None, True)):
        decoded = decode({"process_exec": {"process": {"binary": binary, "arguments": "--password 1"}}})
        assert redactor.unchanged_decoded(decoded) == unchanged
        assert redactor.unchanged(decoded.raw, decoded.etype) == unchanged
        assert redactor(decoded.generic_root(), decoded.etype)[1] != unchanged
    # one filter without binaries: every process is searched
    both = compile_redaction([{"redact": ["x(y)"], "binary_regex": ["mysql$"]}, {"redact": ["--password (\\S+)"]}])
    assert not both.unchanged_decoded(decode({"process_exec": {"process": {"binary": "/bin/sh",
                                                                           "arguments": "--password 1"}}}))


@settings(max_examples=400)
@given(st.lists(LINES, max_size=2), st.lists(LINES, max_size=2), REDACTIONS, st.booleans(),
       st.lists(EVENTS, min_size=1, max_size=4))
def test_run_stage_on_the_view_equals_the_one_decode_path(allow: list, deny: list, redaction: list,
                                                          field_filter: bool, events: list) -> None:
    def stage() -> Stage | None:
        return compile_stage("", FilterLists(allow=allow, deny=deny, enable_pid_set=True),
                             [{"fields": "process.pid", "action": "EXCLUDE"}] if field_filter else [],
                             RedactionConfig(filters=redaction, string_args=True))
    new, old = stage(), stage()
    assert new is not None and old is not None
    for event in events:
        assert run_stage(new, decode(event)) == one_decode_run_stage(old, decode(event, None)), event


@settings(max_examples=600)
@given(EVENTS)
def test_the_view_changes_no_lean_field(event: dict) -> None:
    plain, wide = decode(event, None), decode(event)
    assert (wide.etype, wide.incomplete, wide.has_tetrapipe_key) == (plain.etype, plain.incomplete,
                                                                     plain.has_tetrapipe_key)
    if type(plain.view) is not LeanEvent:  # what the lean model refuses, the wider one refuses too
        assert type(wide.view) is dict
    elif type(wide.view) is RedactionLeanEvent:  # its lean fields are the lean view's, value for value
        assert msgspec.convert(msgspec.to_builtins(wide.view), LeanEvent) == plain.view


def test_the_view_changes_no_output_byte(tagger: Tagger) -> None:
    lines = list(synth.generate(3000, seed=7))
    classifier = build_classifier(Config().egress, ["10.244.0.0/16"], ["10.96.0.0/12"])
    plain, wide = Processor(tagger, classifier, LineDecoder()), Processor(tagger, classifier, LineDecoder())
    wide.decoder.use_view(RedactionLeanEvent)
    a, b = process_lines(plain, lines), process_lines(wide, lines)
    assert sum(type(e.decoded.view) is RedactionLeanEvent for e in b if e.decoded is not None) > 2900
    assert [e.out for e in a] == [e.out for e in b]


def test_the_view_is_chosen_when_a_stage_redacts() -> None:
    redacts = {"otlp": [{}, {"redaction": [{"redact": ["a(b)"]}]}]}
    filters_only = {"filters": {"deny": [{"namespace": ["x"]}]}}
    assert build_filters(msgspec.convert(redacts, Config)).view is RedactionLeanEvent
    assert build_filters(msgspec.convert({"redaction": [{"redact": ["a(b)"]}]}, Config)).view is RedactionLeanEvent
    assert build_filters(msgspec.convert(filters_only, Config)).view is None
    assert build_filters(Config()).view is None
    assert view_for([None]) is None
