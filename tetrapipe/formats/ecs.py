"""Tetragon events → Elastic Common Schema (ECS 9.4) documents.

Contract: `to_ecs(event, etype, categories, groups, egress)` takes one Tetragon event as plain
dicts, its event-type key, tetrapipe's tags and egress classification, and returns one JSON-ready
document (nested objects, the way Elasticsearch stores them); `encode_ecs` returns it as one JSON
line.  Results are read-only: objects that repeat across events (a pod's `container`/`orchestrator`)
are memoised and shared.  Nothing raises on odd input: a field of the
wrong type or an unparsable time or address is left out.  `topic_keys` gives fields for Kafka
topic templates.  Only fields ECS 9.4 defines, with
ECS's types and allowed `event.category`/`event.type` pairs, plus two custom prefixes:

- `tetrapipe.*`: `categories`, `groups` (string arrays, `[]` when untagged) and `egress`
  (`zone`, `external`, `daddr`, `dport`, `cidr`) exactly as in the default output contract, and
  the peer resolver's `peer`/`source` likewise except `labels`: an array of `key:value` strings
  (as `orchestrator.resource.label`), since label keys hold dots (`app.kubernetes.io/name`) that
  Elasticsearch would expand into objects (`app` and `app.kubernetes.io/name` would collide);
- `tetragon.*`: what ECS has no field for, verbatim: `event_type`, the hook-specific fields of
  the event body (`function_name`, `policy_name`, `args`, `return`, `action`, `signal`, …),
  `process` details (`auid`, `flags`, `binary_properties`, …), `workload` (the pod's workload
  name; ECS has only its kind) and other top-level keys.

Mapping decisions (docs/ecs.md has the generated tables):

- `@timestamp` is the event's `time` as Tetragon wrote it (RFC 3339 with nanoseconds, which
  Elasticsearch's date type parses; the time of mapping when missing or unparsable: a bad date
  would make Elasticsearch reject the document); `event.id` is the same stable id as OCSF's
  `metadata.uid`.
- `event.kind` is `event`, `event.module` `tetragon`, `event.dataset` `tetragon.log` (the data
  set of Elastic's Tetragon integration), `event.action` `executed`/`end` for exec/exit (as the
  integration) and otherwise the hook function, tracepoint, symbol or event type.
- `event.category`/`event.type` per event type and, for kprobes, per hook kind (`_hooks`):
  process start/end/change/info, driver start/end/info for kernel modules and BPF, library start
  for loader events (with `dll.*`, ECS's field set for shared libraries on every OS), file
  access/change/creation/deletion/info with `file.*`, network connection start/end or info with
  `source.*`/`destination.*`/`network.*`.  Throttle, rate-limit and unknown events have no
  category; unknown ones keep the original JSON in `event.original`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tetrapipe.formats import ecs_objects as obj
from tetrapipe.formats._common import basename, canonical_json, dumps_or_degrade, event_uid, find_socket, hook_details
from tetrapipe.formats._hooks import classify_kprobe, file_path, module_name

ECS_VERSION = "9.4.0"
_COMMON_KEYS = frozenset({"time", "node_name", "cluster_name", "tetrapipe"})
_PROCESS_EXTRAS = ("auid", "flags", "binary_properties", "in_init_tree")
Head = tuple[tuple[str, ...], tuple[str, ...], str]  # (event.category, event.type, why)

ETYPE_CLASSES: dict[str, Head] = {
    "process_exec": (("process",), ("start",), "a process started (execve)"),
    "process_exit": (("process",), ("end",), "a process ended"),
    "process_loader": (("library",), ("start",), "a shared library was loaded (`dll.*`)"),
    "process_uprobe": (("process",), ("info",), "a user-space function of the process ran"),
    "process_usdt": (("process",), ("info",), "a USDT probe of the process fired"),
    "process_tracepoint": (("process",), ("info",), "a kernel tracepoint fired for the process"),
    "process_lsm": (("process",), ("info",), "an LSM hook ran for the process"),
    "process_throttle": ((), (), "about Tetragon's own event stream: no ECS category fits"),
    "rate_limit_info": ((), (), "about Tetragon's own event stream: no ECS category fits"),
}
HOOK_CLASSES: dict[tuple[str, str], Head] = {
    ("setid", "set"): (("process",), ("change",), "the process changed its user or group id"),
    ("kmod", "load"): (("driver",), ("start",), "ECS's driver category covers kernel modules"),
    ("kmod", "unload"): (("driver",), ("end",), "ECS's driver category covers kernel modules"),
    ("bpf_prog", "load"): (("driver",), ("start",), "a BPF program is code loaded into the kernel, like a module"),
    ("kobj", "bpf_map"): (("driver",), ("info",), "a BPF map: part of the kernel's BPF subsystem"),
    ("kobj", "perf_event"): (("driver",), ("info",), "a perf event: a kernel resource for BPF/tracing"),
    ("net", "connect"): (("network",), ("connection", "start"), "an outgoing connection (`network.direction` egress)"),
    ("net", "accept"): (("network",), ("connection", "start"), "an incoming connection (`network.direction` ingress)"),
    ("net", "close"): (("network",), ("connection", "end"), "a connection closed"),
    ("net", "listen"): (("network",), ("start",), "a socket started listening"),
    ("net", "traffic"): (("network",), ("connection", "info"), "data sent or received on a connection"),
    ("net", "other"): (("network",), ("info",), "another socket hook"),
    ("file", "read"): (("file",), ("access",), "a file was read"),
    ("file", "open"): (("file",), ("access",), "a file was opened"),
    ("file", "update"): (("file",), ("change",), "a file was written"),
    ("file", "rename"): (("file",), ("change",), "a file was renamed"),
    ("file", "attr"): (("file",), ("change",), "a file's attributes changed"),
    ("file", "mount"): (("file",), ("change",), "a file system was mounted"),
    ("file", "unmount"): (("file",), ("change",), "a file system was unmounted"),
    ("file", "create"): (("file",), ("creation",), "a file was created"),
    ("file", "delete"): (("file",), ("deletion",), "a file was deleted"),
    ("file", "other"): (("file",), ("info",), "another file hook"),
    ("call", "syscall"): (("process",), ("info",), "the process made a (hooked) system call"),
    ("call", "function"): (("process",), ("info",), "a hooked kernel function ran for the process"),
}
UNKNOWN_CLASS: Head = ((), (), "an event type tetrapipe does not know (`event.original`)")
_HEADS: dict[Head, dict[str, Any]] = {}


def _event_head(head: Head) -> dict[str, Any]:
    """The constant part of `event` for one class, built once (copied per document)."""
    out = _HEADS.get(head)
    if out is None:
        out = {"kind": "event", "module": "tetragon", "dataset": "tetragon.log"}
        if head[0]:
            out["category"], out["type"] = head[0], head[1]
        _HEADS[head] = out
    return out


def class_for(etype: str, body: dict[str, Any]) -> tuple[Head, tuple[str, str] | None]:
    """The ECS class of an event, and for kprobes the hook (kind, action) it came from."""
    if etype == "process_kprobe":
        hook = classify_kprobe(body)
        if hook[0] == "net" and find_socket(body) is None:
            hook = ("call", "function")
        return HOOK_CLASSES[hook], hook
    return ETYPE_CLASSES.get(etype, UNKNOWN_CLASS), None


def to_ecs(event: dict[str, Any], etype: str, categories: tuple[str, ...], groups: tuple[str, ...],
           egress: dict[str, Any] | None, peer: dict[str, Any] | None = None,
           source: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ECS document for one Tetragon event (see the module docstring)."""
    body = event.get(etype)
    if type(body) is not dict:
        body = {}
    head, hook = class_for(etype, body)
    ev = _event_head(head).copy()
    ev["action"] = _action(etype, body)
    ev["id"] = event_uid(event, etype, body)
    when = event.get("time")
    doc: dict[str, Any] = {"@timestamp": when if obj.is_date(when) else datetime.now(UTC).isoformat(),
                           "ecs": {"version": ECS_VERSION}, "event": ev}
    node = event.get("node_name")
    if type(node) is str and node:
        doc["host"] = {"name": node}
    p = body.get("process")
    tetragon: dict[str, Any] = {"event_type": etype}
    if type(p) is dict:
        proc = obj.process(p, body.get("parent"))
        _exit(proc, etype, body)
        doc["process"] = proc
        user = proc.get("user")
        if user:
            doc["user"] = {"id": user["id"]}
        extras = {k: p[k] for k in _PROCESS_EXTRAS if k in p}
        if extras:
            tetragon["process"] = extras
    workload = obj.container_and_orchestrator(doc, event, p)
    if workload:
        tetragon["workload"] = workload
    if hook is not None:
        _hook_fields(doc, body, hook, egress)
    elif etype == "process_loader" and type(body.get("path")) is str:
        doc["dll"] = {"path": body["path"], "name": basename(body["path"])}
    elif head is UNKNOWN_CLASS:
        raw = canonical_json(event)
        ev["original"] = raw.decode() if raw is not None else "(not encodable as JSON)"
    tetragon.update(hook_details(body))
    # Only the event type, time, node_name and cluster_name are usual at the top level.
    if len(event) > 1 + ("time" in event) + ("node_name" in event) + ("cluster_name" in event):
        for k, v in event.items():
            if k != etype and k not in _COMMON_KEYS:
                tetragon[k] = v
    doc["tetragon"] = tetragon
    tp: dict[str, Any] = {"categories": categories, "groups": groups}
    if egress:
        tp["egress"] = egress
    if peer is not None or source is not None:
        obj.attach_peers(doc, tp, hook, peer, source)
    doc["tetrapipe"] = tp
    return doc


