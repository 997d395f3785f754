"""ECS field sets from a typed process (`_typed.TProcess`), and the dispatch between it and a plain dict.

Each function gives exactly what its namesake in `ecs_objects` gives for the same process as a dict
(the same memos); `ecs.to_ecs` calls the dispatchers (`process`, `container_and_orchestrator`,
`process_extras`), which take either form.
"""

from __future__ import annotations

from typing import Any

from tetrapipe.formats import ecs_objects as obj
from tetrapipe.formats._common import basename, memo_put
from tetrapipe.formats._typed import TPod, TProcess, extras

_MAPPED: tuple[dict[str, tuple[Any, ...]], dict[str, tuple[Any, ...]]] = ({}, {})  # without/with parent


def process(p: Any, parent: Any = None) -> dict[str, Any]:
    """`ecs_objects.process`; what the same process and parent objects gave (`_typed` memoises them)."""
    if type(p) is not TProcess:
        return obj.process(p, parent)
    memo = _MAPPED[parent is not None]
    hit = memo.get(p.exec_id)  # type: ignore[arg-type]
    if hit is not None and hit[0] is p and hit[1] is parent:
        return hit[2].copy()
    out = _process(p, parent)
    if p.exec_id:
        memo_put(memo, p.exec_id, (p, parent, out))
    return out.copy()


def _process(p: TProcess, parent: Any) -> dict[str, Any]:
    out = dict(_core(p))
    cap = p.cap
    if type(cap) is dict:
        caps = {k: [obj._cap(c) for c in cap[k]] for k in ("effective", "permitted") if type(cap.get(k)) is list}
        if caps:
            out["thread"] = {**out.get("thread", {}), "capabilities": caps}
    creds = p.process_credentials
    if type(creds) is dict:
        obj._credentials(out, creds)
    pod = p.pod
    if pod is not None:
        c = pod.container
        if c is not None and c.pid is not None:
            out["vpid"] = c.pid
    if type(parent) is TProcess:
        out["parent"] = _core(parent)
    elif type(parent) is dict:
        out["parent"] = obj._core(parent)
    return out


def process_extras(p: Any, names: tuple[str, ...]) -> dict[str, Any]:
    if type(p) is TProcess:
        return extras(p, names)
    return {k: p[k] for k in names if k in p}


def _core(p: TProcess) -> dict[str, Any]:
    """`ecs_objects._core` of a typed process (the same memo)."""
    exec_id = p.exec_id
    key = (exec_id, p.pid, p.start_time, p.binary, p.arguments, p.tid, p.cwd, p.uid)
    memo = bool(exec_id) and p.pid is not None
    if memo:
        hit = obj._CORES.get(exec_id)
        if hit is not None and hit[0] == key and _same_int_types(hit[0], key):
            return hit[1]
    out: dict[str, Any] = {}
    if p.pid is not None:
        out["pid"] = p.pid
    if exec_id:
        out["entity_id"] = exec_id
    binary = p.binary
    if binary:
        out["executable"] = binary
        out["name"] = basename(binary)
        args = p.arguments
        if args:
            out["args"] = [binary, *args.split()]
            out["command_line"] = f"{binary} {args}"
        else:
            out["args"] = [binary]
            out["command_line"] = binary
        out["args_count"] = len(out["args"])
    if p.cwd:
        out["working_directory"] = p.cwd
    if obj.is_date(p.start_time):
        out["start"] = p.start_time
    if p.uid is not None:
        out["user"] = {"id": str(p.uid)}
    if p.tid is not None:
        out["thread"] = {"id": p.tid}
    if memo:
        memo_put(obj._CORES, exec_id, (key, out))
    return out


def _same_int_types(stored: tuple[Any, ...], key: tuple[Any, ...]) -> bool:
    """pid, tid and uid of a hit have the same types (the reference memo holds exact types only)."""
    return type(stored[1]) is type(key[1]) and type(stored[5]) is type(key[5]) and type(stored[7]) is type(key[7])


def container_and_orchestrator(doc: dict[str, Any], event: dict[str, Any], p: Any) -> str | None:
    if type(p) is not TProcess:
        return obj.container_and_orchestrator(doc, event, p)
    pod = p.pod
    cluster = event.get("cluster_name")
    if pod is None:
        key: Any = (cluster,)
    else:
        c, labels = pod.container, pod.pod_labels
        image = c.image if c is not None else None
        key = (cluster, pod.namespace, pod.name, pod.workload, pod.workload_kind,
               tuple(labels.items()) if labels is not None else None,
               (c.id, c.name) if c is not None else None,
               (image.name, image.id) if image is not None else None)
    try:
        hit = obj._PODS.get(key)
    except TypeError:
        hit = None
    if hit is None:  # a miss: the reference computes (and memoises) it from the same fields as dicts
        return obj.container_and_orchestrator(doc, event, {"pod": _pod_dict(pod)})
    container, orch, workload = hit
    if container:
        doc["container"] = container
    if orch:
        doc["orchestrator"] = orch
    return workload


def _pod_dict(pod: TPod | None) -> dict[str, Any] | None:
    if pod is None:
        return None
    c = pod.container
    container: dict[str, Any] | None = None
    if c is not None:
        container = {"id": c.id, "name": c.name}
        if c.image is not None:
            container["image"] = {"name": c.image.name, "id": c.image.id}
    return {"namespace": pod.namespace, "name": pod.name, "container": container, "pod_labels": pod.pod_labels,
            "workload": pod.workload, "workload_kind": pod.workload_kind}
