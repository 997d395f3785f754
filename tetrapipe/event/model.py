"""A typed, partial model of Tetragon's JSON export (protojson, snake_case names).

Only the fields the shipped rules, summaries, egress classification and sink
mappings read are typed here: msgspec skips everything else without building
Python objects for it, which is what makes one decode per event cheap.  Fields
a user rule names that this model lacks are still reachable: the path compiler
(`tetrapipe.rules.paths`) falls back to a generic decode of the event for them.

Sub-objects whose *presence* matters more than their shape (`binary_properties`,
`process_credentials`, kprobe `args`) stay plain dicts, so that a key present
with value 0 (root!) is distinguishable from an absent one.

Schema: cilium/tetragon api/v1/tetragon/tetragon.proto and events.proto.
"""

from __future__ import annotations

from typing import Any

import msgspec

Obj = dict[str, Any]


# Every typed field costs an allocation per event (and its release), so the
# model holds what rules, summaries and sink mappings read — no more.


class Image(msgspec.Struct, gc=False):
    name: str | None = None


class Container(msgspec.Struct, gc=False):
    id: str | None = None
    name: str | None = None
    image: Image | None = None


class Pod(msgspec.Struct, gc=False):
    namespace: str | None = None
    name: str | None = None
    container: Container | None = None


class Process(msgspec.Struct, gc=False):
    exec_id: str | None = None
    pid: int | None = None
    uid: int | None = None
    cwd: str | None = None
    binary: str | None = None
    arguments: str | None = None
    pod: Pod | None = None
    parent_exec_id: str | None = None
    process_credentials: Obj | None = None
    binary_properties: Obj | None = None


class Parent(msgspec.Struct, gc=False):
    exec_id: str | None = None
    pid: int | None = None
    binary: str | None = None


class EventBody(msgspec.Struct, gc=False):
    """The object under an event-type key (process_exec, process_kprobe, ...).

    One struct serves every type: the types share `process`/`parent`, and the
    type-specific fields are simply absent where they do not apply.
    """

    process: Process | None = None
    parent: Parent | None = None
    # process_kprobe / tracepoint / uprobe / lsm / usdt
    function_name: str | None = None
    policy_name: str | None = None
    args: list[Obj] | None = None
    action: str | None = None
    # process_tracepoint
    subsys: str | None = None
    event: str | None = None
    # process_uprobe / usdt: path and symbol; process_loader: path
    path: str | None = None
    symbol: str | None = None


class TetragonEvent(msgspec.Struct, gc=False):
    """One exported event: exactly one event-type key is normally set."""

    time: str | None = None
    node_name: str | None = None
    cluster_name: str | None = None
    process_exec: EventBody | None = None
    process_exit: EventBody | None = None
    process_kprobe: EventBody | None = None
    process_tracepoint: EventBody | None = None
    process_uprobe: EventBody | None = None
    process_lsm: EventBody | None = None
    process_usdt: EventBody | None = None
    process_loader: EventBody | None = None
    process_throttle: Obj | None = None
    rate_limit_info: Obj | None = None
    # Set only when re-processing tetrapipe's own output; lets the output step
    # replace the key without scanning every event's bytes for it.
    tetrapipe: Obj | None = None


class LeanPod(msgspec.Struct, gc=False):
    namespace: str | None = None
    name: str | None = None


class LeanCredentials(msgspec.Struct, gc=False):
    """The credentials the shipped summaries print, as a struct rather than a dict: no object per key,
    and nothing the cycle collector tracks.  An absent key stays None (what `.get` gave; protojson
    omits zeros, so uid 0 may be absent or 0 as received); other keys are read from the full model."""

    uid: int | None = None
    gid: int | None = None
    euid: int | None = None
    egid: int | None = None


class LeanProcess(msgspec.Struct, gc=False):
    binary: str | None = None
    arguments: str | None = None
    pod: LeanPod | None = None
    binary_properties: Obj | None = None
    process_credentials: LeanCredentials | None = None


class LeanBody(msgspec.Struct, gc=False):
    process: LeanProcess | None = None
    function_name: str | None = None
    policy_name: str | None = None
    args: list[Obj] | None = None
    path: str | None = None


class LeanEvent(msgspec.Struct, gc=False):
    """What every event is decoded into, once: the fields the shipped rules, their summaries and `classify` read.

    A tagged event is rendered from this view too (its summaries read only
    these fields), so no event of the shipped library is decoded twice; the
    few strings the summaries add cost about 0.1 µs per event, a second typed
    decode of a tagged event about 2 µs with its release.  The full model is
    decoded only when something asks for it (sinks that map attributes, rules
    or templates over fields not typed here).
    """

    time: str | None = None
    node_name: str | None = None
    process_exec: LeanBody | None = None
    process_exit: LeanBody | None = None
    process_kprobe: LeanBody | None = None
    process_tracepoint: LeanBody | None = None
    process_uprobe: LeanBody | None = None
    process_lsm: LeanBody | None = None
    process_usdt: LeanBody | None = None
    process_loader: LeanBody | None = None
    process_throttle: Obj | None = None
    rate_limit_info: Obj | None = None
    tetrapipe: Obj | None = None


# Ordered by how common each type is in a real export, because the type is
# found by probing these attributes in turn.
KNOWN_TYPES: tuple[str, ...] = (
    "process_exec",
    "process_exit",
    "process_kprobe",
    "process_loader",
    "process_tracepoint",
    "process_uprobe",
    "process_lsm",
    "process_usdt",
    "process_throttle",
    "rate_limit_info",
)

# Top-level keys that are not the event type.
COMMON_KEYS = frozenset({"time", "node_name", "cluster_name", "aggregation_info", "tetrapipe"})
