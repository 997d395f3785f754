"""ECS 9.4 field sets built from Tetragon objects: `process` (+ `parent`), `container`, `orchestrator`, network.

Compatible with Elastic's Tetragon integration (packages/tetragon ingest pipeline) where it can
be: `process.executable`/`working_directory`/`pid`/`entity_id` (exec_id)/`thread.id`/`user.id`
(a string)/`start`, the same for `process.parent.*`, `container.name`/`image.name`,
`orchestrator.namespace`, `orchestrator.resource.name` (pod) and `.parent.type` (workload kind),
`orchestrator.cluster.name`, `host.name`.  Where ECS says otherwise this follows ECS and says so:

- `process.args` starts with the executable (ECS: "starting with the absolute path to the
  executable"); the integration keeps only the arguments.  Both split the argument string at
  whitespace (Tetragon sends one string; quotes are not interpreted).
- `container.id` is the bare id (`containerd://` goes to `container.runtime`), as Elastic's
  Kubernetes metadata has it, so events join with other Kubernetes data; the integration keeps
  the prefix.
- With Tetragon's `process_credentials` (enable-process-cred), `process.user.id` is the effective
  uid (ECS: "the effective user"), `real_user`/`saved_user` and the `group` fields the others;
  without them `process.user.id` is Tetragon's `uid`, as in the integration.
- Peers (`tetrapipe.peer`/`.source` of the peer resolver; `orchestrator.*` describes the event's
  own pod, so it cannot hold them): ECS has no Kubernetes fields for the other end of a
  connection, only `destination.domain` ("a host name, a fully qualified domain name, or another
  host naming format"): a Service (or the API server) as its cluster DNS name relative to the
  cluster domain, `<name>.<namespace>.svc` (which resolves in every pod of the cluster, whatever
  the cluster domain is), a node as its name (the kubelet registers the host name); a pod has no
  DNS name of its own, so none.  `peer` goes to the remote end (`destination`, or `source` for
  an accept), `source` to the local one.  Everything, with the namespace, workload and labels,
  is under `tetrapipe.peer`/`tetrapipe.source`.
"""

from __future__ import annotations

from typing import Any

from tetrapipe.formats._common import (
    IANA_NUMBERS,
    basename,
    endpoint,
    epoch_ms,
    find_socket,
    memo_put,
    socket_endpoints,
    split_container_id,
    split_image,
)

_CAPS: dict[str, str] = {}
_NETWORK_TYPES = {"AF_INET": "ipv4", "AF_INET6": "ipv6"}
# Memos of objects that repeat across events (the same pod): shared by every
# result that uses them, so results are read-only.
_PODS: dict[Any, tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]] = {}


def process(p: dict[str, Any], parent: Any = None) -> dict[str, Any]:
    """ECS `process` of a Tetragon process, with `process.parent` when `parent` is a dict."""
    out = _core(p)
    cap = p.get("cap")
    if type(cap) is dict:
        caps = {k: [_cap(c) for c in cap[k]] for k in ("effective", "permitted") if type(cap.get(k)) is list}
        if caps:
            out["thread"] = {**out.get("thread", {}), "capabilities": caps}
    creds = p.get("process_credentials")
    if type(creds) is dict:
        _credentials(out, creds)
    pod = p.get("pod")
    if type(pod) is dict:
        c = pod.get("container")
        if type(c) is dict and type(c.get("pid")) is int:
            out["vpid"] = c["pid"]
    if type(parent) is dict:
        out["parent"] = _core(parent)
    return out


def _core(p: dict[str, Any]) -> dict[str, Any]:
    """The fields fixed per exec (pid, entity_id, executable, args, start, user, thread).

    Built afresh for every event: memoising them by exec_id costs more than it saves, measured
    (see `ocsf_objects._process_core`).
    """
    out: dict[str, Any] = {}
    v = p.get("pid")
    if type(v) is int:
        out["pid"] = v
    exec_id = p.get("exec_id")
    if type(exec_id) is str and exec_id:
        out["entity_id"] = exec_id
    binary = p.get("binary")
    if type(binary) is str and binary:
        out["executable"] = binary
        out["name"] = basename(binary)
        args = p.get("arguments")
        if type(args) is str and args:
            argv = [binary, *args.split()]
            out["args"] = argv
            out["command_line"] = f"{binary} {args}"
        else:
            argv = [binary]
            out["args"] = argv
            out["command_line"] = binary
        out["args_count"] = len(argv)
    v = p.get("cwd")
    if type(v) is str and v:
        out["working_directory"] = v
    v = p.get("start_time")
    if is_date(v):  # a value Elasticsearch cannot parse as a date would reject the whole document
        out["start"] = v
    v = p.get("uid")
    if type(v) is int:
        out["user"] = {"id": str(v)}
    v = p.get("tid")
    if type(v) is int:
        out["thread"] = {"id": v}
    return out


def is_date(v: Any) -> bool:
    """Whether `v` is a time Elasticsearch's date type takes (Tetragon's RFC 3339 text)."""
    return epoch_ms(v) is not None


def _credentials(out: dict[str, Any], creds: dict[str, Any]) -> None:
    for field, key in (("user", "euid"), ("real_user", "uid"), ("saved_user", "suid"),
                       ("group", "egid"), ("real_group", "gid"), ("saved_group", "sgid")):
        v = creds.get(key)
        if type(v) is int:
            out[field] = {"id": str(v)}


