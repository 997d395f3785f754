"""CPU time of `tetrapipe run` in two checkouts on the same corpus, interleaved: a before/after ratio
that holds on a shared, noisy machine (user+sys CPU of the child, not wall time).

    git worktree add /tmp/before <commit>
    .venv/bin/python benchmarks/compare_trees.py /tmp/before . --mix default --mix production

A checkout from before the restructure (issue 11) has no `tetrapipe` package: its module is
`pipeline.cli`, found automatically.  Each tree runs its own code (cwd and PYTHONPATH = the tree).

`--per-event`: each round also runs both sides on an empty input with the same flags, and each
side's ratio is taken on CPU time minus that start-up (module imports, config, a peers snapshot
load...): the marginal cost per event, which a long-running worker pays, apart from the fixed cost;
also printed paired: each round's own ratio (its sides ran back to back), median and quartiles.
The sides' order rotates from round to round.
`--own-source`: each pod's connections come from addresses of its own, one per family (`mixes.own_source`),
instead of the generator's random source addresses (the peer resolver's learning at its worst).
`--variant LABEL=FLAGS` (repeatable) adds a side in the same rounds: the after tree with other flags, e.g.
    compare_trees.py . . --per-event --before-flag=--no-peers-learn --after-flag=--config=DIR/tetrapipe.yaml \
        --variant "no-learn=--config=DIR/tetrapipe.yaml --no-peers-learn"
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
from benchmarks.mixes import MIXES, own_source  # noqa: E402
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
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=FLAGS",
                        help="one more side in the same rounds: the after tree with these (space-separated) flags")
    parser.add_argument("--per-event", action="store_true", help="subtract each side's start-up (an empty input)")
    parser.add_argument("--own-source", action="store_true",
                        help="each pod connects from addresses of its own (mixes.own_source), not random ones")
    args = parser.parse_args()
    sides = {"before": (args.before.resolve(), args.before_flag), "after": (args.after.resolve(), args.after_flag)}
    for variant in args.variant:
        label, _, flags = variant.partition("=")
        sides[label] = (args.after.resolve(), flags.split())
    for mix in args.mix or ["default", "production"]:
        print(compare(mix, sides, args.events, args.rounds, args.per_event, args.own_source))
    return 0


def compare(mix: str, sides: dict[str, tuple[Path, list[str]]], events: int, rounds: int, per_event: bool,
            own: bool = False) -> str:
    """One line: each side's median CPU seconds and its ratio to the first side's (per event: start-up subtracted)."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as f:
        for line in synth.generate(events, seed=42, mix=MIXES[mix]):
            f.write((own_source(line) if own else line) + b"\n")
    times: dict[str, list[float]] = {side: [] for side in sides}
    startup: dict[str, list[float]] = {side: [] for side in sides}
    try:
        for i in range(rounds):
            order = list(sides)[i % len(sides):] + list(sides)[:i % len(sides)]  # no side always first or last
            for side in order:
                tree, flags = sides[side]
                times[side].append(cpu_seconds(tree, f.name, flags))
                if per_event:
                    startup[side].append(cpu_seconds(tree, os.devnull, flags))
    finally:
        os.unlink(f.name)
    med = {k: statistics.median(v) for k, v in times.items()}
    first = next(iter(sides))
    line = f"{mix}: " + ", ".join(f"{k} {med[k]:.3f} s CPU ({', '.join(f'{x:.2f}' for x in v)})"
                                  for k, v in times.items())
    line += "; " + ", ".join(f"{k}/{first} {med[k] / med[first]:.3f}" for k in list(sides)[1:])
    if per_event:
        per = {k: statistics.median(a - b for a, b in zip(times[k], startup[k], strict=True)) / events * 1e6
               for k in sides}
        line += ("; per event (start-up subtracted, median of rounds): "
                 + ", ".join(f"{k} {per[k]:.2f} µs" for k in sides) + "; "
                 + ", ".join(f"{k}/{first} {per[k] / per[first]:.3f}" for k in list(sides)[1:]))
        line += "; paired per round (each round's ratio; median, quartiles): " + ", ".join(
            f"{k}/{first} {paired(times[k], startup[k], times[first], startup[first])}" for k in list(sides)[1:])
    return line


def paired(times: list[float], startup: list[float], base: list[float], base_startup: list[float]) -> str:
    """The median and quartiles of the per-round ratios of two sides' per-event CPU: the sides of one round
    ran back to back, so a slow spell of the machine moves both (the medians of each side apart do not pair)."""
    ratios = [(t - s) / (b - bs) for t, s, b, bs in zip(times, startup, base, base_startup, strict=True)]
    if len(ratios) < 2:
        return f"{ratios[0]:.3f}"
    q1, q2, q3 = statistics.quantiles(ratios, n=4)
    return f"{q2:.3f} ({q1:.3f}–{q3:.3f})"


if __name__ == "__main__":
    sys.exit(main())
