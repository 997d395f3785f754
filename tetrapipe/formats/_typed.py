"""The fast path of the OCSF and ECS formats: the event decoded with `process`/`parent` as typed structs.

`typed_event(raw, etype)` returns the event as `Decoded.generic_root()` would (plain dicts, keys in
input order) except that the body's `process` and `parent` are `TProcess` structs holding exactly the
fields the mappings read: msgspec builds them in C without a dict per level, and the mappings read
attributes whose types msgspec already checked (no `.get`, no `type(...) is` per field).  The other
values are decoded as the generic decode would, so what the mappings copy verbatim is unchanged.

It returns None (the caller maps `generic_root()` instead, the reference path) for anything the
structs cannot hold exactly: a value of another type (a string pid, `true` for an int, integers past
64 bits), a process without an exec_id or pid, an event type the mappings have no class for (their
`raw_data`/`event.original` copies the whole event), or JSON the generic decode would reject.
Mapping a `TProcess` gives byte for byte what mapping its dict gives (tests/formats/test_typed.py).
"""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.structs
from msgspec import UNSET, UnsetType

from tetrapipe.formats._common import memo_put


class TImage(msgspec.Struct, gc=False):
    id: str | None = None
    name: str | None = None


class TContainer(msgspec.Struct, gc=False):
    id: str | None = None
    name: str | None = None
    image: TImage | None = None
    pid: int | None = None


class TPod(msgspec.Struct, gc=False):
    namespace: str | None = None
    name: str | None = None
    container: TContainer | None = None
    pod_labels: dict[str, str] | None = None
    workload: str | None = None
    workload_kind: str | None = None


class TProcess(msgspec.Struct, gc=False):
    exec_id: str | None = None
    pid: int | None = None
    uid: int | None = None
    cwd: str | None = None
    binary: str | None = None
    arguments: str | None = None
    start_time: str | None = None
    tid: int | None = None
    pod: TPod | None = None
    # copied verbatim (unmapped.tetragon.process / tetragon.process): any JSON, absent = UNSET
    auid: Any = UNSET
    flags: Any = UNSET
    cap: Any = UNSET
    binary_properties: Any = UNSET
    process_credentials: Any = UNSET
    in_init_tree: Any = UNSET


FAST_TYPES = ("process_exec", "process_exit", "process_kprobe", "process_loader", "process_uprobe", "process_usdt",
              "process_tracepoint", "process_lsm")
"""Event types with a process whose class both mappings know: the ones the fast path takes."""
_Body = dict[str, msgspec.Raw] | UnsetType


class _Top(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """The top level: only the keys Tetragon sends (another key: the reference path copies it verbatim)."""

    time: Any = UNSET
    node_name: Any = UNSET
    cluster_name: Any = UNSET
    tetrapipe: Any = UNSET
    process_exec: _Body = UNSET
    process_exit: _Body = UNSET
    process_kprobe: _Body = UNSET
    process_loader: _Body = UNSET
    process_uprobe: _Body = UNSET
    process_usdt: _Body = UNSET
    process_tracepoint: _Body = UNSET
    process_lsm: _Body = UNSET


_top = msgspec.json.Decoder(_Top).decode
_process = msgspec.json.Decoder(TProcess | None).decode
_value = msgspec.json.Decoder().decode
_COMMON = ("time", "node_name", "cluster_name", "tetrapipe")


def typed_event(raw: bytes, etype: str) -> dict[str, Any] | None:
    """The event with its process and parent typed (see the module docstring), or None."""
    try:
        top = _top(raw)
        body_raw = getattr(top, etype, UNSET)
        if body_raw is UNSET:
            return None
        body: dict[str, Any] = {}
        for key, value in body_raw.items():
            body[key] = _typed_process(value) if key == "process" or key == "parent" else _value(value)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    proc = body.get("process")
    if proc is None or not proc.exec_id or proc.pid is None:
        return None
    event: dict[str, Any] = {etype: body}
    fields = msgspec.structs.astuple(top)
    for key, value in zip(_COMMON, fields, strict=False):
        if value is not UNSET:
            event[key] = value
    if len(fields) - fields.count(UNSET) != len(event):
        return None  # two event-type keys: the reference copies the other one into the output
    return event


_PROCESSES: dict[bytes, TProcess | None] = {}  # a process's JSON -> its struct: one object per distinct process


def _typed_process(value: msgspec.Raw) -> TProcess | None:
    """The struct of a process's JSON: the same object for the same bytes, while memoised.

    A process appears in many events (its exec, its hooks, its exit; a parent in its children's
    execs) with the same bytes; one object for them spares its decode, and lets the mappings memoise
    what they build from it by identity (`ocsf_typed.process`, `ecs_typed.process`).
    """
    text = bytes(value)
    hit = _PROCESSES.get(text)
    if hit is None:
        hit = _process(text)
        memo_put(_PROCESSES, text, hit)
    return hit


def extras(p: TProcess, names: tuple[str, ...]) -> dict[str, Any]:
    """The verbatim fields `names` a typed process has, in that order (as `{k: p[k] for k in names if k in p}`)."""
    out = {}
    for name in names:
        v = getattr(p, name)
        if v is not UNSET:
            out[name] = v
    return out
