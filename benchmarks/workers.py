"""`tetrapipe run --input FILE --workers N` against `--workers 1` on the same file, in one run.

Usage:  .venv/bin/python benchmarks/workers.py [--events 1000000] [--rounds 3] [--workers 2] [--mix default|tag-heavy]

The corpus is the synthetic generator's (tests/support/synth.py), written once to a file.  Each
round runs `--workers 1` then `--workers N` (interleaved, so machine noise hits both alike), stdout
to a file on /dev/shm (when present), and compares the two outputs byte for byte (sha256) — a
mismatch stops the benchmark.  Printed: per side the median wall time, events/s, the parent
process's CPU time (what the workers leave to the parent: reading, ordering, stats, writing) and
its peak RSS; then the ratio of the medians (goal on 2 cores: >= 1.7).  A shared, noisy machine:
read the ratio of interleaved medians, not single timings.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import synth  # noqa: E402

TAG_HEAVY = {name: weight * (8.0 if name not in ("exec", "exit") else 1.0) for name, weight in synth.SCENARIOS.items()}


def run(workers: int, corpus: Path, out: Path) -> tuple[float, float, int]:
    """(wall seconds, parent CPU seconds, parent peak RSS KiB) of one run."""
    cmd = [sys.executable, "-m", "tetrapipe.cli.main", "run", "--quiet", "--input", str(corpus),
           "--workers", str(workers), "--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12"]
    with out.open("wb") as stdout:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    assert proc.stderr is not None
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"--workers {workers} failed: {proc.stderr.read().decode()[-800:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mix", choices=("default", "tag-heavy"), default="default")
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "tetrapipe")], check=True)
    scratch = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory(dir=scratch) as outs:
        corpus = Path(tmp) / "events.jsonl"
        with corpus.open("wb") as f:
            for line in synth.generate(args.events, seed=42, mix=TAG_HEAVY if args.mix == "tag-heavy" else None):
                f.write(line + b"\n")
        size = corpus.stat().st_size
        print(f"corpus: {args.events} events, {size / args.events:.0f} B/event, mix={args.mix}, "
              f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}")
        sides = {1: [], args.workers: []}  # type: dict[int, list[tuple[float, float, int]]]
        for _ in range(args.rounds):
            digests = {}
            for workers in sides:
                out = Path(outs) / f"out-{workers}.jsonl"
                sides[workers].append(run(workers, corpus, out))
                digests[workers] = digest(out)
                out.unlink()
            if len(set(digests.values())) != 1:
                raise SystemExit(f"outputs differ: {digests}")
    print("outputs byte-identical in every round")
    medians = {}
    for workers, runs in sides.items():
        wall = statistics.median(r[0] for r in runs)
        medians[workers] = wall
        print(f"--workers {workers}: median {wall:7.2f} s  {args.events / wall:9,.0f} events/s  parent CPU "
              f"{statistics.median(r[1] for r in runs):6.2f} s  parent peak RSS {max(r[2] for r in runs) / 1024:.0f} "
              f"MiB  (runs: {', '.join(f'{r[0]:.2f}' for r in runs)})")
    print(f"--workers {args.workers} / --workers 1 throughput: {medians[1] / medians[args.workers]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
