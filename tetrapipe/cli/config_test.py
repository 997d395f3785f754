"""`tetrapipe test FILE...`: unit tests of a configuration, like `vector test`.

A test file (YAML) lists cases; each names an input event and what the configured library and
egress settings must make of it — without any source or sink:

    config: my.yaml            # optional: the config file to test (relative to this file);
                               # default: the one given with --config, else the shipped library
    tests:
      - name: curl to the internet is egress
        event: {process_kprobe: {...}, time: ...}   # an event object, or
        # line: '...'                               # one input line as read (CRI, Fluent Bit, …)
        expect:
          categories: [egress]         # exactly these (sorted or not); [] = untagged
          includes: [egress]           # at least these
          excludes: [ssh]              # none of these
          groups: [network]
          zone: public                 # egress zone; null = no destination
          external: true
          summaries: {egress: "…"}     # the summary line per category
          bad: invalid_json            # the line is rejected with this reason instead
          selected: {collector: true}  # whether the OTLP sink named so selects the event

Prints one row per case and a pass/fail count; exit 1 when a case fails, 2 on a bad test file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec
import orjson
import yaml

from tetrapipe.config.root import ConfigFileError
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.pipeline.processor import Processor

_MISSING = object()


class Expect(msgspec.Struct, forbid_unknown_fields=True):
    categories: list[str] | None = None
    includes: list[str] = []
    excludes: list[str] = []
    groups: list[str] | None = None
    zone: Any = _MISSING
    external: bool | None = None
    summaries: dict[str, str] = {}
    bad: str | None = None
    selected: dict[str, bool] = {}


class Case(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    expect: Expect
    event: dict[str, Any] | None = None
    line: str | None = None


class TestFile(msgspec.Struct, forbid_unknown_fields=True):
    tests: list[Case]
    config: str | None = None


def add_test_parser(commands: Any) -> None:
    cmd = commands.add_parser(
        "test", help="run a configuration's unit tests (events in, expected tags out)",
        description="Run test files: each case's event goes through the configured library and egress "
                    "settings (no source, no sink) and is checked against what it expects.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  tetrapipe test config/library.tests.yaml\n"
               "  tetrapipe test --config my.yaml my-categories.tests.yaml\n"
               "exit status 0 when every case passes, 1 when one fails, 2 on a bad file\n")
    cmd.add_argument("files", nargs="+", metavar="FILE")
    cmd.add_argument("--config", metavar="FILE", help="config file to test (a test file's own `config:` wins)")
    cmd.add_argument("--pod-cidr", action="append", metavar="CIDR", help="as for run")
    cmd.add_argument("--service-cidr", action="append", metavar="CIDR", help="as for run")


def cmd_test(args: argparse.Namespace, load: Any) -> int:
    """`load(args)` -> Loaded (the run's own configuration loading, so the test sees what a run sees)."""
    failed = passed = 0
    for name in args.files:
        path = Path(name)
        try:
            spec = msgspec.convert(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, TestFile)
        except (OSError, yaml.YAMLError, msgspec.ValidationError) as exc:
            raise ConfigFileError(f"{name}: {exc}") from None
        file_args = argparse.Namespace(**vars(args))
        if spec.config is not None:
            file_args.config = str(path.parent / spec.config)
        loaded = load(file_args)
        processor = Processor(loaded.tagger, loaded.classifier)
        selections = {s.name: s.select for s in loaded.config.otlp if s.name}
        for case in spec.tests:
            problems = _run_case(processor, selections, case, name)
            status = "ok  " if not problems else "FAIL"
            sys.stdout.write(f"{status} {name}: {case.name}\n")
            for problem in problems:
                sys.stdout.write(f"       {problem}\n")
            failed += bool(problems)
            passed += not problems
    sys.stdout.write(f"{passed} passed, {failed} failed\n")
    return 1 if failed else 0


def _run_case(processor: Processor, selections: dict[str, Any], case: Case, where: str) -> list[str]:
    if (case.event is None) == (case.line is None):
        raise ConfigFileError(f"{where}: test {case.name!r}: give exactly one of event, line")
    raw = orjson.dumps(case.event) if case.event is not None else case.line.encode()  # type: ignore[union-attr]
    batch = Batch([Envelope(raw, 1)], final=True)
    processor.process(batch)
    env = batch.envelopes[0]
    want = case.expect
    if env.error is not None or not batch.good:
        reason = env.error.reason if env.error is not None else "no event"
        return [] if want.bad == reason else [f"rejected as {reason}" + (f", expected {want.bad}" if want.bad else "")]
    if want.bad:
        return [f"accepted, expected rejection as {want.bad}"]
    return _check_event(env, selections, want)


def _check_event(env: Envelope, selections: dict[str, Any], want: Expect) -> list[str]:
    problems = []
    got = set(env.tags.categories)
    if want.categories is not None and got != set(want.categories):
        problems.append(f"categories {sorted(got)}, expected {sorted(want.categories)}")
    if missing := set(want.includes) - got:
        problems.append(f"categories {sorted(got)} lack {sorted(missing)}")
    if present := set(want.excludes) & got:
        problems.append(f"categories {sorted(got)} include {sorted(present)}")
    if want.groups is not None and set(env.tags.groups) != set(want.groups):
        problems.append(f"groups {sorted(env.tags.groups)}, expected {sorted(want.groups)}")
    egress = env.decoded.egress if env.decoded is not None else None
    zone = egress.zone if egress is not None else None
    if want.zone is not _MISSING and zone != want.zone:
        problems.append(f"zone {zone}, expected {want.zone}")
    if want.external is not None and (egress is None or egress.external != want.external):
        problems.append(f"external {egress.external if egress is not None else None}, expected {want.external}")
    for cid, line in want.summaries.items():
        if env.tags.summaries.get(cid) != line:
            problems.append(f"summary of {cid}: {env.tags.summaries.get(cid)!r}, expected {line!r}")
    for sink, selected in want.selected.items():
        if sink not in selections:
            problems.append(f"no OTLP sink named {sink!r} in the config")
        elif selections[sink].selects(env) != selected:
            problems.append(f"sink {sink} {'selects' if not selected else 'does not select'} it")
    return problems
