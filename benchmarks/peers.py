"""Peer resolver cost: lookup time per event, and the index's memory, on synthetic clusters.

Usage:  .venv/bin/python benchmarks/peers.py [--pods 10000] [--services 1000] [--lookups 200000] [--rounds 5]
        .venv/bin/python benchmarks/peers.py --memory --pods 100000 --services 10000
        .venv/bin/python benchmarks/peers.py --sinks [--events 40000] [--rounds 7]   # benchmarks/peer_sinks.py
        .venv/bin/python benchmarks/peers.py --write-config DIR [--pods 10000] [--services 1000]
        .venv/bin/python benchmarks/peers.py --write-snapshot DIR [--pods 10000] [--services 1000]

--write-config writes DIR/peers.yaml (a static file naming N pod addresses in 10.244/16 and M service addresses
in 10.96/12, where benchmarks/throughput.py's corpus connects: the "index of 10k pods and 1k services loaded from
a file" of issue 14) and DIR/tetrapipe.yaml using it, for a whole-run measurement with the resolver on, e.g.
    .venv/bin/python benchmarks/compare_trees.py . . --mix default --rounds 11 \
        --before-flag=--no-peers-learn --after-flag=--config=DIR/tetrapipe.yaml

--write-snapshot writes DIR/snapshot.json instead: the same addresses as a Kubernetes List (`peers.snapshot`,
what `kubectl get pods,services,endpointslices,nodes -A -o json` writes): N pods in Deployments of 10 (owner
ReplicaSet, pod-template-hash), M services each with an EndpointSlice of one Deployment's pods, 1 node per 100
pods in 172.16/12 (also where the corpus connects) — the API index the issue means — and DIR/tetrapipe.yaml
using it (`peers: {snapshot: ...}`); prints the seconds a resolver takes to load it.

Lookup: an index of N pods (Deployments of 10 pods, 3 labels + pod-template-hash, owner references, two IPs
for 1 pod in 10), M services (each with an EndpointSlice of its workload's pods), 1 node per 100 pods, and
a static file of 50 prefixes is filled through the same record functions the API watch uses. Destinations
are drawn at random: 40 % service IPs, 30 % pod IPs, 10 % node IPs, 20 % addresses nobody knows (public,
~60k distinct, so the static file's memo misses too). Measured:
  - ``resolve``: destination + event time, over ``--lookups`` random destinations (fresh string objects,
    as a decoder makes them);
  - ``resolve_event``: the whole per-event call (source address from sock_arg, destination and source
    lookups, learning the source). An event being processed was just decoded, so it is in the CPU cache
    while the index is accessed at random: 256 prebuilt events are reused, each call first writing a
    random (destination, source address, own pod) into one; the loop doing only those writes is
    measured too ("event setup") and subtracted;
  - for scale, ``orjson.loads`` of the same events' JSON lines (the one decode every event gets anyway).
Times are CPU time of the benchmark's thread (``time.thread_time_ns``), so that other work on a shared
machine does not count (it still costs caches); prints the median ns per call over the rounds and the share
of a 20 µs per-event budget.

Memory: the same index built in a fresh process; prints its RSS before and after (the input objects are
built one at a time and dropped, so the delta is the index), and per-object cost. Run on one core with
`taskset -c 0` for steadier numbers.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.k8s.objects import endpoint_slice, node, pod, service, tetragon_connect  # noqa: E402
from tetrapipe.transforms.peer_model import node_record, pod_record, service_record, slice_record  # noqa: E402
from tetrapipe.transforms.peers import PeerConfig, PeerResolver  # noqa: E402

CREATED = "2024-05-14T08:00:00Z"
EVENT_TIME = "2024-05-14T09:00:10.123456789Z"
BUDGET_NS = 20_000


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def ip(prefix: str, n: int) -> str:
    return f"{prefix}.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


def uid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128)))  # 36 characters, as the API server's


def build(pods: int, services: int, static_file: str | None) -> tuple[PeerResolver, dict[str, list[str]]]:
    """Fill a resolver's index like the API watch would (every pod watched: no EndpointSlice targets kept);
    returns it and the addresses by kind."""
    rng = random.Random(0)
    r = PeerResolver(PeerConfig(static_file=static_file))
    r.api.backends.targets = False
    addrs: dict[str, list[str]] = {"pod": [], "pod_name": [], "service": [], "node": []}
    nodes = max(1, pods // 100)
    for n in range(nodes):
        addrs["node"].append(ip("172", 16 * 65536 + n))
        r.api.upsert_named("node", node_record(node(f"node-{n}", internal_ip=addrs["node"][-1], uid=uid(rng),
                                                    created=CREATED), r.labels), live=False)
    deployments = max(1, pods // 10)
    for i in range(pods):
        d = i % deployments
        name, tmpl = f"app-{d}", f"{d:08x}"[-8:]
        ips: Any = ip("10", 244 * 65536 + i)
        if i % 10 == 0:
            ips = (ips, f"fd00:10:244::{i // 65536:x}:{i % 65536:x}")
        obj = pod(f"{name}-{tmpl}-{i:05x}", f"ns-{d % 50}", owner=("ReplicaSet", f"{name}-{tmpl}"),
                  labels={"app": name, "app.kubernetes.io/name": name, "tier": "backend", "pod-template-hash": tmpl},
                  node=f"node-{i % nodes}", uid=uid(rng), created=CREATED, ip=ips)
        r.api.upsert_pod(pod_record(obj, r.labels), live=False)
        addrs["pod"].append(ips if isinstance(ips, str) else ips[0])
        addrs["pod_name"].append(f"ns-{d % 50}/{obj['metadata']['name']}")
    for s in range(services):
        d = s % deployments
        sip = ip("10", 96 * 65536 + s + 10)
        r.api.upsert_named("service", service_record(service(f"svc-{s}", f"ns-{d % 50}", cluster_ip=sip,
                                                             labels={"app": f"app-{d}"}, uid=uid(rng),
                                                             created=CREATED), r.labels), live=False)
        backends = {addrs["pod"][i]: f"app-{d}-{i}" for i in range(d, pods, deployments)}
        r.api.upsert_slice(slice_record(endpoint_slice(f"svc-{s}-x", f"svc-{s}", f"ns-{d % 50}", targets=backends,
                                                       uid=uid(rng))))
        addrs["service"].append(sip)
    return r, addrs


def static_file(directory: str) -> str:
    path = Path(directory) / "static.yaml"
    path.write_text("peers:\n" + "".join(f"  - {{cidr: 192.0.{i}.0/24, name: partner-{i}}}\n" for i in range(50)))
    return str(path)


def destinations(addrs: dict[str, list[str]], count: int, rng: random.Random) -> list[str]:
    out = []
    for _ in range(count):
        x = rng.random()
        kind = "service" if x < 0.4 else "pod" if x < 0.7 else "node" if x < 0.8 else None
        daddr = rng.choice(addrs[kind]) if kind else f"{rng.randrange(1, 223)}.{rng.randrange(256)}.7.9"
        out.append("".join(list(daddr)))  # a new str object: its hash is not cached yet
    return out


def connections(addrs: dict[str, list[str]], count: int, rng: random.Random) -> list[tuple[str, str, str, str]]:
    """(destination, source address, own pod namespace, own pod name): the source is the pod's own address."""
    out = []
    for daddr in destinations(addrs, count, rng):
        i = rng.randrange(len(addrs["pod"]))
        ns, name = addrs["pod_name"][i].split("/")
        out.append((daddr, "".join(list(addrs["pod"][i])), ns, name))
    return out


