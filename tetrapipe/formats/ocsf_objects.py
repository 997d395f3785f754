"""OCSF 1.7.0 objects built from Tetragon's: `process`, `container`, `device`, `file`, Kubernetes tags.

Decisions (see docs/ocsf.md for the generated field table):

- `process.uid` is Tetragon's `exec_id` (unique per exec across the cluster), so `actor.process.uid`,
  `process.parent_process.uid` and the ECS `entity_id` correlate across events.
- The parent (`parent_process`) is a lighter object: no container, thread or namespace pid (it is
  usually the same pod; Tetragon reports it fully in the parent's own events).
- Containers use the `container` profile: `process.container` (`uid` without the `containerd://`
  prefix, which goes to `runtime`; `image.uid` = the image id with its digest; `image.name`/`tag`
  split from the image name; `labels` = the pod's labels as `key=value`; `orchestrator` =
  "Kubernetes") and `process.namespace_pid` = the pid inside the container.
- OCSF has no Kubernetes object: the pod's namespace, name and workload, and the cluster name,
  travel as `metadata.tags` named like OpenTelemetry's resource attributes (`k8s.namespace.name`,
  `k8s.pod.name`, `k8s.workload.name`, `k8s.workload.kind`, `k8s.cluster.name`), the same names
  tetrapipe's OTLP output uses.
- `device` is the node: `hostname` and `name` = `node_name`, `type_id` 1 (Server); an event without
  `node_name` gets `name` "unknown" (OCSF requires a device, identified by at least a name).
- Security-relevant process details OCSF has no attribute for (`auid`, `flags`, capabilities,
  `binary_properties`, `process_credentials`) are kept verbatim in `unmapped.tetragon.process`.
"""

from __future__ import annotations

from typing import Any

from tetrapipe.formats._common import basename, epoch_ms, memo_put, split_container_id, split_image

FILE_REGULAR, FILE_UNKNOWN, FILE_OTHER = 1, 0, 99
_PROCESS_EXTRAS = ("auid", "flags", "cap", "binary_properties", "process_credentials", "in_init_tree")
# Memos of objects that repeat across events (the same container, pod, binary, user, node).
# The objects they hold are shared by every result that uses them: results are read-only.
_CONTAINERS: dict[str, tuple[Any, ...]] = {}  # container id -> (name, image, labels, object)
_PODS: dict[tuple[Any, ...], tuple[dict[str, str], ...]] = {}
_FILES: dict[str, tuple[str, dict[str, Any]]] = {}
_USERS: dict[int, dict[str, str]] = {}
_DEVICES: dict[Any, dict[str, Any]] = {}
_POD_TAGS = (("namespace", "k8s.namespace.name"), ("name", "k8s.pod.name"), ("workload", "k8s.workload.name"),
             ("workload_kind", "k8s.workload.kind"))


def process(p: dict[str, Any], parent: Any = None) -> dict[str, Any]:
    """The OCSF `process` of a Tetragon process, with `parent_process` when `parent` is a dict."""
    out = _process_core(p)
    v = p.get("tid")
    if type(v) is int:
        out["tid"] = v
    pod = p.get("pod")
    if type(pod) is dict:
        container = pod.get("container")
        if type(container) is dict:
            c = _container_of(container, pod)
            if c:
                out["container"] = c
            v = container.get("pid")
            if type(v) is int:
                out["namespace_pid"] = v
    if type(parent) is dict:
        core = _process_core(parent)
        if "pid" in core or "uid" in core:
            out["parent_process"] = core
    return out


def _container_of(container: dict[str, Any], pod: dict[str, Any]) -> dict[str, Any]:
    """`_container`, memoised by the container id and checked against every field it reads."""
    cid, name, image, labels = container.get("id"), container.get("name"), container.get("image"), \
        pod.get("pod_labels")
    if type(cid) is not str:
        return _container(container, pod)
    hit = _CONTAINERS.get(cid)
    if hit is not None and hit[0] == name and hit[1] == image and hit[2] == labels:
        return hit[3]  # equal inputs: a str never equals a non-str, and only all-str ones are stored
    c = _container(container, pod)
    if _plain(name) and _plain_dict(image) and (labels is None or _plain_dict(labels)):
        memo_put(_CONTAINERS, cid, (name, image, labels, c))
    return c


def _plain(v: Any) -> bool:
    return v is None or type(v) is str


def _plain_dict(v: Any) -> bool:
    """A dict of strings (or None): the only inputs memoised, so `==` on them is as exact as identity."""
    return v is None or (type(v) is dict and all(type(x) is str for x in v.values()))


def parent_process(parent: Any) -> dict[str, Any] | None:
    """The lighter process object used for parents (and for the actor of a Launch); None if unidentified."""
    if type(parent) is not dict:
        return None
    core = _process_core(parent)
    return core if "pid" in core or "uid" in core else None


def identified(p: Any) -> bool:
    """Whether a Tetragon process has what an OCSF process needs to be one (a pid or an exec_id)."""
    return type(p) is dict and (type(p.get("pid")) is int or (type(p.get("exec_id")) is str and p["exec_id"] != ""))


