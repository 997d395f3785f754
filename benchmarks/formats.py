"""Micro-benchmark: per-event cost of the OCSF and ECS output formats vs the default output contract.

    .venv/bin/python benchmarks/formats.py [--count 50000] [--rounds 7] [--seed 1]

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
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
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
