"""Micro-benchmark: per-event cost of the OCSF and ECS output formats vs the default output contract.

    .venv/bin/python benchmarks/formats.py [--count 50000] [--rounds 7] [--seed 1]
    .venv/bin/python benchmarks/formats.py --pipeline [--events 100000] [--rounds 5] [--mix default|production]
                                           [--lifecycle] [--tree PATH]
                                           [--tree PATH]

Corpus: `tests.support.synth.generate_tagged` (the default scenario mix: every event type and
category).  Each event's tags are set from its scenario (the category the scenario is built to
produce, e.g. `sudo` → categories (sudo,), groups (security,)) and connection events get an egress
object shaped like the classifier's; tagging itself is not measured.

Measured per event, in interleaved rounds (medians reported):

- default: `orjson.loads(raw)` + the contract's append, `raw[:-1] + b',"tetrapipe":' + small_json + b'}'`
  with `small_json` the encoded `tetrapipe` object (categories, groups, summaries, egress);
- ocsf: `orjson.loads(raw)` + `encode_ocsf(...)` (mapping + encoding); ocsf+findings likewise;
- ecs: `orjson.loads(raw)` + `encode_ecs(...)`.

Both sides include the JSON decode: the default format's pipeline decodes every event too, and the
mappings need the event as dicts.  The ratios printed are each format's time over the default's;
the map+encode cost alone (total minus the decode) is printed as well, and its ratio to the
default's time (the brief's reading where the format's cost is compared without a decode).
Times are the thread's CPU time (`time.thread_time`), so other work on a shared machine inflates
them less than wall-clock time would; the garbage collector is off while measuring.

`--pipeline` measures the way issue 12 states its goal ("each costs at most 1.5x the default
format's per-event time"): whole `tetrapipe run --quiet --pod-cidr … --service-cidr …` runs on
`benchmarks/throughput.py`'s corpus (the same generator, seed and mixes) with `--format tetrapipe`,
`--format ocsf`, `--format ecs`, in interleaved rounds (the order rotating), each run's user+sys
CPU time (the child's rusage, robust on a shared machine) minus a run on empty input (start-up),
divided by the events: per-event CPU time, medians, and each format's ratio to `tetrapipe`.
`--tree` runs another checkout's code (e.g. `git worktree add /tmp/base <commit>`) on the same
corpus, for before/after numbers; given twice (`--tree /tmp/base --tree .`), both trees' runs are
interleaved in the same rounds.  `--lifecycle`: processes that live across events
(benchmarks/lifecycle.py), the corpus a per-process cache can use as on a real node.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.synth import generate_tagged  # noqa: E402
from tetrapipe.formats.ecs import encode_ecs  # noqa: E402
from tetrapipe.formats.ocsf import encode_ocsf  # noqa: E402

_TAGS = {"ebpf": ("ebpf", "system"), "kmod": ("kernel-module", "system"), "library": ("library", "system"),
         "tmp_exec": ("tmp-execs", "security"), "sudo": ("sudo", "security"), "suid": ("suid", "security"),
         "setuid": ("setuid", "security"), "ssh": ("ssh", "network"), "egress": ("egress", "network"),
         "egress_sockaddr": ("egress", "network")}
_COMMON = frozenset({"time", "node_name", "cluster_name", "aggregation_info"})
Input = tuple[bytes, str, tuple[str, ...], tuple[str, ...], Any]


def corpus(count: int, seed: int) -> list[Input]:
    out: list[Input] = []
    for scenario, line in generate_tagged(count, seed):
        ev = orjson.loads(line)
        etype = next(k for k in ev if k not in _COMMON)
        cat = _TAGS.get(scenario)
        cats: tuple[str, ...] = (cat[0],) if cat else ()
        groups: tuple[str, ...] = (cat[1],) if cat else ()
        out.append((line, etype, cats, groups, _egress(ev.get(etype) or {})))
    return out


def _egress(body: dict[str, Any]) -> dict[str, Any] | None:
    for arg in body.get("args") or ():
        for kind, addr, port in (("sock_arg", "daddr", "dport"), ("sockaddr_arg", "addr", "port")):
            sock = arg.get(kind) if isinstance(arg, dict) else None
            if isinstance(sock, dict) and sock.get(addr):
                return {"zone": "public", "external": True, "daddr": sock[addr], "dport": sock.get(port),
                        "cidr": "0.0.0.0/0"}
    return None


def run_default(inputs: list[Input]) -> None:
    loads, dumps = orjson.loads, orjson.dumps
    for raw, _etype, cats, groups, egress in inputs:
        loads(raw)
        small: dict[str, Any] = {"categories": cats, "groups": groups, "summaries": {c: "x" for c in cats}}
        if egress:
            small["egress"] = egress
        raw[:-1] + b',"tetrapipe":' + dumps(small) + b"}"  # noqa: B018 - the work being measured


def run_decode(inputs: list[Input]) -> None:
    loads = orjson.loads
    for raw, *_ in inputs:
        loads(raw)


def run_ocsf(inputs: list[Input], findings: bool = False) -> None:
    loads = orjson.loads
    for raw, etype, cats, groups, egress in inputs:
        encode_ocsf(loads(raw), etype, cats, groups, egress, findings=findings)


def run_ecs(inputs: list[Input]) -> None:
    loads = orjson.loads
    for raw, etype, cats, groups, egress in inputs:
        encode_ecs(loads(raw), etype, cats, groups, egress)


PIPELINE_FLAGS = ["run", "--quiet", "--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12"]
PIPELINE_FORMATS = ("tetrapipe", "ocsf", "ecs")


def _cpu_seconds(tree: Path, corpus_path: str, fmt: str) -> float:
    """User+sys CPU seconds of one `tetrapipe run --format fmt` over the corpus, output discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(corpus_path, "rb") as inp, open(os.devnull, "wb") as out:
        subprocess.run([sys.executable, "-m", "tetrapipe.cli.main", *PIPELINE_FLAGS, "--format", fmt], stdin=inp,
                       stdout=out, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def pipeline(events: int, rounds: int, mix: str, trees: list[Path], lifecycle: bool = False) -> None:
    """Every format in every tree (and start-up), interleaved in each round with the order rotating."""
    from benchmarks.lifecycle import relive
    from benchmarks.throughput import PRODUCTION_MIX
    from tests.support import synth

    with tempfile.TemporaryDirectory() as tmp:
        full, empty = os.path.join(tmp, "corpus.jsonl"), os.path.join(tmp, "empty.jsonl")
        with open(full, "wb") as f:
            lines = synth.generate(events, seed=42, mix=PRODUCTION_MIX if mix == "production" else None)
            for line in relive(lines, seed=42) if lifecycle else lines:
                f.write(line + b"\n")
        Path(empty).write_bytes(b"")
        runs = [(tree, name) for tree in trees for name in (*PIPELINE_FORMATS, "start-up")]
        times: dict[tuple[Path, str], list[float]] = {run: [] for run in runs}
        for r in range(rounds):
            for tree, name in runs[r % len(runs):] + runs[:r % len(runs)]:
                corpus_path, fmt = (empty, "tetrapipe") if name == "start-up" else (full, name)
                times[tree, name].append(_cpu_seconds(tree, corpus_path, fmt))
    for tree in trees:
        start = statistics.median(times[tree, "start-up"])
        per = {k: (statistics.median(times[tree, k]) - start) / events * 1e6 for k in PIPELINE_FORMATS}
        print(f"{tree}: {events} events ({mix} mix{', lifecycle' if lifecycle else ''}), {rounds} interleaved "
              f"rounds, median CPU µs/event (start-up {start:.2f} s subtracted):")
        for name, us in per.items():
            print(f"  --format {name:<10} {us:7.2f}  ratio {us / per['tetrapipe']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pipeline", action="store_true", help="whole `tetrapipe run` per format (the issue's measure)")
    ap.add_argument("--events", type=int, default=100_000, help="--pipeline: corpus size")
    ap.add_argument("--mix", choices=("default", "production"), default="default", help="--pipeline: corpus mix")
    ap.add_argument("--lifecycle", action="store_true",
                    help="--pipeline: processes that live across events (benchmarks/lifecycle.py)")
    ap.add_argument("--tree", type=Path, action="append",
                    help="--pipeline: a checkout to run (repeat it: the trees' runs are interleaved too)")
    a = ap.parse_args(argv)
    if a.pipeline:
        trees = [t.resolve() for t in a.tree or [Path(__file__).resolve().parents[1]]]
        pipeline(a.events, a.rounds if a.rounds != 7 else 5, a.mix, trees, a.lifecycle)
        return 0
    inputs = corpus(a.count, a.seed)
    variants: dict[str, Callable[[list[Input]], None]] = {
        "decode only": run_decode, "default": run_default, "ocsf": run_ocsf,
        "ocsf+findings": lambda i: run_ocsf(i, True), "ecs": run_ecs}
    for fn in variants.values():  # warm the memos (classification, time seconds, image splits)
        fn(inputs[:2000])
    times: dict[str, list[float]] = {k: [] for k in variants}
    gc.collect()
    gc.disable()
    try:
        for r in range(a.rounds):
            names = list(variants)
            names = names[r % len(names):] + names[:r % len(names)]  # interleave, rotating the order
            for name in names:
                t0 = time.thread_time()
                variants[name](inputs)
                times[name].append((time.thread_time() - t0) / len(inputs) * 1e6)
    finally:
        gc.enable()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{len(inputs)} synthetic events, {a.rounds} interleaved rounds, median µs/event:")
    for name, us in med.items():
        alone = us - med["decode only"]
        extra = "" if name in ("decode only", "default") else (
            f"  ratio {us / med['default']:.2f}x   map+encode alone {alone:.2f} µs = {alone / med['default']:.2f}x")
        print(f"  {name:<14} {us:7.2f}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
