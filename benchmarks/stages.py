"""Where `tetrapipe run`'s time per event goes, stage by stage, in one process (no threads, no I/O).

Usage:  .venv/bin/python benchmarks/stages.py [--mix default|production|tag-heavy] [--events 60000] [--rounds 3]
        .venv/bin/python benchmarks/stages.py --peers SNAPSHOT [--mix default] [--rounds 15]

The corpus (benchmarks/mixes.py) is cut into 1 MiB reads as the stdin source does; each read
goes through the stages of the run loop in turn, each timed on its own:
  - split:   the line splitter and the envelopes (tetrapipe.sources);
  - process: Processor.process (decode, classify, tag, summaries, render), and, measured beside
             it on the same lines (not part of the total): `bound`, the nesting-depth bound;
             `decode`, the lean msgspec decode alone; `floor`, msgspec's decode into a one-field
             struct (what benchmarks/throughput.py's floor pays per line);
  - stats:   Stats.count_batch and count_sent;
  - format:  the stdout format's one join for the batch;
  - free:    releasing the batch (its envelopes, decoded views, lines, the output).
Printed: µs per event per stage, best of the rounds (the least disturbed by other load on a shared
machine), and the total.  A profile for choosing what to work on, not a throughput figure: the
start-up, the reader and writer threads and the event loop are not in it (throughput.py has those).

`--peers SNAPSHOT` (a file from `benchmarks/peers.py --write-snapshot DIR`): instead, the process,
format and free stages only (the stages a peer resolver touches), every read through each side in turn
(`benchmarks/peer_cost.py`'s sides), with no resolver, with learning alone, with the snapshot in the API
index (learning off), and with both — each resolver built once before the rounds (its load is start-up,
not a per-event cost), the learned index carried over from round to round as in a long run.  Printed:
the thread CPU time per event (median and best of the rounds) and the difference from no resolver,
which is the resolver's per-event cost (peer_cost.py also gives its share of a whole run's time).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from itertools import repeat
from operator import sub
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.mixes import MIXES, write_corpus  # noqa: E402
from benchmarks.peer_cost import Side, per_event_us  # noqa: E402
from tetrapipe.event.decode import LineDecoder, _lean  # noqa: E402
from tetrapipe.formats.tetrapipe import TetrapipeFormat  # noqa: E402
from tetrapipe.pipeline.processor import Processor  # noqa: E402
from tetrapipe.pipeline.stats import Stats  # noqa: E402
from tetrapipe.rules.library import load_library  # noqa: E402
from tetrapipe.sources.stream import StdinSource  # noqa: E402
from tetrapipe.transforms.classify import Classifier  # noqa: E402
from tetrapipe.transforms.peers import PeerConfig, PeerResolver  # noqa: E402
from tetrapipe.transforms.tag import Tagger  # noqa: E402

STAGES = ("split", "process", "stats", "format", "free")
BESIDE = ("bound", "decode", "floor")


class _Min(msgspec.Struct):
    time: str | None = None


_floor = msgspec.json.Decoder(_Min).decode
_replace = bytes.replace


def one_round(chunks: list[bytes]) -> tuple[dict[str, float], int]:
    """Seconds per stage over the corpus, and the number of lines."""
    source = StdinSource()
    processor = Processor(Tagger(load_library()),
                          Classifier(pod_cidrs=["10.244.0.0/16"], service_cidrs=["10.96.0.0/12"]), LineDecoder())
    stats, fmt, clock = Stats(), TetrapipeFormat(), time.perf_counter
    spent = dict.fromkeys(STAGES + BESIDE, 0.0)
    for chunk in chunks:
        t0 = clock()
        oversized = source.splitter.oversized
        lines = source.splitter.feed(chunk)
        batch = source._batch(lines, len(chunk), oversized)
        t1 = clock()
        max(map(sub, map(len, lines), map(len, map(_replace, map(_replace, lines, repeat(b"{"), repeat(b"")),
                                                   repeat(b"["), repeat(b"")))))
        t2 = clock()
        list(map(_lean.decode, lines))
        t3 = clock()
        list(map(_floor, lines))
        t4 = clock()
        processor.process(batch)
        t5 = clock()
        stats.count_batch(batch)
        stats.count_sent("stdout", batch.good)
        t6 = clock()
        out = fmt.lines(batch.good)
        t7 = clock()
        del batch, lines, out
        t8 = clock()
        for name, seconds in zip(("split", "bound", "decode", "floor", "process", "stats", "format", "free"),
                                 (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6, t8 - t7),
                                 strict=True):
            spent[name] += seconds
    return spent, source._line


def compare_peers(chunks: list[bytes], snapshot: str, rounds: int) -> None:
    snap = {"kubernetes": False, "snapshot": snapshot}
    tagger = Tagger(load_library())
    sides = {"no resolver": Side(tagger, None), "learning": Side(tagger, PeerResolver(PeerConfig(kubernetes=False))),
             "snapshot": Side(tagger, PeerResolver(PeerConfig(learn=False, **snap))),
             "snapshot+learning": Side(tagger, PeerResolver(PeerConfig(**snap)))}
    tune()
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(rounds):
        for name, us in per_event_us(sides, chunks).items():
            times[name].append(us)
    base, best = statistics.median(times["no resolver"]), min(times["no resolver"])
    print(f"process + format + free, µs/event (thread CPU), {rounds} rounds, every read through each side:")
    for name, xs in times.items():
        med = statistics.median(xs)
        print(f"  {name:18s} median {med:6.2f} ({med - base:+.2f})   best {min(xs):6.2f} ({min(xs) - best:+.2f})")


def tune() -> None:
    gc.collect()  # as tetrapipe.cli.run.tune_gc does at start-up
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mix", choices=sorted(MIXES), default="default")
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peers", metavar="SNAPSHOT", help="compare peer resolvers instead (see above)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "events.jsonl"
        write_corpus(corpus, args.events, args.mix)
        data = corpus.read_bytes()
    chunks = [data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20)]
    if args.peers:
        compare_peers(chunks, args.peers, args.rounds)
        return 0
    tune()
    best: dict[str, float] = {}
    lines = 0
    for _ in range(args.rounds):
        spent, lines = one_round(chunks)
        best = {k: min(v, best.get(k, v)) for k, v in spent.items()}
    per = {k: v / lines * 1e6 for k, v in best.items()}
    print(f"mix={args.mix}, {lines} events, best of {args.rounds} rounds, µs/event:")
    print("  " + "  ".join(f"{k} {per[k]:.2f}" for k in STAGES) + f"  | total {sum(per[k] for k in STAGES):.2f}")
    print("  beside process: " + "  ".join(f"{k} {per[k]:.2f}" for k in BESIDE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
