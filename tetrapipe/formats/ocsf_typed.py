"""OCSF objects from a typed process (`_typed.TProcess`), and the dispatch between it and a plain dict.

Each function here gives exactly what its namesake in `ocsf_objects` gives for the same process as
a dict (same memos, same objects); msgspec has checked the types, so the checks are `is None` and
truthiness only.  The builders and `ocsf.to_ocsf` call the dispatchers (`process`, `parent_process`,
`identified`, `k8s_tags`, `process_extras`), which take either form.
"""

from __future__ import annotations

from typing import Any

from tetrapipe.formats import ocsf_objects as obj
from tetrapipe.formats._common import basename, epoch_ms, memo_put, split_container_id, split_image
from tetrapipe.formats._typed import TContainer, TPod, TProcess, extras


def is_process(p: Any) -> bool:
    """Whether `p` is a process object in either form (a dict, or a typed one)."""
    return type(p) is dict or type(p) is TProcess


_MAPPED: tuple[dict[str, tuple[Any, ...]], dict[str, tuple[Any, ...]]] = ({}, {})  # without/with parent


def process(p: Any, parent: Any = None) -> dict[str, Any]:
    """`ocsf_objects.process`; a copy (callers add to it) of what the same process and parent objects gave."""
    if type(p) is not TProcess:
        return obj.process(p, parent)
    memo = _MAPPED[parent is not None]
    hit = memo.get(p.exec_id)  # type: ignore[arg-type]
    if hit is not None and hit[0] is p and hit[1] is parent:  # the same objects (`_typed` memoises them)
        return hit[2].copy()
    out = _process(p, parent)
    if p.exec_id:
        memo_put(memo, p.exec_id, (p, parent, out))
    return out.copy()


def _process(p: TProcess, parent: Any) -> dict[str, Any]:
    out = _core(p).copy()
    if p.tid is not None:
        out["tid"] = p.tid
    pod = p.pod
    if pod is not None:
        container = pod.container
        if container is not None:
            c = _container_of(container, pod)
            if c:
                out["container"] = c
            if container.pid is not None:
                out["namespace_pid"] = container.pid
    if type(parent) is TProcess:
        core = _core(parent)
        if "pid" in core or "uid" in core:
            out["parent_process"] = core
    elif type(parent) is dict:
        core = obj._process_core(parent)
        if "pid" in core or "uid" in core:
            out["parent_process"] = core
    return out


def parent_process(parent: Any) -> dict[str, Any] | None:
    if type(parent) is not TProcess:
        return obj.parent_process(parent)
    core = _core(parent)
    return core if "pid" in core or "uid" in core else None


def identified(p: Any) -> bool:
    if type(p) is TProcess:
        return p.pid is not None or bool(p.exec_id)
    return obj.identified(p)


def k8s_tags(event: dict[str, Any], p: Any) -> tuple[dict[str, str], ...]:
    if type(p) is not TProcess:
        return obj.k8s_tags(event, p)
    pod = p.pod
    cluster = event.get("cluster_name")
    key = (cluster,) if pod is None else (cluster, pod.namespace, pod.name, pod.workload, pod.workload_kind)
    try:
        hit = obj._PODS.get(key)
    except TypeError:  # a cluster name that is a list or an object: the reference path decides
        return obj.k8s_tags(event, {"pod": None})
    return hit if hit is not None else obj.k8s_tags(event, _pod_dict(pod))


def _pod_dict(pod: TPod | None) -> dict[str, Any]:
    """The fields `ocsf_objects.k8s_tags` reads, as a dict (a miss only: the result is memoised)."""
    if pod is None:
        return {}
    return {"pod": {"namespace": pod.namespace, "name": pod.name, "workload": pod.workload,
                    "workload_kind": pod.workload_kind}}


def process_extras(p: Any) -> dict[str, Any] | None:
    if type(p) is not TProcess:
        return obj.process_extras(p)
    return extras(p, obj._PROCESS_EXTRAS) or None


def _core(p: TProcess) -> dict[str, Any]:
    """`ocsf_objects._process_core` of a typed process (the same memo: equal inputs, equal objects)."""
    exec_id, pid, start, binary, args, cwd, uid = p.exec_id, p.pid, p.start_time, p.binary, p.arguments, p.cwd, p.uid
    memo = bool(exec_id) and pid is not None
    if memo:
        hit = obj._CORES.get(exec_id)
        if hit is not None and hit[0] == pid and hit[1] == start and hit[2] == binary and hit[3] == args \
                and hit[4] == cwd and hit[5] == uid and type(hit[5]) is type(uid) and type(hit[0]) is int:
            return hit[6]
    out: dict[str, Any] = {}
    if pid is not None:
        out["pid"] = pid
    if exec_id:
        out["uid"] = exec_id
    if binary:
        named = obj._FILES.get(binary)
        if named is None:
            name = basename(binary)
            named = (name, {"name": name, "path": binary, "type_id": obj.FILE_REGULAR})
            memo_put(obj._FILES, binary, named)
        out["name"], out["file"] = named
        out["cmd_line"] = f"{binary} {args}" if args else binary
    if cwd:
        out["working_directory"] = cwd
    v = epoch_ms(start)
    if v is not None:
        out["created_time"] = v
    if uid is not None:
        user = obj._USERS.get(uid)
        if user is None:
            user = {"uid": str(uid)}
            memo_put(obj._USERS, uid, user)
        out["user"] = user
    if memo:
        memo_put(obj._CORES, exec_id, (pid, start, binary, args, cwd, uid, out))
    return out


_TCONTAINERS: dict[str, tuple[Any, ...]] = {}  # container id -> (name, image, labels, object)


def _container_of(c: TContainer, pod: TPod) -> dict[str, Any]:
    cid = c.id
    if cid is None:
        return _container(c, pod)
    hit = _TCONTAINERS.get(cid)
    if hit is not None and hit[0] == c.name and hit[1] == c.image and hit[2] == pod.pod_labels:
        return hit[3]
    out = _container(c, pod)
    memo_put(_TCONTAINERS, cid, (c.name, c.image, pod.pod_labels, out))
    return out


def _container(c: TContainer, pod: TPod) -> dict[str, Any]:
    """`ocsf_objects._container` of a typed container."""
    out: dict[str, Any] = {}
    if c.id:
        out["uid"], runtime = split_container_id(c.id)
        if runtime:
            out["runtime"] = runtime
    if c.name:
        out["name"] = c.name
    if not out:
        return out
    image = c.image
    if image is not None:
        name, image_id = image.name, image.id
        img: dict[str, Any] = {}
        if name:
            repo, tag, _ = split_image(name)
            img["name"] = repo
            if tag:
                img["tag"] = tag
        if image_id:
            img["uid"] = image_id
        elif img:
            img["uid"] = name
        if img:
            out["image"] = img
    out["orchestrator"] = "Kubernetes"
    labels = pod.pod_labels
    if labels:
        out["labels"] = tuple(f"{k}={v}" for k, v in labels.items())
    return out
