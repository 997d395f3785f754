"""CPU time of `tetrapipe run` in two checkouts on the same corpus, interleaved: a before/after ratio
that holds on a shared, noisy machine (user+sys CPU of the child, not wall time).

    git worktree add /tmp/before <commit>
    .venv/bin/python benchmarks/compare_trees.py /tmp/before . --mix default --mix production

A checkout from before the restructure (issue 11) has no `tetrapipe` package: its module is
`pipeline.cli`, found automatically.  Each tree runs its own code (cwd and PYTHONPATH = the tree).

`--per-event`: each round also runs both sides on an empty input with the same flags, and each
side's ratio is taken on CPU time minus that start-up (module imports, config, a peers snapshot
load...): the marginal cost per event, which a long-running worker pays, apart from the fixed cost.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.mixes import MIXES  # noqa: E402
from tests.support import synth  # noqa: E402

FLAGS = ["run", "--quiet", "--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12"]


def module_of(tree: Path) -> str:
    return "tetrapipe.cli.main" if (tree / "tetrapipe" / "cli" / "main.py").exists() else "pipeline.cli"


def cpu_seconds(tree: Path, corpus: str, extra: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(corpus, "rb") as inp, open(os.devnull, "wb") as out:
        subprocess.run([sys.executable, "-m", module_of(tree), *FLAGS, *extra], stdin=inp, stdout=out, cwd=tree,
                       env={**os.environ, "PYTHONPATH": str(tree)}, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--mix", action="append", choices=sorted(MIXES))
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before-flag", action="append", default=[], help="extra flag for the before tree's run")
    parser.add_argument("--after-flag", action="append", default=[], help="extra flag for the after tree's run")
    parser.add_argument("--per-event", action="store_true", help="subtract each side's start-up (an empty input)")
    args = parser.parse_args()
    for mix in args.mix or ["default", "production"]:
        with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as f:
            for line in synth.generate(args.events, seed=42, mix=MIXES[mix]):
                f.write(line + b"\n")
        times: dict[str, list[float]] = {"before": [], "after": []}
        if args.per_event:
            times.update({"before start-up": [], "after start-up": []})
        try:
            for _ in range(args.rounds):
                times["before"].append(cpu_seconds(args.before.resolve(), f.name, args.before_flag))
                times["after"].append(cpu_seconds(args.after.resolve(), f.name, args.after_flag))
                if args.per_event:
                    times["before start-up"].append(cpu_seconds(args.before.resolve(), os.devnull, args.before_flag))
                    times["after start-up"].append(cpu_seconds(args.after.resolve(), os.devnull, args.after_flag))
        finally:
            os.unlink(f.name)
        med = {k: statistics.median(v) for k, v in times.items()}
        line = f"{mix}: " + ", ".join(f"{k} {med[k]:.3f} s CPU ({', '.join(f'{x:.2f}' for x in v)})"
                                      for k, v in times.items()) + f"; after/before {med['after'] / med['before']:.3f}"
        if args.per_event:
            per = {side: statistics.median(a - b for a, b in zip(times[side], times[f"{side} start-up"], strict=True))
                   / args.events * 1e6 for side in ("before", "after")}
            line += (f"; per event (start-up subtracted, median of rounds): before {per['before']:.2f} µs, "
                     f"after {per['after']:.2f} µs, after/before {per['after'] / per['before']:.3f}")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
