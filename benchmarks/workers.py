"""`tetrapipe run --input FILE --workers N` against `--workers 1` on the same file, in one run.

Usage:  .venv/bin/python benchmarks/workers.py [--events 1000000] [--rounds 3] [--workers 2] [--mix default|tag-heavy]

The corpus is the synthetic generator's (tests/support/synth.py), written once to a file.  Each
round runs `--workers 1` then `--workers N` (interleaved, so machine noise hits both alike), stdout
to a file on /dev/shm (when present), and compares the two outputs byte for byte (sha256) — a
mismatch stops the benchmark.  Printed: per side the median wall time, events/s, the parent
process's CPU time (what the workers leave to the parent: reading, ordering, stats, writing), the
workers' CPU time (sampled from /proc) and the parent's peak RSS; then the ratio of the medians
(goal on 2 cores: >= 1.7), and the ceiling those runs allow (see `ceiling`).  A shared, noisy
machine: read the ratio of interleaved medians, not single timings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import synth  # noqa: E402

SAMPLE = 0.1  # seconds between samples of the workers' CPU time
TAG_HEAVY = {name: weight * (8.0 if name not in ("exec", "exit") else 1.0) for name, weight in synth.SCENARIOS.items()}


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of `pid` so far (Linux /proc), None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def watch_workers(stderr: Any, seen: dict[int, float], errors: list[bytes]) -> None:
    """Read the run's stderr; once it names its workers, sample their CPU time until they are gone.

    The workers are the fork server's children, not ours: their CPU time is read from /proc while they
    run (the last sample may miss up to SAMPLE seconds of it)."""
    pids: list[int] = []
    for line in stderr:
        errors.append(line)
        if b"worker_pids" in line:
            pids = json.loads(line)["worker_pids"]
            break
    while pids:
        for pid in list(pids):
            cpu = cpu_seconds(pid)
            if cpu is None:
                pids.remove(pid)
            else:
                seen[pid] = cpu
        time.sleep(SAMPLE)
    errors.extend(stderr)


def run(workers: int, corpus: Path, out: Path) -> tuple[float, float, int, float]:
    """(wall seconds, parent CPU seconds, parent peak RSS KiB, workers' CPU seconds) of one run."""
    cmd = [sys.executable, "-m", "tetrapipe.cli.main", "run", "--quiet", "--log-format", "json", "--input",
           str(corpus), "--workers", str(workers), "--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12",
           "--no-peers-learn"]  # learning is on by default in one process only: compare like with like
    seen: dict[int, float] = {}
    errors: list[bytes] = []
    with out.open("wb") as stdout:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, cwd=ROOT)
        watcher = threading.Thread(target=watch_workers, args=(proc.stderr, seen, errors), daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        watcher.join(5)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"--workers {workers} failed: {b''.join(errors).decode()[-800:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, sum(seen.values())


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


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
              f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}, load average before: {load()}")
        sides: dict[int, list[tuple[float, float, int, float]]] = {1: [], args.workers: []}
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
        parent, children = statistics.median(r[1] for r in runs), statistics.median(r[3] for r in runs)
        print(f"--workers {workers}: median {wall:7.2f} s  {args.events / wall:9,.0f} events/s  parent CPU "
              f"{parent:6.2f} s ({parent / args.events * 1e6:.1f} µs/event)  workers CPU {children:6.2f} s  "
              f"parent peak RSS {max(r[2] for r in runs) / 1024:.0f} "
              f"MiB  (runs: {', '.join(f'{r[0]:.2f}' for r in runs)})")
    print(f"--workers {args.workers} / --workers 1 throughput: {medians[1] / medians[args.workers]:.2f}x  "
          f"(load average after: {load()}: other jobs on the machine distort the ratio)")
    print(ceiling(sides, args.workers))
    return 0


def ceiling(sides: dict[int, list[tuple[float, float, int, float]]], workers: int) -> str:
    """What the ratio could be at best on this machine, from the same runs.

    `--workers 1` already keeps more than one core busy (its reader and writer threads copy the bytes
    in system calls while the event loop works), so N workers on C cores can at best be
    C / (its CPU seconds per wall second) times faster — if they did its CPU work with no overhead.
    The overhead is the second figure: the CPU `--workers N` spends in all (parent + workers) over
    what `--workers 1` spends."""
    cores = min(len(os.sched_getaffinity(0)), workers)
    one, many = sides[1], sides[workers]
    busy = statistics.median(r[1] for r in one) / statistics.median(r[0] for r in one)
    spent = statistics.median(r[1] + r[3] for r in many) / statistics.median(r[1] for r in one)
    return (f"ceiling: --workers 1 keeps {busy:.2f} cores busy, so {cores} cores allow at most {cores / busy:.2f}x "
            f"with no overhead; --workers {workers} spends {spent:.2f}x its CPU, which allows "
            f"{cores / busy / spent:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
