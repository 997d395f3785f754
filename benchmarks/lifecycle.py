"""A corpus whose processes live across events, as on a real node: exec, then the process's other events, then its exit.

`tests.support.synth` gives every event a process (and parent) of its own, which no cache keyed by
process can use; on a node a process appears in its `process_exec`, in the hook/loader events it
causes while it runs, and in its `process_exit`, and a shell or a container runtime is the parent of
many execs.  `relive(lines)` rewrites synth's events (same events, same order, same types and hook
arguments) so that:

- each `process_exec` starts a process: it joins a pool of the last `live` processes (a bounded
  pool: the oldest ones stay alive, never exit, and stop appearing);
- a `process_exec`'s parent is, with probability `parent_reuse`, a process from the pool (and the
  child's `parent_exec_id` follows);
- every other event with a process (hooks, loader, uprobes, …) is, with probability `reuse`, an
  event of a random pool process: its `process`, `parent` and `node_name` become that process's;
- a `process_exit` is, with probability `reuse`, a pool process's exit (which then leaves the pool).

The processes stay whole objects copied from their exec (their pod, their credentials): only who
did what changes, so the categories an event gets can change too (a sudo-built hook event becomes
another process's).  `describe` says how many events carry a process seen earlier in the corpus.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

_PROCESS_TYPES = ("process_kprobe", "process_loader", "process_uprobe", "process_usdt", "process_tracepoint",
                  "process_lsm", "process_exit")


def relive(lines: Iterable[bytes], seed: int = 0, live: int = 500, reuse: float = 0.9,
           parent_reuse: float = 0.5) -> Iterator[bytes]:
    """synth's lines with processes that live across events (see the module docstring)."""
    r = random.Random(seed)
    pool: list[tuple[Any, Any, Any]] = []  # (node_name, process, parent)
    for line in lines:
        event = orjson.loads(line)
        etype = next((k for k in event if k.startswith("process_")), None)
        body = event.get(etype) if etype else None
        if type(body) is not dict or type(body.get("process")) is not dict:
            yield line
            continue
        if etype == "process_exec":
            if pool and r.random() < parent_reuse:
                node, parent, _ = pool[r.randrange(len(pool))]
                event["node_name"], body["parent"] = node, parent
                body["process"] = {**body["process"], "parent_exec_id": parent.get("exec_id")}
            pool.append((event.get("node_name"), body["process"], body.get("parent")))
            if len(pool) > live:
                pool.pop(0)
        elif etype in _PROCESS_TYPES and pool and r.random() < reuse:
            index = r.randrange(len(pool))
            node, process, parent = pool.pop(index) if etype == "process_exit" else pool[index]
            event["node_name"], body["process"] = node, process
            if parent is not None:
                body["parent"] = parent
            else:
                body.pop("parent", None)
        yield orjson.dumps(event)


def describe(corpus: Path) -> str:
    """How many of the corpus's events carry a process (exec_id) that an earlier event carried."""
    seen: set[str] = set()
    again = total = 0
    for line in corpus.read_bytes().splitlines():
        event = orjson.loads(line)
        body = next((v for k, v in event.items() if k.startswith("process_") and type(v) is dict), None)
        process = body.get("process") if body else None
        if type(process) is dict:
            total += 1
            exec_id = process.get("exec_id")
            again += exec_id in seen
            seen.add(exec_id)
    return f"{again / max(total, 1):.0%} of the events with a process carry one seen before"
