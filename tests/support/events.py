"""Minimal hand-made Tetragon events for rule edge cases (shapes as in Tetragon's protojson export)."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
TIME = "2024-05-14T09:00:00.123456789Z"


def process(binary: str = "/usr/bin/curl", arguments: str | None = "https://ebpf.io", *,
            pod: Obj | None = None, **extra: Any) -> Obj:
    proc: Obj = {"exec_id": "bm9kZToxOjE=", "pid": 4242, "uid": 1000, "cwd": "/", "binary": binary}
    if arguments is not None:
        proc["arguments"] = arguments
    if pod is not None:
        proc["pod"] = pod
    proc.update(extra)
    return proc


POD = {"namespace": "default", "name": "xwing",
       "container": {"id": "containerd://abc", "name": "spaceship", "image": {"name": "docker.io/tgraf/netperf"}}}


def exec_event(binary: str = "/usr/bin/curl", arguments: str | None = "https://ebpf.io", **proc_extra: Any) -> Obj:
    return {"process_exec": {"process": process(binary, arguments, **proc_extra),
                             "parent": {"exec_id": "bm9kZToxOjA=", "pid": 1, "binary": "/bin/sh"}},
            "node_name": "node-1", "time": TIME}


def kprobe_event(function: str, args: list[Obj] | None = None, *, policy: str | None = None,
                 binary: str = "/usr/bin/curl", **body_extra: Any) -> Obj:
    body: Obj = {"process": process(binary), "function_name": function}
    if args is not None:
        body["args"] = args
    if policy is not None:
        body["policy_name"] = policy
    body.update(body_extra)
    return {"process_kprobe": body, "node_name": "node-1", "time": TIME}


def sock(daddr: str, dport: int = 443, saddr: str = "10.244.1.5", sport: int = 40000) -> Obj:
    return {"sock_arg": {"family": "AF_INET6" if ":" in daddr else "AF_INET", "type": "SOCK_STREAM",
                         "protocol": "IPPROTO_TCP", "saddr": saddr, "daddr": daddr, "sport": sport, "dport": dport,
                         "cookie": "18446", "state": "TCP_SYN_SENT"}}
