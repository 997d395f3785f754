"""stdin → stdout throughput of `tetrapipe run`, against jq and the msgspec decode floor, in one run.

Usage:  .venv/bin/python benchmarks/throughput.py [--events 200000] [--rounds 5] [--mix default|production|tag-heavy]
                                                 [--format tetrapipe,ocsf,ecs] [--lifecycle]

Mixes (benchmarks/mixes.py): `default` (synth's, about a third tagged), `production` (~5% tagged),
`tag-heavy` (about half tagged, every category present); the corpus line says what it holds.

For each round, in turn (interleaved, so machine noise hits all three alike), pinned to one
core with `taskset -c 0` when available:
  - floor:     a minimal Python reader: 1 MiB chunks from stdin, split lines, msgspec-decode
               each into a one-field struct (what any msgspec-based tool pays at least);
  - tetrapipe: `tetrapipe run --quiet --pod-cidr … --service-cidr …` (decode, classify, tag,
               summaries, JSON out) to /dev/null;
  - jq:        `jq -c` running the seed library's egress filter (one of the nine) to /dev/null;
  - jq-all-9:  (with --all-filters) the nine seed filters, one jq pass each, as the library's
               users run them today; its time is the sum of the nine passes.
It prints medians, events/s, the ratios tetrapipe/jq and tetrapipe/floor, and tetrapipe's peak
RSS.  `--format a,b` runs `tetrapipe run --format X` once per listed format in each round (named
`tetrapipe[X]`, the first format the one the ratios use) and prints each format's time over the first's.
`--lifecycle` rewrites the corpus so processes live across events (benchmarks/lifecycle.py).
Numbers are for a shared, noisy 2-core machine: read the ratios, not single timings.
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
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import lifecycle  # noqa: E402
from benchmarks.mixes import MIXES, PRODUCTION_MIX, describe  # noqa: E402
from tests.support import synth  # noqa: E402

FILTERS = json.loads((ROOT / "tests" / "data" / "seed_jq_filters.json").read_text())["filters"]
FLOOR = r"""
import os, sys, msgspec
class Min(msgspec.Struct):
    time: str | None = None
decode = msgspec.json.Decoder(Min).decode
tail = b""
n = 0
while chunk := os.read(0, 1 << 20):
    lines = (tail + chunk).split(b"\n")
    tail = lines.pop()
    for line in lines:
        decode(line)
    n += len(lines)
"""
__all__ = ["PRODUCTION_MIX"]  # where benchmarks/compare_trees.py imports it from


def timed(cmd: list[str], corpus: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one run with the corpus on stdin, output discarded."""
    with corpus.open("rb") as stdin, open(os.devnull, "wb") as devnull:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=devnull, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.read().decode()[-500:]}")
    return elapsed, usage.ru_maxrss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mix", choices=sorted(MIXES), default="default")
    parser.add_argument("--jq-filter", default="egress", choices=sorted(FILTERS))
    parser.add_argument("--all-filters", action="store_true", help="also time the nine seed filters, one pass each")
    parser.add_argument("--workers", default="1", help="tetrapipe run --workers N (pinned to N cores; the floor "
                                                        "and jq to the first); benchmarks/workers.py compares N")
    parser.add_argument("--format", default="tetrapipe",
                        help="comma-separated output formats, each run as its own `tetrapipe` command")
    parser.add_argument("--lifecycle", action="store_true", help="processes that live across events "
                                                                  "(exec, its other events, its exit)")
    args = parser.parse_args()

    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    cores = len(os.sched_getaffinity(0)) if args.workers == "auto" else int(args.workers)
    wide = ["taskset", "-c", f"0-{cores - 1}"] if pin and cores > 1 else pin
    jq = shutil.which("jq")
    tetrapipe = [sys.executable, "-m", "tetrapipe.cli.main", "run", "--quiet",
                 "--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12"]
    formats = args.format.split(",")
    commands = {"floor": [*pin, sys.executable, "-c", FLOOR]}
    for fmt in formats:
        name = "tetrapipe" if fmt == formats[0] else f"tetrapipe[{fmt}]"
        commands[name] = [*wide, *tetrapipe, "--workers", args.workers, *(["--format", fmt] if fmt != "tetrapipe"
                                                                           else [])]
    if jq:
        commands["jq"] = [*pin, jq, "-c", FILTERS[args.jq_filter]]
    # An installed package has its bytecode compiled at install time; a checkout run with
    # PYTHONDONTWRITEBYTECODE would otherwise recompile every module at every start.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "tetrapipe")], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "events.jsonl"
        lines: Iterable[bytes] = synth.generate(args.events, seed=42, mix=MIXES[args.mix])
        if args.lifecycle:
            lines = lifecycle.relive(lines, seed=42)
        with corpus.open("wb") as out:
            for line in lines:
                out.write(line + b"\n")
        size = corpus.stat().st_size
        print(f"corpus: {args.events} events, {size / args.events:.0f} B/event average, mix={args.mix} "
              f"{'(lifecycle: ' + lifecycle.describe(corpus) + ') ' if args.lifecycle else ''}"
              f"({describe(synth.generate(args.events, seed=42, mix=MIXES[args.mix]))}), "
              f"pinned={'cpu0' if pin else 'no'}, python {sys.version.split()[0]}, jq={jq or 'absent'}")
        times: dict[str, list[float]] = {name: [] for name in commands}
        rss: list[int] = []
        os.chdir(ROOT)
        for _ in range(args.rounds):
            for name, cmd in commands.items():
                elapsed, peak = timed(cmd, corpus)
                times[name].append(elapsed)
                if name == "tetrapipe":
                    rss.append(peak)
            if jq and args.all_filters:
                total = sum(timed([*pin, jq, "-c", f], corpus)[0] for f in FILTERS.values())
                times.setdefault("jq-all-9", []).append(total)
    med = {name: statistics.median(values) for name, values in times.items()}
    for name in times:
        print(f"{name:10s} median {med[name]:7.3f} s  {args.events / med[name]:10,.0f} events/s  "
              f"(runs: {', '.join(f'{t:.2f}' for t in times[name])})")
    print(f"tetrapipe peak RSS: {max(rss) / 1024:.0f} MiB")
    for fmt in formats[1:]:
        print(f"--format {fmt} / --format {formats[0]} time: {med[f'tetrapipe[{fmt}]'] / med['tetrapipe']:.2f}x  "
              f"(tetrapipe[{fmt}] / floor throughput: {med['floor'] / med[f'tetrapipe[{fmt}]']:.2f})")
    print(f"tetrapipe / floor throughput: {med['floor'] / med['tetrapipe']:.2f}")
    if "jq" in med:
        print(f"tetrapipe / jq ({args.jq_filter} filter) throughput: {med['jq'] / med['tetrapipe']:.1f}x")
    if "jq-all-9" in med:
        print(f"tetrapipe / jq (nine filters, nine passes) throughput: {med['jq-all-9'] / med['tetrapipe']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
