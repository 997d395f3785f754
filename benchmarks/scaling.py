"""Does `tetrapipe run` scale with its input?  Time linear in the events, peak RSS flat.

Usage:  .venv/bin/python benchmarks/scaling.py [--sizes 100000,1000000] [--rounds 3] [--mix default]

Runs `tetrapipe run --quiet --pod-cidr … --service-cidr …` (stdin → /dev/null, pinned to one core
with `taskset -c 0` when available) on corpora of each size, the same mix and seed (the larger
corpus begins with the smaller one), interleaved round by round so machine noise hits every size
alike.  Reports per size the median wall time, µs per event and the peak RSS (max over rounds),
then, against the smallest size: the time ratio divided by the size ratio (1.00 = linear; a little
under 1 is the start-up cost spread over more events) and the RSS ratio (1.00 = flat).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.mixes import MIXES, write_corpus  # noqa: E402
from benchmarks.throughput import timed  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated event counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mix", choices=sorted(MIXES), default="default")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))

    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    command = [*pin, sys.executable, "-m", "tetrapipe.cli.main", "run", "--quiet",
               "--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12"]
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "tetrapipe")], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        corpora = {n: Path(tmp) / f"events-{n}.jsonl" for n in sizes}
        for n, path in corpora.items():
            write_corpus(path, n, args.mix)
        print(f"mix={args.mix}, sizes={sizes}, rounds={args.rounds}, pinned={'cpu0' if pin else 'no'}, "
              f"python {sys.version.split()[0]}")
        os.chdir(ROOT)
        times: dict[int, list[float]] = {n: [] for n in sizes}
        rss: dict[int, list[int]] = {n: [] for n in sizes}
        for _ in range(args.rounds):
            for n in sizes:
                elapsed, peak = timed(command, corpora[n])
                times[n].append(elapsed)
                rss[n].append(peak)
    base = sizes[0]
    med = {n: statistics.median(times[n]) for n in sizes}
    for n in sizes:
        print(f"{n:>9,} events: median {med[n]:7.2f} s  {med[n] / n * 1e6:6.2f} µs/event  "
              f"peak RSS {max(rss[n]) / 1024:6.0f} MiB  (runs: {', '.join(f'{t:.2f}' for t in times[n])})")
    for n in sizes[1:]:
        print(f"{n:,} vs {base:,}: time ratio / size ratio {med[n] / med[base] / (n / base):.2f} (1.00 = linear), "
              f"peak RSS ratio {max(rss[n]) / max(rss[base]):.2f} (1.00 = flat)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
