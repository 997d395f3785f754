"""Per-event cost of the Tetragon-compatible filter engines (tetrapipe/transforms) on the synthetic corpus.

Usage:  .venv/bin/python benchmarks/filters.py [--events 50000] [--rounds 7]

The corpus is tests.support.synth.generate(EVENTS, seed=1), decoded with orjson once; each event's
type key is found once too (the caller has it from decoding).  Each round times, in turn (so machine
noise hits all alike), one pass over the corpus per configuration:

  loop              the bare loop calling a no-op with (event, event_type): the floor every row includes
  allow+deny        5 filter lines: 3 allow (event_set, namespace_regex, binary_regex, namespace), 2 deny
  redact            one redaction filter (two patterns) over process/parent/ancestors arguments and env
  allow+deny+redact both, as an output would run them
  field filter      one EXCLUDE field filter (4 paths)
  cel               one CEL expression (typed conversion of what it reads + evaluation)
  ratelimit+dedup   a token bucket (categories, node, binary) and a 10 s dedup window
Prints the median per-event µs of each row over the rounds, and the row minus the loop floor.
"""

from __future__ import annotations

import argparse
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
from tetrapipe.transforms.dedup import Dedup  # noqa: E402
from tetrapipe.transforms.filter import compile_filters, event_type_of  # noqa: E402
from tetrapipe.transforms.filter_fields import compile_field_filters  # noqa: E402
from tetrapipe.transforms.ratelimit import RateLimiter  # noqa: E402
from tetrapipe.transforms.redact import compile_redaction  # noqa: E402

ALLOW = [
    {"event_set": ["PROCESS_EXEC", "PROCESS_EXIT"], "namespace_regex": ["^(default|payments|tenant-.*)$"]},
    {"binary_regex": ["^/usr/bin/(sudo|sudoedit|curl)$", "^/(tmp|var/tmp|dev/shm)/"]},
    {"event_set": ["PROCESS_KPROBE", "PROCESS_LSM"], "namespace": ["", "kube-system"]},
]
DENY = [
    {"binary_regex": ["^/usr/bin/(kubelet|containerd)$"]},
    {"namespace": ["monitoring"], "arguments_regex": ["/-/ready"]},
]
REDACT = [{"redact": [r"(?:--password|-p)[\s=]+(\S+)", r"(?i)token=(\S+)"]}]
FIELDS = [{"fields": "process.cap,process.ns,parent.cap,parent.ns", "action": "EXCLUDE"}]
CEL = [{"cel_expression": ["process_exec.process.pod.namespace == 'payments' || "
                           "process_kprobe.function_name == 'tcp_connect'"]}]


def configs() -> dict[str, Callable[[dict[str, Any], str], Any]]:
    flt = compile_filters(ALLOW, DENY)
    red = compile_redaction(REDACT)
    ff = compile_field_filters(FIELDS)
    cel = compile_filters(CEL, [])
    clock = iter(range(10**12)).__next__  # a deterministic clock: one "second" per call
    rl = RateLimiter(rate=1000, burst=1000, clock=lambda: clock() / 1000)
    dd = Dedup(window=10, keys=["process.binary", "process.arguments", "parent.binary", "function_name"],
               clock=lambda: clock() / 1000)
    cats = ("egress",)

    def both(e: dict[str, Any], t: str) -> Any:
        return flt(e, t) and red(e, t)

    def limits(e: dict[str, Any], t: str) -> Any:
        return rl(e, t, cats) and dd(e, t, cats)

    return {"loop": lambda e, t: None, "allow+deny": flt, "redact": red, "allow+deny+redact": both,
            "field filter": ff, "cel": cel, "ratelimit+dedup": limits}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=7)
    opts = ap.parse_args()
    events = [orjson.loads(line) for line in synth.generate(opts.events, seed=1)]
    pairs = [(e, event_type_of(e)) for e in events]
    rows = configs()
    for fn in rows.values():  # warm-up: first compiles, memo fills, CEL runtime
        for e, t in pairs[:2000]:
            fn(e, t)
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(opts.rounds):
        for name, fn in rows.items():
            start = time.perf_counter()
            for e, t in pairs:
                fn(e, t)
            times[name].append((time.perf_counter() - start) / len(pairs) * 1e6)
    floor = statistics.median(times["loop"])
    print(f"{len(pairs)} events, {opts.rounds} interleaved rounds, median µs/event")
    print(f"{'config':20s} {'µs/event':>9s} {'minus loop':>11s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:20s} {med:9.2f} {med - floor:11.2f}")
    verdicts = sum(bool(rows["allow+deny"](e, t)) for e, t in pairs)
    print(f"allow+deny passes {verdicts} of {len(pairs)} events")


if __name__ == "__main__":
    main()