def _process_core(p: dict[str, Any]) -> dict[str, Any]:
    """pid, uid (exec_id), name, file, cmd_line, working_directory, created_time, user: fixed per exec.

    Built afresh for every event (not memoised by exec_id): measured on synth's corpus and on one whose
    processes live across events (benchmarks/lifecycle.py), keeping thousands of these alive costs
    more than building them (benchmarks/formats.py); what repeats inside (the binary's file object,
    the user, the start time's seconds) is memoised by value.
    """
    out: dict[str, Any] = {}
    pid = p.get("pid")
    if type(pid) is int:
        out["pid"] = pid
    exec_id = p.get("exec_id")
    if type(exec_id) is str and exec_id:
        out["uid"] = exec_id
    binary = p.get("binary")
    if type(binary) is str and binary:
        named = _FILES.get(binary)
        if named is None:
            name = basename(binary)
            named = (name, {"name": name, "path": binary, "type_id": FILE_REGULAR})
            memo_put(_FILES, binary, named)
        out["name"], out["file"] = named
        args = p.get("arguments")
        out["cmd_line"] = f"{binary} {args}" if type(args) is str and args else binary
    cwd = p.get("cwd")
    if type(cwd) is str and cwd:
        out["working_directory"] = cwd
    v = epoch_ms(p.get("start_time"))
    if v is not None:
        out["created_time"] = v
    uid = p.get("uid")
    if type(uid) is int:
        user = _USERS.get(uid)
        if user is None:
            user = {"uid": str(uid)}
            memo_put(_USERS, uid, user)
        out["user"] = user
    return out


def _container(c: dict[str, Any], pod: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cid = c.get("id")
    if type(cid) is str and cid:
        out["uid"], runtime = split_container_id(cid)
        if runtime:
            out["runtime"] = runtime
    v = c.get("name")
    if type(v) is str and v:
        out["name"] = v
    if not out:
        return out  # OCSF container needs uid or name
    image = c.get("image")
    if type(image) is dict:
        name, image_id = image.get("name"), image.get("id")
        img: dict[str, Any] = {}
        if type(name) is str and name:
            repo, tag, _ = split_image(name)
            img["name"] = repo
            if tag:
                img["tag"] = tag
        if type(image_id) is str and image_id:
            img["uid"] = image_id
        elif img:
            img["uid"] = name  # `image.uid` is required; the name is the best identity left
        if img:
            out["image"] = img
    out["orchestrator"] = "Kubernetes"
    labels = pod.get("pod_labels")
    if type(labels) is dict and labels:
        out["labels"] = tuple(f"{k}={v}" for k, v in labels.items())
    return out


def k8s_tags(event: dict[str, Any], p: Any) -> tuple[dict[str, str], ...]:
    """`metadata.tags` for the cluster and the acting process's pod (OpenTelemetry k8s.* names)."""
    pod = p.get("pod") if type(p) is dict else None
    if type(pod) is dict:
        key: tuple[Any, ...] = (event.get("cluster_name"), pod.get("namespace"), pod.get("name"),
                                pod.get("workload"), pod.get("workload_kind"))
    else:
        key = (event.get("cluster_name"),)
    try:
        hit = _PODS.get(key)
    except TypeError:  # a malformed event with a list or object where a name belongs
        key, hit = (None,), None
    if hit is None:
        tags = []
        if type(key[0]) is str and key[0]:
            tags.append({"name": "k8s.cluster.name", "value": key[0]})
        for (_, name), v in zip(_POD_TAGS, key[1:], strict=False):
            if type(v) is str and v:
                tags.append({"name": name, "value": v})
        hit = tuple(tags)
        memo_put(_PODS, key, hit)
    return hit


def process_extras(p: Any) -> dict[str, Any] | None:
    """Process fields OCSF has no attribute for, verbatim (for `unmapped.tetragon.process`)."""
    if type(p) is not dict:
        return None
    out = {k: p[k] for k in _PROCESS_EXTRAS if k in p}
    return out or None


def device(event: dict[str, Any]) -> dict[str, Any]:
    """The node as the OCSF `device` (a Kubernetes node is a server)."""
    node = event.get("node_name")
    if type(node) is not str or not node:
        node = None
    hit = _DEVICES.get(node)
    if hit is None:
        # Without node_name (Tetragon outside Kubernetes may send none) the device still needs a name.
        hit = {"type_id": 1, "type": "Server", "hostname": node, "name": node} if node else \
            {"type_id": 1, "type": "Server", "name": "unknown"}
        memo_put(_DEVICES, node, hit)
    return hit


def file_object(path: str | None, name: str | None = None, type_id: int = FILE_UNKNOWN,
                type_name: str | None = None) -> dict[str, Any]:
    """An OCSF `file` (name and type_id are required); `type_name` only with type_id 99 (Other)."""
    out: dict[str, Any] = {"name": name or (basename(path) if path else "unknown"), "type_id": type_id}
    if path:
        out["path"] = path
    if type_name:
        out["type"] = type_name
    return out
