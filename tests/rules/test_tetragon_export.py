"""What Tetragon's Helm export defaults hide, computed from the rules, and Helm flags that parse to valid filters."""

from __future__ import annotations

import json
import shlex

from tetrapipe.cli.main import main
from tetrapipe.rules.docs import categories_markdown
from tetrapipe.rules.library import Category, Condition, load_library
from tetrapipe.rules.tetragon_export import (
    DEFAULT_ALLOWED_TYPES,
    SET_LINES,
    hidden_by_allowlist,
    hint_lines,
    required_event_types,
)


def test_the_default_allow_list_hides_exactly_the_loader_category_of_the_shipped_library():
    assert hidden_by_allowlist(load_library()) == {"library": frozenset({"process_loader"})}


def test_required_types_follow_all_any_and_ignore_not():
    kprobe, loader = Condition(event="process_kprobe"), Condition(event="process_loader")
    assert required_event_types(Condition(any=[kprobe, loader])) == {"process_kprobe", "process_loader"}
    assert required_event_types(Condition(all=[Condition(field="x", equals=1), loader])) == {"process_loader"}
    assert required_event_types(Condition(any=[kprobe, Condition(field="x", equals=1)])) is None
    assert required_event_types(Condition(not_=loader)) is None
    user = Category(id="mine", group="g", match=Condition(event=["process_usdt", "process_exec"]))
    assert hidden_by_allowlist([user]) == {}  # one of its types is exported by default
    assert hidden_by_allowlist([Category(id="u", group="g", match=Condition(event="process_usdt"))])


def test_the_set_json_values_are_the_json_filters_tetragon_reads():
    values = {}
    for line in SET_LINES:
        flag, assignment = shlex.split(line)
        assert flag == "--set-json"
        key, value = assignment.split("=", 1)
        values[key] = json.loads(value)  # --set-json: one JSON value, here a string
    allow = [json.loads(x) for x in values["tetragon.exportAllowList"].splitlines()]
    deny = [json.loads(x) for x in values["tetragon.exportDenyList"].splitlines()]
    assert {t.lower() for t in allow[0]["event_set"]} == DEFAULT_ALLOWED_TYPES | {"process_loader"}
    assert {"health_check": True} in deny
    assert all("" not in f.get("namespace", []) for f in deny)  # the host's events are exported


def test_the_library_page_and_policies_render_say_it(capsys):
    page = categories_markdown(load_library())
    assert "## Tetragon's export defaults" in page and "`PROCESS_LOADER`: `library`" in page
    assert '`tetragon.exportDenyList` drops namespace `""`' in page and "`sudo`" in page
    assert all(line in page for line in SET_LINES)
    assert main(["policies", "render", "--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12"]) == 0
    out, err = capsys.readouterr()
    assert "kind: TracingPolicy" in out and "exportAllowList" not in out  # stdout stays kubectl-applicable
    assert err.splitlines() == hint_lines(load_library())