def _cap(name: str) -> str:
    """Tetragon writes some capabilities without `CAP_` (`DAC_OVERRIDE`); ECS uses the kernel's names."""
    if type(name) is not str:
        return str(name)
    hit = _CAPS.get(name)
    if hit is None:
        hit = name if name.startswith("CAP_") else "CAP_" + name
        memo_put(_CAPS, name, hit)
    return hit


def container_and_orchestrator(doc: dict[str, Any], event: dict[str, Any], p: Any) -> str | None:
    """Set `container.*` and `orchestrator.*` from the process's pod and the cluster; return the workload name."""
    pod = p.get("pod") if type(p) is dict else None
    cluster = event.get("cluster_name")
    key: Any = None
    if type(pod) is dict:
        c, labels = pod.get("container"), pod.get("pod_labels")
        image = c.get("image") if type(c) is dict else None
        key = (cluster, pod.get("namespace"), pod.get("name"), pod.get("workload"), pod.get("workload_kind"),
               tuple(labels.items()) if type(labels) is dict else None,
               (c.get("id"), c.get("name")) if type(c) is dict else None,
               (image.get("name"), image.get("id")) if type(image) is dict else None)
    else:
        key = (cluster,)
    try:
        hit = _PODS.get(key)
    except TypeError:  # a malformed event with a list or object where a name belongs
        key, hit = None, None
    if hit is None:
        hit = _pod_fields(cluster, pod)
        if key is not None:
            memo_put(_PODS, key, hit)
    container, orch, workload = hit
    if container:
        doc["container"] = container
    if orch:
        doc["orchestrator"] = orch
    return workload


def _pod_fields(cluster: Any, pod: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]:
    orch: dict[str, Any] = {}
    if type(cluster) is str and cluster:
        orch["cluster"] = {"name": cluster}
    workload, container = None, None
    if type(pod) is dict:
        orch["type"] = "kubernetes"
        v = pod.get("namespace")
        if type(v) is str and v:
            orch["namespace"] = v
        res: dict[str, Any] = {"type": "pod"}
        v = pod.get("name")
        if type(v) is str and v:
            res["name"] = v
        v = pod.get("workload_kind")
        if type(v) is str and v:
            res["parent"] = {"type": v}
        labels = pod.get("pod_labels")
        if type(labels) is dict and labels:
            res["label"] = [f"{k}:{v}" for k, v in labels.items()]
        orch["resource"] = res
        workload = pod.get("workload")
        c = pod.get("container")
        if type(c) is dict:
            container = _container(c) or None
    return container, orch or None, workload if type(workload) is str and workload else None


def _container(c: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cid = c.get("id")
    if type(cid) is str and cid:
        out["id"], runtime = split_container_id(cid)
        if runtime:
            out["runtime"] = runtime
    v = c.get("name")
    if type(v) is str and v:
        out["name"] = v
    image = c.get("image")
    if type(image) is dict:
        img: dict[str, Any] = {}
        name = image.get("name")
        if type(name) is str and name:
            img["name"] = name
            tag = split_image(name)[1]
            if tag:
                img["tag"] = [tag]
        image_id = image.get("id")
        if type(image_id) is str and "@" in image_id:
            img["hash"] = {"all": [image_id.rpartition("@")[2]]}
        if img:
            out["image"] = img
    return out


def network(doc: dict[str, Any], body: dict[str, Any], egress: Any, action: str) -> None:
    """`source`, `destination` and `network` of a connection hook (endpoint rules as in the OCSF mapping)."""
    found = find_socket(body)
    if found is None:
        if egress and egress.get("daddr"):
            doc["destination"] = endpoint(egress.get("daddr"), egress.get("dport")) or {}
        return
    lip, lport, rip, rport, transport = socket_endpoints(*found)
    local, remote = endpoint(lip, lport), endpoint(rip, rport)
    src, dst = (remote, local) if action == "accept" else (local, remote)
    if src:
        doc["source"] = src
    if dst:
        doc["destination"] = dst
    net: dict[str, Any] = {}
    if transport:
        net["transport"] = transport
        num = IANA_NUMBERS.get(transport)
        if num is not None:
            net["iana_number"] = str(num)
    family = found[1].get("family")
    kind = _NETWORK_TYPES.get(family) if type(family) is str else None
    if kind:
        net["type"] = kind
    if action == "connect":
        net["direction"] = "egress"  # host-based monitoring: the host's point of view (ECS)
    elif action == "accept":
        net["direction"] = "ingress"
    if net:
        doc["network"] = net



def attach_peers(doc: dict[str, Any], tp: dict[str, Any], hook: Any, peer: Any, source: Any) -> None:
    """`tetrapipe.peer`/`.source` and the endpoints' `domain` (see the module docstring)."""
    remote, local = ("source", "destination") if hook == ("net", "accept") else ("destination", "source")
    for key, end, who in (("peer", remote, peer), ("source", local, source)):
        if type(who) is not dict:
            continue
        labels = who.get("labels")
        tp[key] = {**who, "labels": [f"{k}:{v}" for k, v in labels.items()]} if type(labels) is dict else who
        ep = doc.get(end) if hook is not None and hook[0] == "net" else None
        domain = _domain(who)
        if ep is not None and domain:
            doc[end] = {**ep, "domain": domain}


def _domain(who: dict[str, Any]) -> str | None:
    name, kind, ns = who.get("name"), who.get("kind"), who.get("namespace")
    if type(name) is not str or not name:
        return None
    if kind in ("service", "apiserver") and type(ns) is str and ns:
        return f"{name}.{ns}.svc"
    return name if kind == "node" else None