def encode_ecs(event: dict[str, Any], etype: str, categories: tuple[str, ...], groups: tuple[str, ...],
               egress: dict[str, Any] | None, peer: dict[str, Any] | None = None,
               source: dict[str, Any] | None = None) -> bytes:
    """`to_ecs` as one JSON line (no trailing newline)."""
    return dumps_or_degrade(to_ecs(event, etype, categories, groups, egress, peer, source), (("tetragon",),))


def topic_keys(doc: dict[str, Any]) -> dict[str, str]:
    """Fields a Kafka topic template can use for one ECS document: `ecs_category` (the first
    `event.category`, `none` without one) and `ecs_dataset` (`tetragon.log`)."""
    ev = doc.get("event") or {}
    category = ev.get("category") or ("none",)
    return {"ecs_category": category[0], "ecs_dataset": ev.get("dataset", "tetragon.log")}


def _action(etype: str, body: dict[str, Any]) -> str:
    if etype == "process_exec":
        return "executed"
    if etype == "process_exit":
        return "end"
    name = body.get("function_name")
    if type(name) is str and name:
        return name
    if etype == "process_tracepoint":
        return f"{body.get('subsys')}/{body.get('event')}"
    name = body.get("symbol") or body.get("name")
    if type(name) is str and name:
        return name
    if etype == "process_loader":
        return "load"
    if etype == "process_throttle" and type(body.get("type")) is str:
        return str(body["type"]).lower()
    return "rate_limit" if etype == "rate_limit_info" else etype


def _exit(proc: dict[str, Any], etype: str, body: dict[str, Any]) -> None:
    if etype != "process_exit":
        return
    status = body.get("status")
    if type(status) is int:
        proc["exit_code"] = status
    end = body.get("time")
    if obj.is_date(end):
        proc["end"] = end


def _hook_fields(doc: dict[str, Any], body: dict[str, Any], hook: tuple[str, str], egress: Any) -> None:
    kind, action = hook
    if kind == "net":
        obj.network(doc, body, egress, action)
    elif kind == "file":
        path = file_path(body)
        if path:
            doc["file"] = {"path": path, "name": basename(path)}
    elif kind == "kmod":
        name, path = module_name(body)
        if path:
            doc["file"] = {"path": path, "name": basename(path)}


def mapping_table_markdown() -> str:
    """docs/ecs.md: the class table and the field table, both generated from this code."""
    from tetrapipe.formats._doc import ecs_markdown

    return ecs_markdown()
