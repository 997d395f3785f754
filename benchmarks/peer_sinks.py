"""What the peer costs in the sinks: Kafka routing key and headers, OTLP attributes (and `{ocsf_class}`).

Usage:  .venv/bin/python benchmarks/peer_sinks.py [--events 40000] [--rounds 7]
        (also: .venv/bin/python benchmarks/peers.py --sinks)

Corpus, connection-heavy: 80 % tcp_connect kprobes (tests.k8s.objects.tetragon_connect) to addresses
outside the pod/service CIDRs (so they are tagged `egress`), 20 % process_exec (tests.support.synth).
Of the connections, 75 % go to 2,000 addresses a static peers file names (pods and services in 8
namespaces), 25 % to addresses nobody knows.  The corpus is processed once without a peers config and once
with the static file (the resolver's own cost is benchmarks/peers.py's and throughput.py's business); then,
per event, only the sink side is timed, in interleaved rounds (rotating order), CPU time of this thread:
  - kafka: `Router.route` + `key` + `headers` (what KafkaSink.write does per event before batching),
    template `t.{group}.{category}`: without peers (before) / with peers (+ the tetrapipe-peer headers);
    template `t.{peer_namespace}.{category}` with peers (+ the routing key);
  - otlp: `LogMapper.record` + `ProtobufEncoder.record`, without / with peers (+ tetrapipe.peer.* attributes);
  - ocsf / ecs: `Router.route` by `t.{group}` / by `t.{ocsf_class}` / `t.{ecs_category}` (+ reading the
    class or category back from the record; the records are rendered once, beforehand: rendering is the
    same with either template, and its ~20 µs would drown the difference in noise).
Prints the median µs per event of each variant and the ratio to its "before".
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.k8s.objects import tetragon_connect  # noqa: E402
from tests.support.synth import generate  # noqa: E402
from tetrapipe.config.root import Config, build_classifier, build_tagger  # noqa: E402
from tetrapipe.event.decode import LineDecoder  # noqa: E402
from tetrapipe.event.envelope import Batch, Envelope  # noqa: E402
from tetrapipe.formats import build_format  # noqa: E402
from tetrapipe.pipeline.processor import Processor  # noqa: E402
from tetrapipe.sinks.kafka.routing import Router  # noqa: E402
from tetrapipe.sinks.otlp.encode import ProtobufEncoder  # noqa: E402
from tetrapipe.sinks.otlp.mapping import LogMapper  # noqa: E402
from tetrapipe.transforms.peers import PeerConfig, PeerResolver  # noqa: E402

NAMESPACES = [f"team-{i}" for i in range(8)]


def static_peers(path: Path) -> list[str]:
    """A static file of 2,000 single addresses (pods and services); returns the addresses."""
    lines, addrs = ["peers:"], []
    for i in range(2000):
        addr = f"10.{40 + i // 65536}.{i // 256 % 256}.{i % 256}"
        kind = "pod" if i % 3 else "service"
        lines.append(f"  - {{cidr: {addr}/32, name: {kind}-{i}, kind: {kind}, namespace: {NAMESPACES[i % 8]}}}")
        addrs.append(addr)
    path.write_text("\n".join(lines) + "\n")
    return addrs


def corpus(count: int, known: list[str]) -> list[bytes]:
    rng = random.Random(7)
    execs = generate(count, seed=3, mix={"exec": 1})
    out = []
    for i in range(count):
        if rng.random() < 0.2:
            out.append(next(execs))
            continue
        daddr = rng.choice(known) if rng.random() < 0.75 else f"10.90.{rng.randrange(256)}.{rng.randrange(256)}"
        out.append(orjson.dumps(tetragon_connect(f"ns-{i % 20}", f"client-{i % 500}", saddr="10.244.0.5",
                                                 daddr=daddr, dport=5432, workload="client")))
    return out


def processed(processor: Processor, lines: list[bytes]) -> list[Envelope]:
    batch = Batch([Envelope(line, i) for i, line in enumerate(lines)])
    processor.process(batch)
    return [e for e in batch.envelopes if e.decoded is not None]


def kafka(router: Router) -> Callable[[list[Envelope]], None]:
    route, key, headers = router.route, router.key, router.headers

    def run(envs: list[Envelope]) -> None:
        for env in envs:
            r = route(env)
            key(env)
            headers(env, r)
    return run


def otlp() -> Callable[[list[Envelope]], None]:
    mapper, encoder = LogMapper(), ProtobufEncoder()

    def run(envs: list[Envelope]) -> None:
        for env in envs:
            encoder.record(mapper.record(env))
    return run


def formatted(name: str, router: Router, groups: dict[str, str], envs: list[Envelope]
              ) -> Callable[[list[Envelope]], None]:
    """Routing only: the records are rendered once, beforehand (rendering is the same with either template)."""
    fmt = build_format(name, category_groups=groups)
    records = [fmt.record(env) for env in envs]
    route, by_record = router.route, router.needs_record

    def run(envs: list[Envelope]) -> None:
        for env, record in zip(envs, records, strict=False):  # the warm-up passes a prefix
            route(env, record if by_record else None)
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=40_000)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args(argv)
    config = Config()
    tagger = build_tagger(config.library)
    classifier = build_classifier(config.egress, ["10.244.0.0/16"], ["10.96.0.0/12"])
    with tempfile.TemporaryDirectory() as tmp:
        known = static_peers(Path(tmp) / "peers.yaml")
        lines = corpus(a.events, known)
        plain = processed(Processor(tagger, classifier, LineDecoder()), lines)
        resolver = PeerResolver(PeerConfig(kubernetes=False, learn=False, static_file=str(Path(tmp) / "peers.yaml")))
        peered = processed(Processor(tagger, classifier, LineDecoder(), peers=resolver), lines)
    with_peer = sum(1 for e in peered if e.decoded is not None and e.decoded.peer is not None)
    groups = dict(tagger.groups)
    by_group = Router("t.{group}.{category}", groups, default_topic="t.other")
    by_namespace = Router("t.{peer_namespace}.{category}", groups, default_topic="t.other",
                          peer_namespaces=NAMESPACES)
    variants: dict[str, tuple[Callable[[list[Envelope]], None], list[Envelope], str | None]] = {
        "kafka, no peers": (kafka(by_group), plain, None),
        "kafka, peers (headers)": (kafka(by_group), peered, "kafka, no peers"),
        "kafka, {peer_namespace}": (kafka(by_namespace), peered, "kafka, no peers"),
        "otlp, no peers": (otlp(), plain, None),
        "otlp, peers": (otlp(), peered, "otlp, no peers"),
        "ocsf route, t.{group}": (formatted("ocsf", Router("t.{group}", groups, record_format="ocsf"), groups,
                                            plain), plain, None),
        "ocsf route, t.{ocsf_class}": (formatted("ocsf", Router("t.{ocsf_class}", groups, record_format="ocsf"),
                                                 groups, plain), plain, "ocsf route, t.{group}"),
        "ecs route, t.{group}": (formatted("ecs", Router("t.{group}", groups, record_format="ecs"), groups, plain),
                                 plain, None),
        "ecs route, t.{ecs_category}": (formatted("ecs", Router("t.{ecs_category}", groups, record_format="ecs"),
                                                  groups, plain), plain, "ecs route, t.{group}"),
    }
    for fn, envs, _ in variants.values():  # warm the memos
        fn(envs[:2000])
    times: dict[str, list[float]] = {k: [] for k in variants}
    gc.collect()
    gc.disable()
    try:
        for r in range(a.rounds):
            names = list(variants)
            names = names[r % len(names):] + names[:r % len(names)]  # interleaved, rotating the order
            for name in names:
                fn, envs, _ = variants[name]
                t0 = time.thread_time_ns()
                fn(envs)
                times[name].append((time.thread_time_ns() - t0) / len(envs) / 1000)
    finally:
        gc.enable()
    print(f"{len(plain)} events ({with_peer} with a peer), {a.rounds} interleaved rounds, median µs/event:")
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, (_, _, base) in variants.items():
        ratio = f"  x{med[name] / med[base]:.3f} vs '{base}' (+{med[name] - med[base]:.3f} µs)" if base else ""
        print(f"  {name:30s} {med[name]:7.3f}{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
