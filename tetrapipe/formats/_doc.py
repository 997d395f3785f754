"""docs/ocsf.md and docs/ecs.md, generated from the mapping code so they cannot drift from it.

Two kinds of tables:

- classes: which OCSF class/activity (ECS category/type) each event type and hook function gets,
  read from the plans the mappers use (`ocsf.ETYPE_PLANS`/`HOOK_PLANS`, `ecs.ETYPE_CLASSES`/
  `HOOK_CLASSES`) and the function tables of `_hooks`;
- fields: found by running the real mapper on sample events whose every value is distinct, and
  finding where each input value shows up in the output (equal, contained in a longer string,
  or converted: a time as epoch ms, a number as text).  A mapping the code does not do cannot
  appear, and one it does cannot be missing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

from tetrapipe.formats import _hooks
from tetrapipe.formats._common import epoch_ms


def _proc(numbers: Iterator[int], tag: str, pod: bool = True) -> dict[str, Any]:
    n = next(numbers)
    p: dict[str, Any] = {
        "exec_id": f"{tag}ExecId{n}", "pid": 40000 + n, "uid": 7000 + n, "cwd": f"/{tag}cwd{n}",
        "binary": f"/{tag}dir{n}/{tag}bin{n}", "arguments": f"{tag}arg{n}a {tag}arg{n}b",
        "flags": f"{tag}flags{n}", "start_time": f"2024-05-14T08:{n % 60:02d}:{n % 59:02d}.{n:09d}Z",
        "auid": 8000 + n, "tid": 50000 + n, "parent_exec_id": f"{tag}ParentId{n}"}
    if pod:
        p["pod"] = {"namespace": f"{tag}ns{n}", "name": f"{tag}pod{n}", "workload": f"{tag}workload{n}",
                    "workload_kind": f"{tag}Kind{n}", "pod_labels": {f"{tag}lk{n}": f"{tag}lv{n}"},
                    "container": {"id": f"{tag}runtime{n}://{tag}cid{n}", "name": f"{tag}cname{n}", "pid": 60000 + n,
                                  "image": {"id": f"{tag}repo{n}@sha256:{tag}digest{n}",
                                            "name": f"{tag}img{n}:{tag}tag{n}"}}}
    return p


def samples() -> list[tuple[str, str, dict[str, Any], dict[str, Any] | None]]:
    """(title, event type, body, egress) for every kind of event the mappings distinguish (the same every call)."""
    numbers = itertools.count(1000)

    def _kprobe(fn: str, args: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"process": proc("p"), "parent": proc("q", pod=False), "function_name": fn, "args": args,
                "policy_name": f"policy{next(numbers)}", "action": "KPROBE_ACTION_POST", **extra}

    def proc(tag: str, pod: bool = True) -> dict[str, Any]:
        return _proc(numbers, tag, pod)

    creds = {k: 900 + i for i, k in enumerate(("uid", "gid", "euid", "egid", "suid", "sgid", "fsuid", "fsgid"))}
    sock = {"family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP", "saddr": "10.244.7.7",
            "daddr": "198.51.100.9", "sport": 43210, "dport": 8443, "cookie": "123"}
    egress = {"zone": "zoneMarker", "external": True, "daddr": "198.51.100.9", "dport": 8443, "cidr": "0.0.0.0/0"}
    cred_proc = proc("p")
    cred_proc.update(cap={"effective": ["CAP_KILL"], "permitted": ["CAP_CHOWN"]}, process_credentials=creds,
                     binary_properties={"setuid": 0})
    return [
        ("process_exec", "process_exec", {"process": proc("p"), "parent": proc("q")}, None),
        ("process_exec with capabilities and credentials (enable-process-cred)", "process_exec",
         {"process": cred_proc, "parent": proc("q")}, None),
        ("process_exit", "process_exit", {"process": proc("p"), "parent": proc("q"), "status": 77,
                                          "signal": "SIGMARKER", "time": "2024-05-14T09:30:31.123456789Z"}, None),
        ("kprobe tcp_connect (sock_arg)", "process_kprobe", _kprobe("tcp_connect", [{"sock_arg": sock}]), egress),
        ("kprobe security_socket_connect (sockaddr_arg)", "process_kprobe", _kprobe(
            "security_socket_connect", [{"sockaddr_arg": {"family": "AF_INET", "addr": "198.51.100.9", "port": 8443}}]),
         egress),
        ("kprobe __sys_setuid", "process_kprobe", _kprobe("__sys_setuid", [{"int_arg": 0}]), None),
        ("kprobe security_kernel_module_request", "process_kprobe",
         _kprobe("security_kernel_module_request", [{"string_arg": "modNameMarker"}]), None),
        ("kprobe security_kernel_read_file (module)", "process_kprobe", _kprobe(
            "security_kernel_read_file", [{"file_arg": {"path": "/lib/modules/koMarker.ko"}}, {"int_arg": 2}]), None),
        ("kprobe do_init_module", "process_kprobe",
         _kprobe("do_init_module", [{"module_arg": {"name": "moduleArgMarker"}}]), None),
        ("kprobe bpf_check", "process_kprobe", _kprobe(
            "bpf_check", [{"bpf_attr_arg": {"ProgType": "BPF_PROG_TYPE_KPROBE", "InsnCnt": 31,
                                            "ProgName": "progNameMarker"}}]), None),
        ("kprobe security_bpf_map_create", "process_kprobe", _kprobe(
            "security_bpf_map_create", [{"bpf_map_arg": {"MapType": "BPF_MAP_TYPE_HASH", "MapName": "mapNameMarker"}}]),
         None),
        ("kprobe security_perf_event_alloc", "process_kprobe", _kprobe(
            "security_perf_event_alloc", [{"perf_event_arg": {"KprobeFunc": "kprobeFuncMarker", "Type": "T"}}]), None),
        ("kprobe security_file_permission", "process_kprobe", _kprobe(
            "security_file_permission", [{"file_arg": {"path": "/sys/fs/bpf/pathMarker"}}, {"int_arg": 4}]), None),
        ("kprobe, any other function", "process_kprobe", _kprobe(
            "cap_capable", [{"capability_arg": {"value": 34, "name": "CAP_SYSLOG"}}], **{"return": {"int_arg": -1}}),
         None),
        ("process_loader", "process_loader", {"process": proc("p"), "parent": proc("q"),
                                              "path": "/usr/lib/libMarker.so.3", "buildid": "q83vEjRWeJA="}, None),
        ("process_uprobe", "process_uprobe", {"process": proc("p"), "parent": proc("q"), "path": "/usr/bin/uprobeBin",
                                              "symbol": "symbolMarker", "policy_name": "uprobePolicy"}, None),
        ("process_usdt", "process_usdt", {"process": proc("p"), "parent": proc("q"), "path": "/usr/bin/usdtBin",
                                          "provider": "providerMarker", "name": "probeMarker"}, None),
        ("process_tracepoint", "process_tracepoint", {"process": proc("p"), "parent": proc("q"),
                                                      "subsys": "subsysMarker", "event": "tpEventMarker"}, None),
        ("process_lsm", "process_lsm", {"process": proc("p"), "parent": proc("q"),
                                        "function_name": "lsmHookMarker"}, None),
        ("process_throttle", "process_throttle", {"type": "THROTTLE_START", "cgroup": "cgroupMarker"}, None),
        ("rate_limit_info", "rate_limit_info", {"number_of_dropped_process_events": "424242"}, None),
        ("an unknown event type", "process_future_thing", {"process": proc("p"), "widget": {"level": 3}}, None),
    ]


def _leaves(value: Any, path: str, out: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            _leaves(v, f"{path}.{k}" if path else k, out)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            named = isinstance(v, dict) and isinstance(v.get("name"), str) and "value" in v  # key/value objects
            _leaves(v, f"{path}[name={v['name']}]" if named else f"{path}[{i}]", out)
    else:
        out.append((path, value))
    return out


def _matches(src: Any, dst: Any) -> bool:
    """Whether an output value came from an input value: equal, as text, as epoch ms, or cut out of it."""
    if isinstance(src, bool) or isinstance(dst, bool):
        return False
    if isinstance(src, int):
        return dst == src or dst == str(src)
    if not isinstance(src, str) or not isinstance(dst, str | int):
        return False
    if dst == src or dst == epoch_ms(src):
        return True
    if not isinstance(dst, str) or len(src) < 6:
        return False
    if src in dst or dst in src.split() or src.startswith(dst + "://"):
        return True
    if src.endswith(("/" + dst, "://" + dst, "@" + dst, ":" + dst)):
        return True
    return src.startswith(dst + ":") and not src.startswith(dst + ":/")  # image name before its tag


def trace(mapped: dict[str, Any], inputs: dict[str, Any], etype: str, skip: tuple[str, ...]) -> dict[str, list[str]]:
    """Input leaf path → the output leaf paths its value reached.

    Input paths are the event's (`process_kprobe.args[0].sock_arg.daddr`; the process and parent
    of any type as `process.*`/`parent.*`) and tetrapipe's tags (`tetrapipe.egress.zone`).
    """
    outs = [(p, v) for p, v in _leaves(mapped, "", []) if not p.startswith(skip)]
    found: dict[str, list[str]] = {}
    for path, value in _leaves(inputs, "", []):
        rel = _generic(path.removeprefix("event."))
        if rel.startswith((etype + ".process.", etype + ".parent.")):
            rel = rel[len(etype) + 1:]
        hits = sorted({_generic(p) for p, v in outs if _matches(value, v)})
        if hits:
            found.setdefault(rel, []).extend(h for h in hits if h not in found.get(rel, ()))
    return found


def _generic(path: str) -> str:
    """Marker-specific keys (pod label names) → a placeholder; list positions kept for args."""
    head, sep, _ = path.partition("pod_labels.")
    return head + sep + "<key>" if sep else path


def field_rows(mapper: Callable[..., dict[str, Any]], skip: tuple[str, ...]) -> list[tuple[str, dict[str, list[str]]]]:
    """(sample title, traced fields) for every sample, by running `mapper(event, etype, categories, groups, egress)`."""
    rows = []
    categories, groups = ("categoryMarker",), ("security",)
    for title, etype, body, egress in samples():
        event = {etype: body, "node_name": "nodeMarker", "time": "2024-05-14T09:30:00.987654321Z",
                 "cluster_name": "clusterMarker"}
        tags = {"categories": categories, "groups": groups, **({"egress": egress} if egress else {})}
        mapped = mapper(event, etype, categories, groups, egress)
        rows.append((title, trace(mapped, {"event": event, "tetrapipe": tags}, etype, skip)))
    return rows


def peer_lines(mapper: Callable[..., dict[str, Any]], target: str, skip: tuple[str, ...]) -> list[str]:
    """The peer table: a `tcp_connect` to a Service from a host process, run as
    `mapper(event, etype, categories, groups, egress, peer, source)` and traced like the samples."""
    title, etype, body, egress = samples()[3]
    event = {etype: body, "node_name": "nodeMarker", "time": "2024-05-14T09:30:00.987654321Z"}
    peer = {"kind": "service", "namespace": "peerNamespace", "name": "peerNameMarker", "workload": "peerWlName",
            "workload_kind": "peerKindMarker", "labels": {"peerLabelKey": "peerLabelValue"},
            "ip": "198.51.100.9", "services": ["peerServices"], "via": "peerVia"}
    source = {"kind": "node", "name": "sourceNodeMarker", "ip": "10.244.7.7", "via": "sourceVia"}
    mapped = mapper(event, etype, (), (), egress, peer, source)
    found = trace(mapped, {"tetrapipe": {"peer": peer, "source": source}}, etype, skip)
    return ["", "## Peers (`tetrapipe.peer`, `tetrapipe.source`)", "",
            f"Traced from a {title} to a Service, by a host process whose source address is a node's.", "",
            f"| tetrapipe field | {target} field(s) |", "|---|---|",
            *(f"| `{k}` | {', '.join(f'`{v}`' for v in vs)} |" for k, vs in found.items())]


def functions_of(kind: str, action: str) -> str:
    """The hook functions `_hooks` classifies as (kind, action), for the class tables."""
    names = [f"`{f}`" for f, hook in _hooks._STATIC.items() if hook == (kind, action)]
    special = {("kmod", "load"): "`security_kernel_read_file` with id 2", ("file", "read"):
               "`security_kernel_read_file` with another id, `security_file_permission` with MAY_READ",
               ("file", "update"): "`security_file_permission` with MAY_WRITE",
               ("file", "other"): "`security_file_permission` otherwise; any other hook whose first argument is a "
                                  "file, path or binprm",
               ("net", "connect"): "`tcp_set_state` to ESTABLISHED", ("net", "close"): "`tcp_set_state` to CLOSE",
               ("net", "other"): "`tcp_set_state` otherwise; any other hook with a socket argument",
               ("call", "syscall"): "any other hook named like a system call (`__x64_sys_*`, `sys_*`, …)",
               ("call", "function"): "any other hook (also connection hooks without a socket argument)"}
    if (kind, action) in special:
        names.append(special[(kind, action)])
    return ", ".join(names)


def markdown_fields(rows: list[tuple[str, dict[str, list[str]]]], target: str, rest: str) -> list[str]:
    """The field tables: the process/parent/top-level fields once (from process_exec), then per event kind the rest."""
    lines = ["## Fields", "", "Generated by tracing sample events through the mapper: each row is a Tetragon field "
             f"(or a tetrapipe tag) and the {target} fields its value reaches.", "",
             "### Process, parent, node, tags (process_exec)", "",
             f"| Tetragon field | {target} field(s) |", "|---|---|"]
    _, first = rows[0]
    lines += [f"| `{k}` | {', '.join(f'`{v}`' for v in vs)} |" for k, vs in first.items()]
    for title, found in rows[1:]:
        specific = {k: v for k, v in found.items() if not k.startswith("tetrapipe.") and k not in first}
        specific.update({k: v for k, v in found.items() if k.startswith("tetrapipe.egress.")})
        where = found.get("process.exec_id")
        lines += ["", f"### {title}", ""]
        if where:
            targets = ", ".join(f"`{w}`" for w in where)
            lines.append(f"The process (see above) goes to {targets} (its `uid`/`entity_id`).")
            lines.append("")
        if specific:
            lines += [f"| Tetragon field | {target} field(s) |", "|---|---|"]
            lines += [f"| `{k}` | {', '.join(f'`{v}`' for v in vs)} |" for k, vs in specific.items()]
        else:
            lines.append(f"No {target} fields beyond the process and the common ones (the rest is in {rest}).")
    return lines


def ocsf_markdown() -> str:
    from tetrapipe.formats import ocsf

    lines = ["# OCSF 1.7.0 mapping", "", "Generated from `tetrapipe/formats/ocsf.py` by `mapping_table_markdown()`;",
             "a test keeps this file equal to it. The module docstrings explain the decisions.", "",
             "## Classes", "", "| Tetragon event | OCSF class (class_uid) | activity (activity_id) | why |",
             "|---|---|---|---|"]
    for etype, plan in ocsf.ETYPE_PLANS.items():
        lines.append(_ocsf_class_row(f"`{etype}`", plan))
    for (kind, action), plan in ocsf.HOOK_PLANS.items():
        lines.append(_ocsf_class_row(f"`process_kprobe`: {functions_of(kind, action)}", plan))
    lines.append(_ocsf_class_row("any other event type", ocsf.UNKNOWN_PLAN))
    lines += ["", "Every event also has `severity_id`, `time`, `metadata` (`uid`, `labels`, `tags`, `profiles`, …), "
              "`device`, and `unmapped.tetragon` / `unmapped.tetrapipe` (see ocsf.py).", ""]

    def mapper(*args: Any) -> dict[str, Any]:
        return ocsf.to_ocsf(*args)[0]

    lines += markdown_fields(field_rows(mapper, ("unmapped.tetragon", "raw_data")), "OCSF", "`unmapped.tetragon`")
    lines += ["", "Everything of the event body besides `process` and `parent` is also kept verbatim under "
              "`unmapped.tetragon` (and unknown event types whole in `raw_data`)."]
    lines += peer_lines(lambda *a: ocsf.to_ocsf(*a[:5], peer=a[5], source=a[6])[0], "OCSF",
                        ("unmapped.tetragon", "raw_data"))
    return "\n".join(lines) + "\n"


def _ocsf_class_row(what: str, plan: Any) -> str:
    h = plan.head
    return (f"| {what} | {h['class_name']} ({h['class_uid']}) | {h['activity_name']} ({h['activity_id']}) "
            f"| {plan.why} |")


def ecs_markdown() -> str:
    from tetrapipe.formats import ecs

    lines = ["# ECS 9.4 mapping", "", "Generated from `tetrapipe/formats/ecs.py` by `mapping_table_markdown()`;",
             "a test keeps this file equal to it. The module docstrings explain the decisions.", "",
             "## Classes", "", "| Tetragon event | event.category | event.type | why |", "|---|---|---|---|"]
    for etype, head in ecs.ETYPE_CLASSES.items():
        lines.append(_ecs_class_row(f"`{etype}`", head))
    for (kind, action), head in ecs.HOOK_CLASSES.items():
        lines.append(_ecs_class_row(f"`process_kprobe`: {functions_of(kind, action)}", head))
    lines.append(_ecs_class_row("any other event type", ecs.UNKNOWN_CLASS))
    lines += ["", "Every document also has `@timestamp`, `ecs.version`, `event.kind`/`module`/`dataset`/`action`/"
              "`id`, and the custom `tetragon.*` / `tetrapipe.*` fields (see ecs.py).", ""]

    lines += markdown_fields(field_rows(ecs.to_ecs, ("tetragon.", "event.original")), "ECS", "`tetragon.*`")
    lines += ["", "Everything of the event body besides `process` and `parent` is also kept verbatim under "
              "`tetragon.*` (and unknown event types whole in `event.original`)."]
    lines += peer_lines(ecs.to_ecs, "ECS", ("tetragon.", "event.original"))
    return "\n".join(lines) + "\n"


def _ecs_class_row(what: str, head: Any) -> str:
    category = ", ".join(head[0]) or "—"
    kinds = ", ".join(head[1]) or "—"
    return f"| {what} | {category} | {kinds} | {head[2]} |"
