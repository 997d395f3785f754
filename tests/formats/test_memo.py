"""The memos (keyed by container id, pod) are exact: a hit returns what mapping afresh would.

A forged or garbled event that reuses a known exec_id or container id with other values — of
another type too: True == 1 in Python — must map as if nothing were memoised.  (The process core
is no longer memoised by exec_id — it cost more than it saved — and the test keeps that case.)
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tetrapipe.formats import ecs_objects, ocsf_objects
from tetrapipe.formats.ecs import encode_ecs
from tetrapipe.formats.ocsf import encode_ocsf

EXEC = {"process_exec": {
    "process": {"exec_id": "bm9kZToxMjM6NDI=", "pid": 42, "uid": 1000, "cwd": "/app", "binary": "/usr/bin/curl",
                "arguments": "-s http://x", "start_time": "2024-05-14T09:00:00.123456789Z", "tid": 42,
                "pod": {"namespace": "shop", "name": "cart-1", "pod_labels": {"app": "cart"},
                        "container": {"id": "containerd://abc", "name": "app", "pid": 7,
                                      "image": {"id": "docker.io/cart@sha256:1", "name": "docker.io/cart:1.2"}}}},
    "parent": {"exec_id": "bm9kZToxMjM6MQ==", "pid": 1, "uid": 0, "binary": "/bin/sh",
               "start_time": "2024-05-14T08:00:00.000000001Z"}},
    "node_name": "node-1", "time": "2024-05-14T09:00:01.000000001Z"}
PATHS = [("process", k) for k in ("pid", "uid", "cwd", "binary", "arguments", "start_time", "tid")] + \
        [("parent", k) for k in ("pid", "uid", "binary", "start_time")] + \
        [("process", "pod", "pod_labels", "app"), ("process", "pod", "container", "name"),
         ("process", "pod", "container", "image", "name"), ("process", "pod", "container", "image")]
ODD = st.sampled_from([True, False, 1, 0, 1.0, 42.0, "42", "1", None, [], [1], {}, {"a": 1}, "", "x", -1, 2**70])


def _fresh(fn: Any, event: dict[str, Any]) -> bytes:
    for memo in (ocsf_objects._CONTAINERS, ecs_objects._PODS):
        memo.clear()
    return fn(event)


def _ocsf(event: dict[str, Any]) -> bytes:
    return encode_ocsf(event, "process_exec", (), (), None)


def _ecs(event: dict[str, Any]) -> bytes:
    return encode_ecs(event, "process_exec", (), (), None)


@given(path=st.sampled_from(PATHS), value=ODD)
def test_a_known_exec_id_with_other_values_maps_as_if_nothing_were_memoised(path: tuple[str, ...], value: Any) -> None:
    changed = copy.deepcopy(EXEC)
    target = changed["process_exec"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    for fn in (_ocsf, _ecs):
        fresh = _fresh(fn, changed)
        fn(EXEC)  # the real process is memoised now, under the same exec_id and container id
        assert fn(changed) == fresh, path
        assert fn(EXEC) == _fresh(fn, EXEC)  # and the forged one did not change what the real one maps to


def test_memo_hits_return_the_same_bytes() -> None:
    for fn in (_ocsf, _ecs):
        first = _fresh(fn, EXEC)
        assert fn(EXEC) == fn(copy.deepcopy(EXEC)) == first
        assert orjson.loads(first)  # valid JSON
