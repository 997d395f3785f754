"""Where a `tetrapipe run` spends its Python time, by pipeline stage: a py-spy profile, summarised.

Usage:  .venv/bin/python benchmarks/profile.py [--events 200000] [--mix default|production|tag-heavy]
                                               [--rate 250] [--keep FILE] [-- extra tetrapipe run flags]
                                               [--workers N]

Needs py-spy (`.venv/bin/pip install py-spy`; not a dependency of the project).  The corpus is
throughput.py's (the synthetic generator, seed 42, the same mixes).  The run is
`tetrapipe run --quiet --pod-cidr 10.244.0.0/16 --service-cidr 10.96.0.0/12 [extra flags]`, stdin
from the corpus (unless the extra flags name an `--input`), stdout to /dev/null, under
`py-spy record --gil`: only the thread holding the GIL is sampled, so the profile is the Python
work of the process (time in C code that releases the GIL — read(2), write(2), a vectored write —
is not in it; with `--workers N` only the parent is sampled).

Printed: each stage's share of the samples and its time per event (samples / rate / events), where
a sample's stage is that of the innermost frame a stage names (`STAGES`, in order), and the
functions with the most samples of their own.  Start-up (imports, config, the rules' compilation,
a peers snapshot) is a stage of its own: it is paid once per run, not per event.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.mixes import MIXES, write_corpus  # noqa: E402

STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("start-up (imports, config, rules, snapshot)", ("importlib", "_compile_bytecode", "load_library",
                                                     "PeerResolver.__init__", "build_pipeline")),
    ("decode (batch decode, lean views)", ("decode_batch", "LineDecoder", "event/decode.py")),
    ("classify (egress zone)", ("transforms/classify.py",)),
    ("peer resolver", ("transforms/peers.py", "peer_event.py", "peer_learned.py", "peer_index.py")),
    ("tag (compiled rules) + summaries", ("match (<string>", "render (<string>", "transforms/tag.py",
                                          "rules/summary.py", "pipeline/summaries.py")),
    ("render the output line / format", ("formats/",)),
    ("read + split lines", ("sources/lines.py", "sources/stream.py", "sources/reader.py", "Queue.")),
    ("write (stdout sink)", ("sinks/stdout.py", "Prerendered", "pipeline/delivery.py")),
    ("free the batch (deallocation)", ("runner.py:283",)),
    ("workers: chunks to and from the processes", ("worker_channel.py", "worker_pool.py", "pipeline/chunks.py",
                                                   "pipeline/workers.py")),
    ("processor loop (per-event dispatch)", ("pipeline/processor.py",)),
    ("stats, commit, bookkeeping", ("pipeline/stats.py", "Counter.update", "pipeline/commit.py", "pipeline/runner.py",
                                    "pipeline/hints.py", "pipeline/report.py")),
    ("asyncio event loop, threads", ("asyncio/", "selectors.py", "threading.py")),
)
FLAGS = ["run", "--quiet", "--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12"]


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):  # the innermost frame a stage names decides
        for name, keys in STAGES:
            if any(key in frame for key in keys):
                return name
    return "other"


def summarise(raw: Path, rate: int, events: int, top: int) -> str:
    stages: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.replace(str(ROOT) + "/", "").split(";")
        total += n
        stages[stage_of(frames)] += n
        leaves[frames[-1]] += n
    if not total:
        return "no samples (py-spy saw no Python work)"
    rows = [f"{total} samples at {rate}/s = {total / rate:.2f} s holding the GIL, {events} events",
            "| stage | share | µs/event |", "|---|---|---|"]
    rows += [f"| {name} | {n / total:.0%} | {n / rate / events * 1e6:.2f} |" for name, n in stages.most_common()]
    rows.append(f"top {top} functions by own samples:")
    rows += [f"  {n / total:6.1%}  {leaf}" for leaf, n in leaves.most_common(top)]
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--mix", choices=sorted(MIXES), default="default")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--workers", type=int, default=1, help="tetrapipe run --workers N (only the parent is sampled)")
    parser.add_argument("--keep", type=Path, help="also keep py-spy's raw (collapsed stacks) output here")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("extra", nargs="*", help="more `tetrapipe run` flags (after --)")
    args = parser.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(spy, os.X_OK):
        print("py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        corpus, raw = Path(tmp) / "events.jsonl", args.keep or Path(tmp) / "profile.txt"
        write_corpus(corpus, args.events, args.mix)
        cmd = [spy, "record", "--gil", "--format", "raw", "--rate", str(args.rate), "--output", str(raw), "--",
               sys.executable, "-m", "tetrapipe.cli.main", *FLAGS, "--workers", str(args.workers), *args.extra]
        with corpus.open("rb") as stdin, open(os.devnull, "wb") as stdout:
            subprocess.run(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.DEVNULL, cwd=ROOT, check=True)
        print(f"mix={args.mix}, --workers {args.workers}, more flags: {' '.join(args.extra) or '(none)'}")
        print(summarise(raw, args.rate, args.events, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
