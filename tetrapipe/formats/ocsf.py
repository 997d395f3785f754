"""Tetragon events → OCSF 1.7.0 (Open Cybersecurity Schema Framework) events.

Contract: `to_ocsf(event, etype, categories, groups, egress, findings=False)` takes one Tetragon
event as plain dicts (protojson, snake_case), its event-type key, tetrapipe's tags and egress
classification, and returns JSON-ready dicts: the OCSF event, followed by a Detection Finding
when `findings` is true and the event has a `security`-group category.  `encode_ocsf` returns
them as JSON lines (`\\n`-separated, no trailing newline).  Results are read-only: objects that
repeat across events (a container, a pod's tags, a binary's file, the device) are memoised and
shared, and a finding shares objects with its event.  `topic_keys` names the OCSF class for Kafka
topic templates.  Nothing raises on odd input: missing fields are left out, required objects get
the best value there is.

Mapping decisions (the generated tables are in docs/ocsf.md, from `mapping_table_markdown()`):

- One OCSF event per Tetragon event; the class is chosen once per event type and, for kprobes,
  once per hook function (`_hooks.classify_kprobe`, memoised); each class has a precomputed
  constant head (class/category/activity/type uid and captions) that is copied per event.
- `time` is the event's `time` in epoch ms (`metadata.original_time` keeps the text; a missing
  time becomes the time of mapping); `severity_id` is Medium (3) for events with a `security`
  category, Informational (1) otherwise.
- `metadata`: `version` 1.7.0, `product` Tetragon / Isovalent/Cilium, `log_name` "tetragon",
  `event_code` the Tetragon event type, `uid` stable per event (`_common.event_uid`: a hash of
  type, node, time, exec_id and hook; the same event re-shipped gets the same uid), `profiles`.
- tetrapipe's tags travel twice: `metadata.labels` (`category:<id>`, `group:<group>`,
  `zone:<egress zone>` — for rules that filter on a string array) and `unmapped.tetrapipe`
  (`categories`, `groups`, `egress` and the peer resolver's `peer`/`source` exactly as in the
  default output contract).  A peer also names its endpoint (`ocsf_network.attach_peers`).  The egress zone
  is also the remote endpoint's `zone` in Network Activity.
- `unmapped.tetragon`: `event_type`, the hook-specific fields verbatim (`function_name`,
  `policy_name`, `args`, `return`, `action`, `status`, `signal`, …: the event body without
  `process`/`parent`), process details OCSF has no attribute for (`process`), and other top-level
  keys (`aggregation_info`, …).
- Unknown event types become Base Events (class 0, activity Other) with the original JSON in
  `raw_data` and the event type in `unmapped.tetragon.event_type`; a `process`, if present, is
  the actor.  So does a known event without an identifiable process (no pid, no exec_id: never
  from Tetragon, which always sends them), since its class could not be filled.
- Findings (opt-in): one Detection Finding (2004, Create) per event with a security category,
  `finding_info.related_events[0].uid` = the event's `metadata.uid`, the categories as
  `finding_info.types` and as the analytic (a Rule), the event's actor/process/endpoints as
  evidence.  Which categories are `security` comes from `category_groups` when given (the
  library's id → group table); without it all the event's categories are listed.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from tetrapipe.formats import ocsf_classes as cls
from tetrapipe.formats._common import canonical_json, dumps_or_degrade, epoch_ms, event_uid, find_socket, memo_put
from tetrapipe.formats._hooks import classify_kprobe
from tetrapipe.formats.ocsf_network import ACTIVITIES as NET_ACTIVITIES
from tetrapipe.formats.ocsf_network import attach_peers, network
from tetrapipe.formats.ocsf_objects import device, identified, k8s_tags, process_extras

OCSF_VERSION = "1.7.0"
PRODUCT = {"name": "Tetragon", "vendor_name": "Isovalent/Cilium"}  # shared by every result (read-only)
CLASSES: dict[str, tuple[int, str, int, str]] = {
    "file_activity": (1001, "File System Activity", 1, "System Activity"),
    "kernel_extension_activity": (1002, "Kernel Extension Activity", 1, "System Activity"),
    "kernel_activity": (1003, "Kernel Activity", 1, "System Activity"),
    "module_activity": (1005, "Module Activity", 1, "System Activity"),
    "process_activity": (1007, "Process Activity", 1, "System Activity"),
    "event_log_activity": (1008, "Event Log Activity", 1, "System Activity"),
    "detection_finding": (2004, "Detection Finding", 2, "Findings"),
    "network_activity": (4001, "Network Activity", 4, "Network Activity"),
    "base_event": (0, "Base Event", 0, "Uncategorized"),
}
"""Class name → (class_uid, caption, category_uid, category caption) for the classes used."""
_CLASS_BY_UID = {v[0]: k for k, v in CLASSES.items()}
_CATEGORY_BY_UID = {0: "other", 1: "system", 2: "findings", 4: "network"}
FILE_ACTIVITIES = {"create": (1, "Create"), "read": (2, "Read"), "update": (3, "Update"), "delete": (4, "Delete"),
                   "rename": (5, "Rename"), "attr": (6, "Set Attributes"), "mount": (12, "Mount"),
                   "unmount": (13, "Unmount"), "open": (14, "Open"), "other": (99, "Other")}
_PROCESS_PROFILES = ("container", "host")
_COMMON_KEYS = frozenset({"time", "node_name", "cluster_name", "tetrapipe"})
_VERBATIM = (("unmapped", "tetragon"),)  # input copied as is: what can make an event unencodable
_EVIDENCE = ("actor", "process", "file", "src_endpoint", "dst_endpoint")  # what a finding shows of its event

Build = Callable[[dict[str, Any], dict[str, Any], dict[str, Any], Any], None]


class Plan(NamedTuple):
    """How one kind of Tetragon event becomes OCSF: the constant head, the builder, and why."""

    head: dict[str, Any]
    build: Build
    profiles: tuple[str, ...]
    why: str
    needs_process: bool
    remote: str = ""  # Network Activity: the key of the remote endpoint (where `tetrapipe.peer` goes)


def _plan(name: str, activity_id: int, activity: str, build: Build, why: str,
          profiles: tuple[str, ...] = _PROCESS_PROFILES, remote: str = "") -> Plan:
    uid, caption, category_uid, category = CLASSES[name]
    head = {"class_uid": uid, "class_name": caption, "category_uid": category_uid, "category_name": category,
            "activity_id": activity_id, "activity_name": activity, "type_uid": uid * 100 + activity_id,
            "type_name": f"{caption}: {activity}"}
    return Plan(head, build, profiles, why, profiles is _PROCESS_PROFILES and name != "base_event", remote)


_MODULE_WHY = "a kernel module is code loaded into the kernel: OCSF's kernel extension"
ETYPE_PLANS: dict[str, Plan] = {
    "process_exec": _plan("process_activity", 1, "Launch", cls.launch, "an execve: the parent launched a process"),
    "process_exit": _plan("process_activity", 2, "Terminate", cls.terminate, "the process ended (reflexive)"),
    "process_loader": _plan("module_activity", 1, "Load", cls.loader, "a shared library mapped by the loader"),
    "process_uprobe": _plan("module_activity", 3, "Invoke", cls.uprobe,
                            "a function of a binary or library was called (module = path, function = symbol)"),
    "process_usdt": _plan("module_activity", 3, "Invoke", cls.usdt, "a USDT probe of a binary fired"),
    "process_tracepoint": _plan("kernel_activity", 4, "Invoke", cls.tracepoint,
                                "a kernel tracepoint fired (System Call for the syscalls subsystem)"),
    "process_lsm": _plan("kernel_activity", 4, "Invoke", cls.lsm_hook, "a kernel LSM hook was invoked"),
    "process_throttle": _plan("event_log_activity", 99, "Other", cls.throttle,
                              "Tetragon started/stopped throttling a cgroup's events: about the event log itself",
                              ("host",)),
    "rate_limit_info": _plan("event_log_activity", 99, "Other", cls.rate_limit,
                             "Tetragon dropped events: about the event log itself", ("host",)),
}
HOOK_PLANS: dict[tuple[str, str], Plan] = {
    ("setid", "set"): _plan("process_activity", 5, "Set User ID", cls.set_user_id,
                            "OCSF's activity for setuid() (used for the whole set*id family)"),
    ("kmod", "load"): _plan("kernel_extension_activity", 1, "Load", cls.kernel_module, _MODULE_WHY),
    ("kmod", "unload"): _plan("kernel_extension_activity", 2, "Unload", cls.kernel_module, _MODULE_WHY),
    ("bpf_prog", "load"): _plan("kernel_extension_activity", 1, "Load", cls.bpf_program,
                                "a verified BPF program is code loaded into and run by the kernel, like a module;"
                                " rules on kernel code loads see both (driver.file.type 'eBPF Program')"),
    ("kobj", "bpf_map"): _plan("kernel_activity", 1, "Create", cls.kernel_object("bpf_map"),
                               "a BPF map is a kernel resource being created (kernel.type 'BPF Map')"),
    ("kobj", "perf_event"): _plan("kernel_activity", 1, "Create", cls.kernel_object("perf_event"),
                                  "a perf event is a kernel resource being created (kernel.type 'Perf Event')"),
    **{("net", a): _plan("network_activity", i, n, network(a), f"a socket hook ({a}): endpoints from the socket",
                         remote="src_endpoint" if a == "accept" else "dst_endpoint")
       for a, (i, n) in NET_ACTIVITIES.items()},
    **{("file", a): _plan("file_activity", i, n, cls.file_access, f"a file hook ({a}); file = its first file argument")
       for a, (i, n) in FILE_ACTIVITIES.items()},
    ("call", "syscall"): _plan("kernel_activity", 4, "Invoke", cls.kernel_call,
                               "any other hooked system call (kernel.type_id System Call)"),
    ("call", "function"): _plan("kernel_activity", 4, "Invoke", cls.kernel_call,
                                "any other hooked kernel function (kernel.type 'Kernel Function')"),
}
UNKNOWN_PLAN = _plan("base_event", 99, "Other", cls.base,
                     "an event type tetrapipe does not know: nothing is lost (raw_data)")
_FINDING_HEAD = _plan("detection_finding", 1, "Create", cls.base, "").head
_LABELS: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, ...]] = {}


def plan_for(etype: str, body: dict[str, Any]) -> Plan:
    """The plan for an event: by type, and for kprobes by what the hook does."""
    if etype == "process_kprobe":
        hook = classify_kprobe(body)
        if hook[0] == "net" and find_socket(body) is None:
            hook = ("call", "function")  # a connection hook without a socket argument has no endpoints
        return HOOK_PLANS[hook]
    return ETYPE_PLANS.get(etype, UNKNOWN_PLAN)


def to_ocsf(event: dict[str, Any], etype: str, categories: tuple[str, ...], groups: tuple[str, ...],
            egress: dict[str, Any] | None, *, findings: bool = False,
            category_groups: Mapping[str, str] | None = None, peer: dict[str, Any] | None = None,
            source: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The OCSF event for one Tetragon event (and its Detection Finding, see the module docstring)."""
    body = event.get(etype)
    if type(body) is not dict:
        body = {}
    plan = plan_for(etype, body) if etype == "process_kprobe" else ETYPE_PLANS.get(etype, UNKNOWN_PLAN)
    proc = body.get("process")
    if plan.needs_process and not identified(proc):
        plan = UNKNOWN_PLAN  # Tetragon always sends the process; without one the class cannot be filled
    out = plan.head.copy()
    when = event.get("time")
    ms = epoch_ms(when)
    out["time"] = ms if ms is not None else int(_time.time() * 1000)
    security = "security" in groups
    out["severity_id"], out["severity"] = (3, "Medium") if security else (1, "Informational")
    meta: dict[str, Any] = {"version": OCSF_VERSION, "product": PRODUCT, "log_name": "tetragon",
                            "event_code": etype, "uid": event_uid(event, etype, body), "profiles": plan.profiles}
    if type(when) is str:
        meta["original_time"] = when
    labels = _labels(categories, groups, egress)
    if labels:
        meta["labels"] = labels
    tags = k8s_tags(event, proc)
    if tags:
        meta["tags"] = tags
    out["metadata"] = meta
    out["device"] = device(event)
    plan.build(out, event, body, egress)
    tp = _tetrapipe(categories, groups, egress)
    if peer is not None or source is not None:
        if plan.remote:
            attach_peers(out, plan.remote, peer, source)
        _add_peers(tp, peer, source)
    out["unmapped"] = {"tetragon": _tetragon(event, etype, body, proc), "tetrapipe": tp}
    if plan is UNKNOWN_PLAN:
        raw = canonical_json(event)
        out["raw_data"] = raw.decode() if raw is not None else "(not encodable as JSON)"
    if findings and security:
        return [out, _finding(out, categories, category_groups)]
    return [out]


