"""Start-up of `tetrapipe run` in two checkouts, interleaved: the wall time from the process's start to its
first output event, and the CPU the process spent until it exited on end of input (one event in).

    git worktree add /tmp/before <commit>
    .venv/bin/python benchmarks/startup.py /tmp/before . [--rounds 15]

Each round starts both trees in turn (so machine noise hits both alike); medians and the after/before
ratios are printed.  The floor is `python -c "import msgspec"` (the interpreter and the decoder alone).
A shared, noisy machine: read the ratios, not single timings.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support import synth  # noqa: E402

FLAGS = ["run", "--quiet", "--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12"]


def first_event(tree: Path, line: bytes) -> tuple[float, float]:
    """(seconds to the first output line, CPU seconds of the whole process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tetrapipe", *FLAGS], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)})
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + b"\n")
    proc.stdin.flush()  # the input stays open: the first event is written before the end of input
    out = proc.stdout.readline()
    wall = time.perf_counter() - start
    proc.stdin.close()
    proc.stdout.read()
    if proc.wait(30) != 0 or not out:
        raise SystemExit(f"{tree}: the run failed")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def floor_cpu() -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", "import msgspec"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    line = next(synth.generate(1, seed=42))
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    walls: dict[str, list[float]] = {k: [] for k in trees}
    cpus: dict[str, list[float]] = {k: [] for k in trees}
    floor: list[float] = []
    for _ in range(args.rounds):
        for name, tree in trees.items():
            wall, cpu = first_event(tree, line)
            walls[name].append(wall)
            cpus[name].append(cpu)
        floor.append(floor_cpu())
    med = {k: (statistics.median(walls[k]), statistics.median(cpus[k])) for k in trees}
    for name in trees:
        print(f"{name:6s} first event after {med[name][0]:.3f} s wall; {med[name][1]:.3f} s CPU in all")
    print(f"floor  {statistics.median(floor):.3f} s CPU (python -c 'import msgspec')")
    print(f"after/before: wall {med['after'][0] / med['before'][0]:.3f}, CPU {med['after'][1] / med['before'][1]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
