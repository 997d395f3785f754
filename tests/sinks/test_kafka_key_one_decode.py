"""One decode per event: the Kafka sink's keys (`node`, `pod`, `exec_id`), headers and routes read the one
decoded view, never the full typed model (`Decoded.root`, decoded lazily on first access) — and give what the
full model says, on every synthetic scenario and on hostile shapes."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import synth
from tetrapipe.event.decode import Decoded, LineDecoder
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.pipeline.processor import Processor
from tetrapipe.sinks.kafka.routing import Router, event_key

GROUPS = {"sudo": "security", "suid": "security", "egress": "network", "ebpf": "system"}
KEYS = ("node", "pod", "exec_id")


def full_model_key(decoded: Decoded, strategy: str) -> Any:
    """What the key is by the full typed model (the reference the lean reading must equal)."""
    def field(obj: Any, name: str) -> Any:
        return None if obj is None else obj.get(name) if type(obj) is dict else getattr(obj, name, None)
    if strategy == "node":
        return field(decoded.root, "node_name")
    process = field(decoded.body, "process")
    if strategy == "exec_id":
        return field(process, "exec_id")
    pod = field(process, "pod")
    namespace, name = field(pod, "namespace"), field(pod, "name")
    return f"{namespace}/{name}" if namespace and name else None


@pytest.mark.parametrize("scenario", sorted(synth.SCENARIOS))
def test_keys_headers_and_routes_never_decode_the_full_model(processor: Processor, scenario: str) -> None:
    lines = list(synth.generate(100, seed=11, mix={scenario: 1.0}))
    batch = Batch([Envelope(line, i, (b"src", (("trace", b"1"),))) for i, line in enumerate(lines)])
    processor.process(batch)
    routers = [Router("t.{group}.{event_type}", GROUPS, key=k, default_topic="t.other") for k in KEYS]  # type: ignore[arg-type]
    checked = 0
    for env in batch.envelopes:
        decoded = env.decoded
        if decoded is None:
            continue
        for router in routers:
            router.headers(env, router.route(env))
            got = router.key(env)
            want = full_model_key(LineDecoder().decode(decoded.raw), router.key_strategy)
            assert got == (want.encode() if want else b"src")
        if type(decoded.view) is not dict:  # a generic view is the one decode of an event that fits no model
            assert decoded._root is None, f"{scenario}: a key, header or route decoded the full model"
            checked += 1
    assert checked or scenario in _FITTING_NO_MODEL, f"{scenario}: no event with the lean view was checked"


_FITTING_NO_MODEL = ("unknown",)  # event types Tetragon does not define: the generic view only


_json = st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                    max_size=3),
                     max_leaves=6)
_value = st.one_of(st.text(max_size=8), st.none(), _json)


def _maybe(d: dict[str, Any], key: str, value: Any) -> None:
    if value is not _ABSENT:
        d[key] = value


_ABSENT = object()
_slot = st.one_of(st.just(_ABSENT), _value)


@settings(max_examples=300, deadline=None)
@given(etype=st.sampled_from(("process_exec", "process_kprobe", "process_exit", "process_throttle")),
       node=_slot, exec_id=_slot, namespace=_slot, name=_slot, pod=st.one_of(st.just(_ABSENT), _json),
       process=st.one_of(st.just(_ABSENT), _json),
       pid=st.one_of(st.just(_ABSENT), st.integers(-(2**63), 2**63 - 1), st.text()))
def test_lean_keys_equal_the_full_models_on_any_shape(etype: str, node: Any, exec_id: Any, namespace: Any, name: Any,
                                                      pod: Any, process: Any, pid: Any) -> None:
    if process is _ABSENT:
        process = {}
        _maybe(process, "exec_id", exec_id)
        _maybe(process, "pid", pid)  # a pid the full model refuses (text) makes it fall back to plain dicts
        if pod is _ABSENT:
            pod = {}
            _maybe(pod, "namespace", namespace)
            _maybe(pod, "name", name)
        process["pod"] = pod
    event: dict[str, Any] = {etype: {"process": process}}
    _maybe(event, "node_name", node)
    raw = orjson.dumps(event)
    for strategy in KEYS:
        decoded = LineDecoder().decode(raw)
        assert decoded is not None
        assert event_key(decoded, strategy) == full_model_key(LineDecoder().decode(raw), strategy)
        if type(decoded.view) is not dict and strategy != "exec_id":
            assert decoded._root is None