def encode_ocsf(event: dict[str, Any], etype: str, categories: tuple[str, ...], groups: tuple[str, ...],
                egress: dict[str, Any] | None, *, findings: bool = False,
                category_groups: Mapping[str, str] | None = None, peer: dict[str, Any] | None = None,
                source: dict[str, Any] | None = None) -> bytes:
    """`to_ocsf` as JSON lines: one line, or two with a finding (`\\n`-separated, no trailing newline)."""
    mapped = to_ocsf(event, etype, categories, groups, egress, findings=findings, category_groups=category_groups,
                     peer=peer, source=source)
    if len(mapped) == 1:
        return dumps_or_degrade(mapped[0], _VERBATIM)
    return b"\n".join(dumps_or_degrade(m, _VERBATIM) for m in mapped)


def topic_keys(mapped: dict[str, Any]) -> dict[str, str]:
    """Fields a Kafka topic template can use for one OCSF event: `ocsf_class` (e.g. `process_activity`),
    `ocsf_class_uid` (`1007`) and `ocsf_category` (`system`, `network`, `findings`, `other`)."""
    uid = mapped.get("class_uid", 0)
    return {"ocsf_class": _CLASS_BY_UID.get(uid, "base_event"), "ocsf_class_uid": str(uid),
            "ocsf_category": _CATEGORY_BY_UID.get(mapped.get("category_uid", 0), "other")}


