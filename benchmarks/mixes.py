"""The event mixes the benchmarks run on (weights of `tests.support.synth` scenarios), and what a corpus holds.

- `default`: synth's own mix (about a third of the events tagged);
- `production`: mostly ordinary execs/exits, ~6% of events in a category: closer to a real node's export;
- `tag-heavy`: the scenarios the shipped library tags weighted up until about half the events are
  tagged, every category present (what `describe` reports, measured with the shipped library).
"""

from __future__ import annotations

import sys
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import synth  # noqa: E402

PRODUCTION_MIX = {name: (weight if name in ("exec", "exit") else weight / 8)
                  for name, weight in synth.SCENARIOS.items()}
PRODUCTION_MIX["exec"], PRODUCTION_MIX["exit"] = 0.62, 0.31
# Scenarios whose events the shipped library tags (near-misses excluded): weighted ×2.2 (egress ×1.6,
# not every destination is tagged), about half the events end tagged.
_TAGGING = {"ebpf": 2.2, "kmod": 2.2, "library": 2.2, "tmp_exec": 2.2, "sudo": 2.2, "suid": 2.2,
            "setuid": 2.2, "ssh": 2.2, "egress": 1.6, "egress_sockaddr": 1.6}
TAG_HEAVY_MIX = {name: weight * _TAGGING.get(name, 1.0) for name, weight in synth.SCENARIOS.items()}
MIXES: dict[str, Mapping[str, float] | None] = {"default": None, "production": PRODUCTION_MIX,
                                                 "tag-heavy": TAG_HEAVY_MIX}


def write_corpus(path: Path, events: int, mix: str, seed: int = 42) -> None:
    with path.open("wb") as out:
        for line in synth.generate(events, seed=seed, mix=MIXES[mix]):
            out.write(line + b"\n")


def own_source(line: bytes) -> bytes:
    """`line` with each pod's connections coming from addresses of the pod's own.

    The generator draws a connection's source address (`sock_arg.saddr`) at random, whichever pod
    connects: every pod seems to hop addresses and to share them with the others, the worst case of
    the peer resolver's learning. A real pod connects from its pod IP. Here each pod gets one IPv4
    (10.244.x.y), one IPv6 and one IPv4-mapped address from a hash of its namespace/name, used in
    place of any source address of that family but loopback; lines of no pod are returned unchanged."""
    if b'"sock_arg"' not in line or b'"pod"' not in line:
        return line
    event = orjson.loads(line)
    body = event.get("process_kprobe") or {}
    pod = (body.get("process") or {}).get("pod") or {}
    if not pod.get("name"):
        return line
    digest = zlib.crc32(f"{pod.get('namespace')}/{pod['name']}".encode())
    for arg in body.get("args") or ():
        sock = arg.get("sock_arg") if type(arg) is dict else None
        if type(sock) is dict and type(sock.get("saddr")) is str:
            sock["saddr"] = _own_address(sock["saddr"], digest >> 8 & 0xFF, digest & 0xFF or 1)
    return orjson.dumps(event)


def _own_address(saddr: str, high: int, low: int) -> str:
    if saddr.startswith("127.") or saddr == "::1":
        return saddr
    if saddr.startswith("::ffff:"):
        return f"::ffff:10.244.{high}.{low}"
    return f"fd00:10:244:{high:x}::{low:x}" if ":" in saddr else f"10.244.{high}.{low}"


def describe(lines: Iterable[bytes], sample: int = 20_000) -> str:
    """The tagged share and the categories of (the first `sample` events of) a corpus, tagged in-process."""
    from tetrapipe.event.decode import LineDecoder
    from tetrapipe.rules.library import load_library
    from tetrapipe.transforms.classify import Classifier
    from tetrapipe.transforms.tag import Tagger

    tagger = Tagger(load_library())
    classify = Classifier(pod_cidrs=["10.244.0.0/16"], service_cidrs=["10.96.0.0/12"]).classify
    decoder = LineDecoder()
    seen = tagged = 0
    categories: Counter[str] = Counter()
    for line in lines:
        if seen == sample:
            break
        decoded = decoder.decode(line)
        if decoded is None:
            continue
        seen += 1
        if decoded.vbody is not None and type(decoded.vbody) is not dict:
            decoded.egress = classify(decoded.vbody)
        cats = tagger.tag(decoded).categories
        tagged += bool(cats)
        categories.update(cats)
    missing = sorted(tagger.ids - set(categories))
    return (f"{tagged / max(seen, 1):.0%} of {seen} events tagged, {len(categories)}/{len(tagger.ids)} categories"
            + (f" (missing: {', '.join(missing)})" if missing else ""))
