"""End-to-end cost of filters in `tetrapipe run` (stdin → stdout), against the same run without them.

Usage:  .venv/bin/python benchmarks/filters_e2e.py [--events 200000] [--rounds 5] [--mix default|production]
                                                   [--configs allow+deny,+redact]  (rows besides `none`)

Issue 13's budget: a realistic allow+deny list (5 lines, regexes and namespaces) plus one
redaction filter costs at most 15 % of the run's per-event time; a config without filters costs
nothing measurable.  Each round runs, in turn (interleaved, so machine noise hits all alike),
pinned to one core with `taskset -c 0` when available, the corpus (tests.support.synth, seed 42)
through `tetrapipe run --quiet` to /dev/null with:

  none           no config file (the baseline)
  no-filters     a config file without any filter key (must cost nothing)
  allow+deny     the 5 lines of benchmarks/filters.py (3 allow, 2 deny)
  +redact        allow+deny and one redaction filter (two patterns): the issue's budget row
  +rate_limit    +redact and a top-level rate limit (categories, node, binary: keys the lean
                 view carries; a rate high enough that it only counts)
  realistic      +rate_limit and one EXCLUDE field filter (4 paths, process/parent cap and ns)
  +redact/pass   +redact with a last allow line `{}` (matches every event): the same lines are
                 evaluated, but no event is dropped, so no downstream work is saved — the cost of
                 the engines alone

It reports the median CPU time (user + system of the process: robust on a shared machine) and
wall time of each row, less that row's start-up (the median CPU of the same command on an empty
input, measured in the same rounds), per input event, and relative to `none`.  A filtered run
writes fewer events (the allow list drops some), so the ratio is of CPU per *input* event: what a
node pays for its stream.  The share of events each row passes is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.filters import ALLOW, DENY, FIELDS, REDACT  # noqa: E402
from benchmarks.throughput import PRODUCTION_MIX  # noqa: E402
from tests.support import synth  # noqa: E402

CONFIGS: dict[str, dict | None] = {
    "none": None,
    "no-filters": {"input": {"max_depth": 64}},
    "allow+deny": {"filters": {"allow": ALLOW, "deny": DENY}},
    "+redact": {"filters": {"allow": ALLOW, "deny": DENY}, "redaction": REDACT},
    "+rate_limit": {"filters": {"allow": ALLOW, "deny": DENY}, "redaction": REDACT,
                    "rate_limit": {"rate": 1_000_000, "burst": 1_000_000}},
    "realistic": {"filters": {"allow": ALLOW, "deny": DENY}, "redaction": REDACT, "field_filters": FIELDS,
                  "rate_limit": {"rate": 1_000_000, "burst": 1_000_000}},
    "+redact/pass": {"filters": {"allow": [*ALLOW, {}], "deny": DENY}, "redaction": REDACT},
}


def run(cmd: list[str], corpus: Path, out: Path | None = None) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of one run with the corpus on stdin."""
    with corpus.open("rb") as stdin, (out.open("wb") if out else open(os.devnull, "wb")) as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=sink, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        assert proc.stderr is not None
        raise SystemExit(f"{cmd} failed: {proc.stderr.read().decode()[-500:]}")
    return usage.ru_utime + usage.ru_stime, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mix", choices=("default", "production"), default="default")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated rows to run (always with none); default: all of {', '.join(CONFIGS)}")
    args = parser.parse_args()
    wanted = {"none", *args.configs.split(",")}
    if unknown := wanted - set(CONFIGS):
        parser.error(f"unknown configs: {', '.join(sorted(unknown))}")
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    base = [*pin, sys.executable, "-m", "tetrapipe.cli.main", "run", "--quiet",
            "--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12"]
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "tetrapipe")], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "events.jsonl"
        with corpus.open("wb") as f:
            for line in synth.generate(args.events, seed=42, mix=PRODUCTION_MIX if args.mix == "production" else None):
                f.write(line + b"\n")
        commands: dict[str, list[str]] = {}
        for name, config in CONFIGS.items():
            if name not in wanted:
                continue
            cmd = list(base)
            if config is not None:
                path = Path(tmp) / f"config{len(commands)}.yaml"
                path.write_text(json.dumps(config))  # JSON is YAML
                cmd += ["--config", str(path)]
            commands[name] = cmd
        passed = {}
        for name, cmd in commands.items():  # warm-up (page cache, bytecode) and the share each row passes
            out = Path(tmp) / "out.jsonl"
            run(cmd, corpus, out)
            passed[name] = sum(1 for _ in out.open("rb"))
        empty = Path(tmp) / "empty.jsonl"
        empty.write_bytes(b"")
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        wall: dict[str, list[float]] = {name: [] for name in commands}
        start: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, cmd in commands.items():
                c, w = run(cmd, corpus)
                cpu[name].append(c)
                wall[name].append(w)
                start[name].append(run(cmd, empty)[0])
    print(f"corpus: {args.events} events, mix={args.mix}, {args.rounds} interleaved rounds, "
          f"pinned={'cpu0' if pin else 'no'}, python {sys.version.split()[0]}")
    def per_event(name: str) -> float:
        return (statistics.median(cpu[name]) - statistics.median(start[name])) / args.events

    floor = per_event("none")
    print(f"{'config':14s} {'cpu s':>7s} {'start s':>7s} {'wall s':>7s} {'µs/event':>9s} {'vs none':>8s} "
          f"{'passed':>7s}")
    for name in commands:
        c, s0, w = (statistics.median(x[name]) for x in (cpu, start, wall))
        print(f"{name:14s} {c:7.3f} {s0:7.3f} {w:7.3f} {per_event(name) * 1e6:9.2f} "
              f"{per_event(name) / floor:8.3f} {passed[name] / args.events:7.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