def _labels(categories: tuple[str, ...], groups: tuple[str, ...], egress: Any) -> tuple[str, ...]:
    if not categories and not groups and not egress:
        return ()  # most events: untagged, no connection
    key = (categories, groups)
    labels = _LABELS.get(key)
    if labels is None:
        labels = tuple(f"category:{c}" for c in categories) + tuple(f"group:{g}" for g in groups)
        memo_put(_LABELS, key, labels)
    if egress and egress.get("zone"):
        return (*labels, f"zone:{egress['zone']}")
    return labels


def _tetragon(event: dict[str, Any], etype: str, body: dict[str, Any], proc: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"event_type": etype, **body}  # one copy in C; then without process and parent
    if "process" in body:
        del out["process"]
    if "parent" in body:
        del out["parent"]
    extras = process_extras(proc)
    if extras:
        out["process"] = extras
    # Only the event type, time, node_name and cluster_name are usual at the top level.
    if len(event) > 1 + ("time" in event) + ("node_name" in event) + ("cluster_name" in event):
        for k, v in event.items():
            if k != etype and k not in _COMMON_KEYS:
                out[k] = v
    return out


def _tetrapipe(categories: tuple[str, ...], groups: tuple[str, ...], egress: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"categories": categories, "groups": groups}
    if egress:
        out["egress"] = egress
    return out