def ring_events(count: int) -> list[tuple[dict[str, Any], Any, Any, Any]]:
    """(event, kprobe body, sock_arg, process.pod) of ``count`` reusable events."""
    out = []
    for _ in range(count):
        ev = tetragon_connect("ns", "pod", saddr="10.0.0.1", daddr="10.0.0.2", time=EVENT_TIME, workload="client")
        body = ev["process_kprobe"]
        out.append((ev, body, body["args"][0]["sock_arg"], body["process"]["pod"]))
    return out


def bench_lookup(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        r, addrs = build(args.pods, args.services, static_file(tmp))
        print(f"index: {args.pods} pods, {args.services} services built in {time.perf_counter() - t0:.1f} s; "
              f"{r.stats()['api']}")
        rng = random.Random(1)
        ring = ring_events(256)
        lines = [orjson.dumps(ev) for ev, _b, _s, _p in ring] * max(1, args.lookups // len(ring))
        gc.collect()
        gc.freeze()
        results: dict[str, list[float]] = {"resolve": [], "resolve_event": [], "event setup": [], "loop": [],
                                           "orjson.loads": []}
        for _ in range(args.rounds):
            dests = destinations(addrs, args.lookups, rng)  # fresh each round
            conns = connections(addrs, args.lookups, rng)
            t = time.thread_time_ns()
            for daddr in dests:
                r.resolve(daddr, 443, time=EVENT_TIME)
            results["resolve"].append((time.thread_time_ns() - t) / len(dests))
            t = time.thread_time_ns()
            for i, (daddr, saddr, ns, name) in enumerate(conns):
                ev, body, sock, pod = ring[i & 255]
                sock["saddr"], pod["namespace"], pod["name"] = saddr, ns, name
                r.resolve_event(ev, daddr, 443, pod, body)
            results["resolve_event"].append((time.thread_time_ns() - t) / len(conns))
            t = time.thread_time_ns()
            for i, (_daddr, saddr, ns, name) in enumerate(conns):
                ev, body, sock, pod = ring[i & 255]
                sock["saddr"], pod["namespace"], pod["name"] = saddr, ns, name
            results["event setup"].append((time.thread_time_ns() - t) / len(conns))
            t = time.thread_time_ns()
            for _daddr in dests:  # the empty loop
                pass
            results["loop"].append((time.thread_time_ns() - t) / len(dests))
            t = time.thread_time_ns()
            for line in lines:
                orjson.loads(line)
            results["orjson.loads"].append((time.thread_time_ns() - t) / len(lines))
        stats = r.stats()
        print(f"resolved {stats['resolved']} unknown {stats['unknown']} learned {stats['learned']}")
        results["resolve_event"] = [a - b for a, b in zip(results["resolve_event"], results["event setup"],
                                                              strict=True)]
        results["resolve"] = [a - b for a, b in zip(results["resolve"], results["loop"], strict=True)]
        for name, values in results.items():
            med = statistics.median(values)
            note = " (minus event setup)" if name == "resolve_event" else " (minus loop)" if name == "resolve" else ""
            print(f"{name:14s} median {med:7.0f} ns/call  (min {min(values):.0f}, max {max(values):.0f})"
                  f"  = {100 * med / BUDGET_NS:4.1f} % of a 20 µs event{note}")


def bench_memory(args: argparse.Namespace) -> None:
    gc.collect()
    before = rss_kib()
    t0 = time.perf_counter()
    r, addrs = build(args.pods, args.services, None)
    del addrs
    gc.collect()
    after = rss_kib()
    objects = args.pods + args.services + max(1, args.pods // 100)
    print(f"index of {args.pods} pods, {args.services} services (+ their EndpointSlices), {args.pods // 100} nodes: "
          f"built in {time.perf_counter() - t0:.1f} s; {r.stats()['api']}")
    print(f"RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB: index {(after - before) / 1024:.1f} MiB, "
          f"{(after - before) * 1024 / objects:.0f} bytes per object")


def write_config(directory: str, pods: int, services: int) -> None:
    """A static peers file of `pods` pod and `services` service addresses, and a config using it (see the docstring)."""
    rng = random.Random(0)
    pod_ips = rng.sample([f"10.244.{a}.{b}" for a in range(1, 255) for b in range(1, 255)], pods)
    service_ips = rng.sample([f"10.96.{a}.{b}" for a in range(1, 255) for b in range(1, 255)], services)
    entries = [{"cidr": ip_, "name": f"pod-{n}", "kind": "pod", "namespace": f"ns-{n % 50}"}
               for n, ip_ in enumerate(pod_ips)]
    entries += [{"cidr": ip_, "name": f"svc-{n}", "kind": "service", "namespace": f"ns-{n % 50}"}
                for n, ip_ in enumerate(service_ips)]
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    (out / "peers.yaml").write_text(orjson.dumps({"peers": entries}).decode())  # JSON is YAML
    (out / "tetrapipe.yaml").write_text(orjson.dumps({"peers": {"static_file": str(out / "peers.yaml")}}).decode())
    print(f"wrote {out / 'peers.yaml'} ({len(entries)} entries) and {out / 'tetrapipe.yaml'}")


def write_snapshot(directory: str, pods: int, services: int) -> None:
    """A Kubernetes List of pods, services, EndpointSlices and nodes at the corpus's addresses (see the docstring)."""
    rng = random.Random(0)
    pod_ips = rng.sample([f"10.244.{a}.{b}" for a in range(1, 255) for b in range(1, 255)], pods)
    service_ips = rng.sample([f"10.96.{a}.{b}" for a in range(1, 255) for b in range(1, 255)], services)
    node_ips = rng.sample([f"172.{c}.{a}.{b}" for c in range(16, 32) for a in range(1, 255) for b in (1, 2)],
                          max(1, pods // 100))
    items = [node(f"node-{n}", internal_ip=a, uid=uid(rng), created=CREATED) for n, a in enumerate(node_ips)]
    deployments = max(1, pods // 10)
    members: dict[int, dict[str, str | None]] = {}
    for i, pip in enumerate(pod_ips):
        d = i % deployments
        name, tmpl, ns = f"app-{d}", f"{d:08x}"[-8:], f"ns-{d % 50}"
        pname = f"{name}-{tmpl}-{i:05x}"
        items.append(pod(pname, ns, owner=("ReplicaSet", f"{name}-{tmpl}"), node=f"node-{i % len(node_ips)}",
                         labels={"app": name, "app.kubernetes.io/name": name, "pod-template-hash": tmpl},
                         uid=uid(rng), created=CREATED, ip=pip, ports=(8080,)))
        members.setdefault(d, {})[pip] = pname
    items.append(service("kubernetes", "default", cluster_ip="10.96.0.1", uid=uid(rng), created=CREATED, port=443))
    for s, sip in enumerate(service_ips):
        d = s % deployments
        items.append(service(f"svc-{s}", f"ns-{d % 50}", cluster_ip=sip, selector={"app": f"app-{d}"},
                             labels={"app": f"app-{d}"}, uid=uid(rng), created=CREATED))
        items.append(endpoint_slice(f"svc-{s}-{d:05x}", f"svc-{s}", f"ns-{d % 50}", targets=members[d], uid=uid(rng)))
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "snapshot.json"
    path.write_bytes(orjson.dumps({"apiVersion": "v1", "kind": "List", "items": items,
                                   "metadata": {"resourceVersion": ""}}))
    (out / "tetrapipe.yaml").write_text(orjson.dumps({"peers": {"snapshot": str(path)}}).decode())
    loads = []
    for _ in range(5):
        start = time.perf_counter()
        PeerResolver(PeerConfig(kubernetes=False, learn=False, snapshot=str(path)))
        loads.append(time.perf_counter() - start)
    print(f"wrote {path} ({len(items)} items, {path.stat().st_size / 2**20:.1f} MiB) and {out / 'tetrapipe.yaml'}; "
          f"loading it: {statistics.median(loads):.3f} s (median of 5, wall)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pods", type=int, default=10_000)
    ap.add_argument("--services", type=int, default=1_000)
    ap.add_argument("--lookups", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--memory", action="store_true", help="measure the index's memory instead of lookups")
    ap.add_argument("--write-config", metavar="DIR", help="write a static index and a config using it, then exit")
    ap.add_argument("--write-snapshot", metavar="DIR", help="write a Kubernetes List snapshot and a config using it")
    ap.add_argument("--sinks", action="store_true", help="the peer's cost in the Kafka and OTLP sinks "
                                                         "(benchmarks/peer_sinks.py; its own flags follow)")
    args, rest = ap.parse_known_args()
    if args.sinks:
        from peer_sinks import main as sinks_main  # benchmarks/ is on sys.path when run as a script

        return sinks_main(rest + (["--rounds", str(args.rounds)] if "--rounds" in sys.argv else []))
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.write_config:
        write_config(args.write_config, args.pods, args.services)
        return 0
    if args.write_snapshot:
        write_snapshot(args.write_snapshot, args.pods, args.services)
        return 0
    (bench_memory if args.memory else bench_lookup)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
