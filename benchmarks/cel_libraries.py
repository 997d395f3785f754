"""The CEL libraries on PyPI for Tetragon's `cel_expression` filter: conformance with Tetragon, and speed.

Usage:  .venv/bin/python benchmarks/cel_libraries.py [--events 20000] [--rounds 5]

Installs nothing: it runs against whichever of these are importable (the project locks only the
first; to compare, install the others into your own venv: `.venv/bin/pip install
common-expression-language cel-python`):

  cel-expr-python             `cel_expr_python`: Google's C++ CEL runtime (cel-cpp), protobuf-typed; what
                              tetrapipe uses, through tetrapipe.transforms.cel_filter.CelExpressions
                              (the event converted to Tetragon's message types, the Kubernetes ip/cidr
                              library of tetrapipe.transforms.cel_net)
  common-expression-language  `cel`: Python bindings of the Rust `cel` crate; dynamic (maps and lists)
  cel-python                  `celpy`: pure Python (Cloud Custodian); dynamic

The two dynamic libraries have no protobuf message types and no type checker: they get the event as
its JSON dicts, the event's variable bound to its body and every other event variable the
expression names bound to `{}` (Tetragon binds an empty message); an error is "no match", as in
Tetragon.  Each is used the way a filter would: compiled once, then called per event.

Conformance: the cases of Tetragon's own pkg/filters/cel_expression_test.go
(tests/data/tetragon_filters/cel_expression_test.json: expression, event, verdict; or a compile
error expected) and the typed-semantics probes below (what Tetragon's typed evaluation gives, as
tests/transforms/test_filter_cel.py checks it for tetrapipe).  A library passes a case when its
verdict is Tetragon's.

Speed: per evaluated event, over the events of tests.support.synth (seed 1) of the type the
expression names, for each expression of SPEED_EXPRESSIONS; interleaved rounds, medians.  Each
time includes the library's input conversion (message conversion for cel-expr-python, json_to_cel
for cel-python, none for common-expression-language).
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import synth  # noqa: E402
from tetrapipe.transforms.cel_filter import referenced_event_types  # noqa: E402
from tetrapipe.transforms.filter import event_type_of  # noqa: E402

CASES = ROOT / "tests" / "data" / "tetragon_filters" / "cel_expression_test.json"
# Tetragon's typed semantics (tests/transforms/test_filter_cel.py): (expression, event, verdict); None: a compile error
HOST = {"process_exec": {"process": {"binary": "/bin/sh", "pid": 5, "start_time": "2024-05-14T09:00:00.5Z"}}}
KPROBE = {"process_kprobe": {"action": "KPROBE_ACTION_POST", "args": [{"long_arg": "-3"}, {"size_arg": "9"}]}}
PROBES: list[tuple[str, dict[str, Any], bool | None]] = [
    ("process_exec.process.pod.namespace == ''", HOST, True),  # an unset field reads as its default
    ("!has(process_exec.process.pod) && process_exec.process.pid == uint(5)", HOST, True),  # uint wrapper
    ("process_exec.process.start_time == timestamp('2024-05-14T09:00:00.500Z')", HOST, True),  # a timestamp
    ("process_kprobe.action == KprobeAction.KPROBE_ACTION_POST && process_kprobe.action == 1", KPROBE, True),
    ("process_kprobe.args[0].long_arg == -3 && process_kprobe.args[1].size_arg == uint(9)", KPROBE, True),
    ("process_exit.process.pid == uint(3) || process_exec.process.binary == ''",
     {"process_exit": {"process": {"pid": 4}}}, True),  # another event type's variable: an empty message
    ("process_exec.process.binary", HOST, None),  # not boolean: refused when compiled
    ("process_exec.process.pid > 1", HOST, None),  # uint against int: a type error when checked
]
SPEED_EXPRESSIONS = [
    "process_kprobe.function_name == 'tcp_connect'",
    "process_exec.process.binary.endsWith('sh') && process_exec.process.arguments.contains('-c')",
]


class Unavailable(Exception):
    pass


Evaluate = Callable[[dict[str, Any], str], bool]


def cel_expr_python(expr: str) -> Evaluate:
    importlib.import_module("cel_expr_python")
    from tetrapipe.transforms.cel_filter import CelExpressions

    return CelExpressions([expr], "cel")  # raises FilterConfigError when it does not compile


def _dynamic_context(expr: str) -> Callable[[dict[str, Any], str], dict[str, Any]]:
    names = referenced_event_types(expr)

    def context(body: dict[str, Any], etype: str) -> dict[str, Any]:
        ctx: dict[str, Any] = dict.fromkeys(names, {})
        ctx[etype] = body
        return ctx
    return context


def common_expression_language(expr: str) -> Evaluate:
    cel = importlib.import_module("cel")
    program = cel.compile(expr)
    names = referenced_event_types(expr)
    context = _dynamic_context(expr)

    def evaluate(body: dict[str, Any], etype: str) -> bool:
        if etype not in names:
            return False
        try:
            return program.execute(context(body, etype)) is True
        except Exception:  # noqa: BLE001 - an evaluation error is "no match"
            return False
    return evaluate


def cel_python(expr: str) -> Evaluate:
    celpy = importlib.import_module("celpy")
    env = celpy.Environment()
    program = env.program(env.compile(expr))
    names = referenced_event_types(expr)
    context = _dynamic_context(expr)

    def evaluate(body: dict[str, Any], etype: str) -> bool:
        if etype not in names:
            return False
        try:
            result = program.evaluate(celpy.json_to_cel(context(body, etype)))
        except Exception:  # noqa: BLE001 - an evaluation error is "no match"
            return False
        return isinstance(result, celpy.celtypes.BoolType) and bool(result)  # not an error value
    return evaluate


LIBRARIES: dict[str, tuple[str, Callable[[str], Evaluate]]] = {
    "cel-expr-python": ("cel_expr_python", cel_expr_python),
    "common-expression-language": ("cel", common_expression_language),
    "cel-python": ("celpy", cel_python),
}


def available() -> dict[str, Callable[[str], Evaluate]]:
    out = {}
    for name, (module, make) in LIBRARIES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            print(f"{name}: not importable here (not installed) -- left out")
            continue
        out[name] = make
    return out


def cases() -> list[tuple[str, str, dict[str, Any] | None, bool | None]]:
    """(label, expression, event, verdict; None: a compile error expected)."""
    data = json.loads(CASES.read_text())
    out = []
    for i, case in enumerate(data["cases"]):
        [flt] = case["filters"]
        [expr] = flt["cel_expression"]
        out.append((f"tetragon {case['test']}#{i}", expr, case.get("event"),
                    None if case.get("expect_error") else case["expect"]))
    out += [(f"typed probe #{i}", expr, event, want) for i, (expr, event, want) in enumerate(PROBES)]
    return out


def verdict(make: Callable[[str], Evaluate], expr: str, event: dict[str, Any] | None) -> bool | None:
    try:
        evaluate = make(expr)
    except Exception:  # noqa: BLE001 - any compile error
        return None
    if event is None:
        return False  # compiled where an error was expected
    etype = event_type_of(event)
    return evaluate(event.get(etype) or {}, etype)


def conformance(libs: dict[str, Callable[[str], Evaluate]]) -> None:
    all_cases = cases()
    print(f"\nconformance: {len(all_cases)} cases ({sum(c[0].startswith('tetragon') for c in all_cases)} of "
          f"Tetragon's cel_expression_test.go, the rest typed-semantics probes)")
    for name, make in libs.items():
        failed = [label for label, expr, event, want in all_cases if verdict(make, expr, event) != want]
        print(f"  {name:28s} {len(all_cases) - len(failed):3d}/{len(all_cases)} pass"
              + (f"; differs on: {', '.join(failed)}" if failed else ""))


def speed(libs: dict[str, Callable[[str], Evaluate]], events: int, rounds: int) -> None:
    corpus = [orjson.loads(line) for line in synth.generate(events, seed=1)]
    pairs = [(e[t], t) for e in corpus if (t := event_type_of(e))]
    print(f"\nspeed: µs per evaluated event (median of {rounds} interleaved rounds; {events} synthetic events)")
    for expr in SPEED_EXPRESSIONS:
        names = referenced_event_types(expr)
        mine = [(body, t) for body, t in pairs if t in names]
        programs = {name: make(expr) for name, make in libs.items()}
        times: dict[str, list[float]] = {name: [] for name in programs}
        matches: dict[str, int] = {}
        for name, evaluate in programs.items():  # warm-up (and the match count, which should agree)
            matches[name] = sum(evaluate(body, t) for body, t in mine)
        for _ in range(rounds):
            for name, evaluate in programs.items():
                start = time.perf_counter()
                for body, t in mine:
                    evaluate(body, t)
                times[name].append((time.perf_counter() - start) / len(mine) * 1e6)
        print(f"  {expr}  ({len(mine)} events)")
        for name, ts in times.items():
            print(f"    {name:28s} {statistics.median(ts):8.2f} µs  ({matches[name]} matched)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    libs = available()
    for name in libs:
        module = LIBRARIES[name][0]
        try:
            from importlib.metadata import version
            print(f"{name} {version(name)} (import {module})")
        except Exception:  # noqa: BLE001 - the version is informative only
            print(f"{name} (import {module})")
    conformance(libs)
    speed(libs, args.events, args.rounds)


if __name__ == "__main__":
    main()