def _add_peers(tp: dict[str, Any], peer: Any, source: Any) -> None:
    """`peer` / `source` after `egress`, as the default output contract has them."""
    if peer is not None:
        tp["peer"] = peer
    if source is not None:
        tp["source"] = source


def _finding(src: dict[str, Any], categories: tuple[str, ...], category_groups: Mapping[str, str] | None
             ) -> dict[str, Any]:
    cats = tuple(c for c in categories if category_groups.get(c) == "security") if category_groups else categories
    cats = cats or categories
    src_meta = src["metadata"]
    uid = "finding-" + src_meta["uid"]
    meta = {**src_meta, "uid": uid}
    process = src.get("process") or (src.get("actor") or {}).get("process")
    subject = process.get("cmd_line") if process else None
    evidence: dict[str, Any] = {k: src[k] for k in _EVIDENCE if k in src}
    if not evidence:
        evidence["data"] = {"event_uid": src_meta["uid"]}
    out = _FINDING_HEAD.copy()
    out.update({
        "time": src["time"], "severity_id": 3, "severity": "Medium", "status_id": 1, "status": "New",
        "is_alert": True, "metadata": meta, "device": src["device"], "evidences": [evidence],
        "finding_info": {
            "uid": uid, "title": f"{', '.join(cats)}: {subject or src_meta['event_code']}", "types": cats,
            "analytic": {"uid": ",".join(cats), "name": ", ".join(cats), "type_id": 1, "type": "Rule"},
            "related_events": [{"uid": src_meta["uid"], "type_uid": src["type_uid"], "type_name": src["type_name"]}],
            "data_sources": ("Tetragon",)},
        "unmapped": {"tetrapipe": src["unmapped"]["tetrapipe"]},
    })
    return out


def mapping_table_markdown() -> str:
    """docs/ocsf.md: the class table and the field table, both generated from this code."""
    from tetrapipe.formats._doc import ocsf_markdown

    return ocsf_markdown()
