"""`check-config`: every problem of a file at once, each with its YAML line; consistent with what `run` reports."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tetrapipe.cli.main import main
from tetrapipe.config.check import check_config
from tetrapipe.config.root import ConfigFileError, load_config

SEVERAL = """\
input:
  max_depth: deep
egress:
  pod_cidrs: [10.244.1.0/16]
  bogus: 1
library:
  categories:
    - id: mine
      group: g
      match: {event: process_exec, field: process.binary, regex: "("}
filters:
  allow: "{bad"
nope: 2
"""


def check(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return check_config(str(path))[1]


def test_every_problem_is_reported_with_its_line(tmp_path: Path) -> None:
    problems = check(tmp_path, SEVERAL)
    where = str(tmp_path / "c.yaml")
    assert [p.split(": ", 1)[0] for p in problems] == [f"{where}:{n}" for n in (2, 4, 5, 10, 12, 13)], problems
    assert "Expected `int`, got `str` - at `$.input.max_depth`" in problems[0]
    assert "10.244.1.0/16 has host bits set" in problems[1] and "egress.pod_cidrs" in problems[1]
    assert "unknown field `bogus` - at `$.egress`" in problems[2]
    assert "category 'mine'.match.regex: bad regex" in problems[3]
    assert "filters.allow[0]: invalid JSON" in problems[4] and "unknown field `nope`" in problems[5]


@pytest.mark.expect_errors
def test_the_cli_exits_2_with_all_of_them_and_0_when_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(SEVERAL)
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stderr", err)
        assert main(["check-config", str(path)]) == 2
    assert "6 problems:" in err.getvalue() and err.getvalue().count(f"{path}:") == 6
    assert main(["check-config", "config/example.yaml"]) == 0
    assert "valid" in capsys.readouterr().out


@pytest.mark.parametrize(("text", "expected"), [
    ("", "the file is empty"),
    ("# only a comment\n", "the file is empty"),
    ("egress:\n  pod_cidrs: [\n", ":3:1: YAML syntax error: "),
    ("egress: {zones: [{name: z, cidrs: [10.0.0.0/8], internall: true}]}\n", ":1: Object contains unknown field "
     "`internall` - at `$.egress.zones[0]`"),
    ("egress:\n  zones:\n    - {cidrs: [10.0.0.0/8]}\n", ":3: Object missing required field `name` - at "
     "`$.egress.zones[0]`"),
])
def test_empty_files_syntax_errors_and_nested_keys(tmp_path: Path, text: str, expected: str) -> None:
    [problem] = check(tmp_path, text)
    assert expected in problem, problem


_KEYS = st.sampled_from(["input", "egress", "max_depth", "pod_cidrs", "zones", "name", "cidrs", "internal", "peers",
                         "learn", "grace", "library", "disable", "bogus"])
_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-5, 100) | st.sampled_from(["x", "10.0.0.0/8"]),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
                       max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.dictionaries(_KEYS, _VALUES, max_size=4))
def test_check_config_agrees_with_load_config(tmp_path: Path, doc: dict[str, object]) -> None:
    """Whatever the file: check-config finds a problem whenever `run`'s loader rejects it, including that one."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc) if doc else "{}\n")
    config, problems = check_config(str(path))
    try:
        load_config(path)
    except ConfigFileError as exc:
        first = str(exc).removeprefix(f"{path}: ")
        assert any(p.endswith(first) for p in problems), (first, problems)
    else:
        assert all("$" not in p for p in problems)  # no structural complaint about a loadable file
    assert (config is None) == bool(problems)


SINKS = """\
sinks:
  - {type: file, path: out.jsonl}
  - type: bogus
    path: x
  - type: file
    path: 12
    colour: red
  - type: otlp
    endpoint: http://c:4318
    filters: {allow: [{binary_regex: ["("]}]}
  - {type: stdout, format: summary}
  - type: file
"""


def test_every_bad_sinks_entry_is_reported_with_its_line(tmp_path: Path) -> None:
    problems = check(tmp_path, SINKS)
    where = str(tmp_path / "c.yaml")
    assert [p.split(": ", 1)[0] for p in problems] == [f"{where}:{n}" for n in (3, 6, 10, 12)], problems
    assert "sinks[1].type: sink type 'bogus' unknown" in problems[0]
    assert "Expected `str`, got `int` - at `sinks[2].path`" in problems[1]  # msgspec's first error of the entry
    assert "sinks[3].filters.allow[0].binary_regex[0]: missing )" in problems[2]  # a good entry's filters
    assert "sinks[5]" in problems[3] and "path" in problems[3]
    with pytest.raises(ConfigFileError, match=r"sinks\[1\]\.type"):  # what `run` says: the first of them
        load_config(tmp_path / "c.yaml")


def test_a_bad_filter_of_a_sinks_entry_is_reported_when_every_entry_decodes(tmp_path: Path) -> None:
    problems = check(tmp_path, "sinks:\n  - {type: stdout}\n  - type: otlp\n    endpoint: http://c:4318\n"
                               "    redaction: [{redact: ['(']}]\n")
    where = tmp_path / "c.yaml"
    assert len(problems) == 1 and problems[0].startswith(f"{where}:5: sinks[1].redaction[0].redact[0]"), problems


def test_a_malformed_peers_snapshot_item_is_reported_by_check_config_and_refused_at_start(tmp_path: Path) -> None:
    import argparse

    from tetrapipe.cli.run import build_peers

    snapshot = tmp_path / "snapshot.json"
    snapshot.write_text('{"kind": "List", "items": [{"kind": "Node", "metadata": {"name": "n"}}, {"kind": "Pod"}]}')
    problems = check(tmp_path, f"peers:\n  snapshot: {snapshot}\n")
    assert len(problems) == 1 and "peers.snapshot: items[1]: Pod: metadata.name missing" in problems[0], problems
    with pytest.raises(ConfigFileError, match=r"^peers\.snapshot: items\[1\]: Pod: metadata\.name missing$"):
        build_peers(argparse.Namespace(), load_config(str(tmp_path / "c.yaml")).peers)
    snapshot.write_text('{"kind": "List", "items": [{"kind": "Node", "metadata": {"name": "n"}}]}')
    assert check(tmp_path, f"peers:\n  snapshot: {snapshot}\n") == []
    peers = build_peers(argparse.Namespace(), load_config(str(tmp_path / "c.yaml")).peers)
    assert peers is not None and peers.resolver.snapshot.objects == 1
