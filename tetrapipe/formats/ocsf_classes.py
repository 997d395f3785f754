"""Class-specific parts of the OCSF mapping: one builder per (class, kind of Tetragon event).

A builder fills what its class requires beyond the common attributes `ocsf.py` sets (class,
activity, time, severity, metadata, device, unmapped): `actor`, `process`, `driver`, `kernel`,
`module`, `file`, endpoints.  Builders only add keys to `out`; none raises on missing fields
(a required object gets the best value available, e.g. a file named "unknown").

Actor and process (OCSF's convention): `actor.process` is the process that did the activity.
For a Launch it is the parent and `process` the launched one; for a Terminate and a Set User
ID the activity is reflexive and both are the event's process (one object, shared).  For every
other class `actor.process` is the event's process with its `parent_process`.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable
from typing import Any

from tetrapipe.formats import ocsf_objects as obj
from tetrapipe.formats._common import epoch_ms, first_arg
from tetrapipe.formats._hooks import file_path, is_syscall, module_name

Builder = Callable[[dict[str, Any], dict[str, Any], dict[str, Any], Any], None]  # (out, event, body, egress)


def text(*values: Any, default: str = "unknown") -> str:
    """The first of `values` that is a non-empty string (input fields may hold anything)."""
    for v in values:
        if type(v) is str and v:
            return v
    return default


def actor_of(body: dict[str, Any]) -> dict[str, Any] | None:
    """`{"process": …}` of a hook/loader event's process (with its parent), or None without one."""
    p = body.get("process")
    if type(p) is not dict or not obj.identified(p):
        return None
    return {"process": obj.process(p, body.get("parent"))}


def launch(out: dict[str, Any], event: dict[str, Any], body: dict[str, Any], egress: Any) -> None:
    p = body.get("process")
    proc = obj.process(p) if type(p) is dict else {}
    parent = obj.parent_process(body.get("parent"))
    if parent is not None:
        proc["parent_process"] = parent
        out["actor"] = {"process": parent}
    else:
        out["actor"] = {"process": proc}
    out["process"] = proc
    out["launch_type_id"], out["launch_type"] = 3, "Exec"  # Tetragon's process_exec is an execve


def terminate(out: dict[str, Any], event: dict[str, Any], body: dict[str, Any], egress: Any) -> None:
    _reflexive(out, body)
    status = body.get("status")
    if type(status) is int:
        out["exit_code"] = status
    ended = epoch_ms(body.get("time"))  # the exit's own time (the event's `time` may be later)
    if ended is not None and out["process"]:
        out["process"]["terminated_time"] = ended


def set_user_id(out: dict[str, Any], event: dict[str, Any], body: dict[str, Any], egress: Any) -> None:
    _reflexive(out, body)


def _reflexive(out: dict[str, Any], body: dict[str, Any]) -> None:
    p = body.get("process")
    proc = obj.process(p, body.get("parent")) if type(p) is dict else {}
    out["process"] = proc
    out["actor"] = {"process": proc}


def _actor(out: dict[str, Any], body: dict[str, Any]) -> None:
    actor = actor_of(body)
    if actor is not None:
        out["actor"] = actor


def kernel_module(out: dict[str, Any], event: dict[str, Any], body: dict[str, Any], egress: Any) -> None:
    _actor(out, body)
    name, path = module_name(body)
    out["driver"] = {"file": obj.file_object(path, name, obj.FILE_REGULAR if path else obj.FILE_UNKNOWN)}


def bpf_program(out: dict[str, Any], event: dict[str, Any], body: dict[str, Any], egress: Any) -> None:
    _actor(out, body)
    attr = first_arg(body, 0, "bpf_attr_arg")
    attr = attr if type(attr) is dict else {}
    name = text(attr.get("ProgName"), attr.get("ProgType"), default="bpf_prog")
    out["driver"] = {"file": obj.file_object(None, name, obj.FILE_OTHER, "eBPF Program")}


_KOBJ = {"bpf_map": ("bpf_map_arg", ("MapName", "MapType"), "BPF Map"),
         "perf_event": ("perf_event_arg", ("KprobeFunc", "Type"), "Perf Event")}


def kernel_object(action: str) -> Builder:
    arg_kind, name_keys, type_name = _KOBJ[action]

    def build(out: dict[str, Any], event: dict[str, Any], body: dict[str, Any], egress: Any) -> None:
        _actor(out, body)
        arg = first_arg(body, 0, arg_kind)
        arg = arg if type(arg) is dict else {}
        name = text(arg.get(name_keys[0]), arg.get(name_keys[1]), default=type_name)
        out["kernel"] = {"name": name, "type_id": 99, "type": type_name}

    return build


def kernel_call(out: dict[str, Any], event: dict[str, Any], body: dict[str, Any], egress: Any) -> None:
    """Any other hook: a kernel function (or system call) was invoked."""
    _actor(out, body)
    fn = text(body.get("function_name"))
    out["kernel"] = ({"name": fn, "type_id": 2, "type": "System Call"} if is_syscall(fn)
                     else {"name": fn, "type_id": 99, "type": "Kernel Function"})


def tracepoint(out: dict[str, Any], event: dict[str, Any], body: dict[str, Any], egress: Any) -> None:
    _actor(out, body)
    subsys, name = text(body.get("subsys"), default=""), text(body.get("event"))
    full = f"{subsys}/{name}" if subsys else name
    out["kernel"] = ({"name": full, "type_id": 2, "type": "System Call"} if subsys in ("syscalls", "raw_syscalls")
                     else {"name": full, "type_id": 99, "type": "Tracepoint"})


def lsm_hook(out: dict[str, Any], event: dict[str, Any], body: dict[str, Any], egress: Any) -> None:
    _actor(out, body)
    out["kernel"] = {"name": text(body.get("function_name")), "type_id": 99, "type": "LSM Hook"}


def file_access(out: dict[str, Any], event: dict[str, Any], body: dict[str, Any], egress: Any) -> None:
    _actor(out, body)
    out["file"] = obj.file_object(file_path(body))


def loader(out: dict[str, Any], event: dict[str, Any], body: dict[str, Any], egress: Any) -> None:
    _actor(out, body)
    path = body.get("path")
    f = obj.file_object(path if type(path) is str else None, type_id=obj.FILE_REGULAR)
    build_id = body.get("buildid")
    if type(build_id) is str and build_id:
        with contextlib.suppress(ValueError):  # not base64: no hash (the id stays in unmapped.tetragon)
            f["hashes"] = [{"algorithm_id": 99, "algorithm": "GNU Build ID",
                            "value": base64.b64decode(build_id, validate=True).hex()}]
    out["module"] = {"file": f, "load_type_id": 1, "load_type": "Standard", "type": "Shared Library"}


def uprobe(out: dict[str, Any], event: dict[str, Any], body: dict[str, Any], egress: Any) -> None:
    _actor(out, body)
    path, symbol = body.get("path"), body.get("symbol")
    out["module"] = {"file": obj.file_object(path if type(path) is str else None, type_id=obj.FILE_REGULAR),
                     "function_name": text(symbol)}


def usdt(out: dict[str, Any], event: dict[str, Any], body: dict[str, Any], egress: Any) -> None:
    _actor(out, body)
    path, provider, name = body.get("path"), text(body.get("provider"), default=""), text(body.get("name"))
    out["module"] = {"file": obj.file_object(path if type(path) is str else None, type_id=obj.FILE_REGULAR),
                     "function_name": f"{provider}:{name}" if provider else name}


def _tetragon_log(out: dict[str, Any]) -> None:
    out["actor"] = {"app_name": "tetragon"}
    out["log_name"], out["log_provider"], out["log_type_id"], out["log_type"] = (
        "tetragon", "Tetragon", 2, "Application")


def throttle(out: dict[str, Any], event: dict[str, Any], body: dict[str, Any], egress: Any) -> None:
    _tetragon_log(out)
    kind, cgroup = body.get("type"), body.get("cgroup")
    state = "started" if kind == "THROTTLE_START" else "stopped" if kind == "THROTTLE_STOP" else "changed"
    out["message"] = f"Tetragon throttling of process events {state} for cgroup {cgroup}"


def rate_limit(out: dict[str, Any], event: dict[str, Any], body: dict[str, Any], egress: Any) -> None:
    _tetragon_log(out)
    out["message"] = f"Tetragon dropped {body.get('number_of_dropped_process_events')} process events (rate limit)"


def base(out: dict[str, Any], event: dict[str, Any], body: dict[str, Any], egress: Any) -> None:
    """Unknown event types: the original stays in `raw_data`; a process, if any, becomes the actor."""
    _actor(out, body)
