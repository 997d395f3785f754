"""The formats' fast path (`_typed.typed_event`: process and parent as typed structs) maps to exactly the bytes
the reference path (the event as plain dicts) gives, or declines (None) and the reference maps the event.

Over the real and synthetic corpus, over copies with one field of any depth replaced by a value of another
type, and with the per-exec memos warmed by the other path first (the paths share them).
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.formats.corpus import Input, docs_inputs, odd_variants, synthetic_inputs
from tests.formats.test_memo import EXEC, ODD, PATHS
from tetrapipe.formats import _typed, ecs_objects, ecs_typed, ocsf_objects, ocsf_typed
from tetrapipe.formats._typed import TProcess, typed_event
from tetrapipe.formats.ecs import encode_ecs
from tetrapipe.formats.ocsf import encode_ocsf

PEER = {"kind": "service", "name": "db", "namespace": "shop", "labels": {"app": "db"}}


@pytest.fixture(scope="module")
def inputs(processor: Any) -> list[Input]:
    return docs_inputs(processor) + synthetic_inputs(processor)


_raw = msgspec.json.encode  # as the decoder got it (orjson cannot encode integers past 64 bits)


def _clear() -> None:
    for memo in (ocsf_objects._CORES, ocsf_objects._CONTAINERS, ocsf_objects._PODS, ocsf_typed._TCONTAINERS,
                 *ocsf_typed._MAPPED, ecs_objects._CORES, ecs_objects._PODS, *ecs_typed._MAPPED, _typed._PROCESSES):
        memo.clear()


def _both(event: dict[str, Any], etype: str, cats: tuple[str, ...] = (), groups: tuple[str, ...] = (),
          egress: Any = None, peer: Any = None) -> list[bytes]:
    return [encode_ocsf(event, etype, cats, groups, egress, findings=True, peer=peer, source=peer),
            encode_ecs(event, etype, cats, groups, egress, peer, peer)]


def _check(event: dict[str, Any], etype: str, *rest: Any, fresh: bool = True) -> bool:
    """Fast == reference (when the fast path takes the event); True when it took it."""
    if not ecs_objects.is_date(event.get("time")):  # else both map it to the time of mapping: not comparable
        event = {**event, "time": "2024-05-14T09:00:00.123456789Z"}
    raw = _raw(event)
    typed = typed_event(raw, etype)
    if typed is None:
        return False
    if fresh:
        _clear()
    reference = _both(msgspec.json.decode(raw), etype, *rest)
    assert _both(typed, etype, *rest) == reference
    if fresh:
        _clear()  # the other order: the fast path fills the memos the reference then hits
        fast = _both(typed, etype, *rest)
        assert _both(msgspec.json.decode(raw), etype, *rest) == fast == reference
    return True


def test_the_fast_path_maps_every_corpus_event_as_the_reference(inputs: list[Input]) -> None:
    taken = 0
    for i in inputs:
        taken += _check(i.event, i.etype, i.categories, i.groups, i.egress, fresh=False)
        taken += _check(i.event, i.etype, i.categories, i.groups, i.egress, PEER, fresh=False)
    assert taken > 1.5 * len(inputs)  # most events take it (not the unknown types, throttle, rate limits)


def test_the_fast_path_holds_its_process_typed(inputs: list[Input]) -> None:
    typed = typed_event(_raw(EXEC), "process_exec")
    assert typed is not None
    assert type(typed["process_exec"]["process"]) is TProcess
    assert type(typed["process_exec"]["parent"]) is TProcess


def test_odd_values_anywhere_map_as_the_reference_or_take_the_reference_path(inputs: list[Input]) -> None:
    for i, _path, _odd, event in odd_variants(inputs):
        _check(event, i.etype, i.categories, i.groups, i.egress)


@given(path=st.sampled_from(PATHS), value=ODD)
def test_a_known_exec_id_with_other_values_maps_as_the_reference(path: tuple[str, ...], value: Any) -> None:
    changed = copy.deepcopy(EXEC)
    target = changed["process_exec"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    _clear()
    reference = _both(changed, "process_exec")
    for warm in (EXEC, changed):  # the real process memoised first, by either path
        for form in (typed_event(_raw(warm), "process_exec"), warm):
            if form is None:
                continue
            _clear()
            _both(form, "process_exec")
            fast = typed_event(_raw(changed), "process_exec")
            assert _both(fast if fast is not None else changed, "process_exec") == reference, path


def test_a_process_seen_again_is_one_object_and_maps_from_the_memo() -> None:
    _clear()
    first, again = (typed_event(_raw(EXEC), "process_exec") for _ in range(2))
    assert first is not None and again is not None
    assert first["process_exec"]["process"] is again["process_exec"]["process"]
    before = _both(first, "process_exec")
    assert _both(again, "process_exec") == before == _both(copy.deepcopy(EXEC), "process_exec")
    moved = copy.deepcopy(EXEC)  # the same exec_id with another pid: another object, mapped afresh
    moved["process_exec"]["process"]["pid"] = 43
    other = typed_event(_raw(moved), "process_exec")
    assert other is not None and other["process_exec"]["process"] is not first["process_exec"]["process"]
    assert _both(other, "process_exec") == _both(moved, "process_exec") != before


def test_events_the_structs_cannot_hold_take_the_reference_path() -> None:
    for etype, body in (("process_exec", {"process": {"exec_id": "x", "pid": "1"}}),
                        ("process_exec", {"process": {"pid": 1}}),
                        ("process_exec", {"process": {"exec_id": "x", "pid": 1, "uid": True}}),
                        ("process_exec", {"parent": {}}),
                        ("process_future_thing", {"process": {"exec_id": "x", "pid": 1}}),
                        ("process_throttle", {"type": "THROTTLE_START"})):
        assert typed_event(_raw({etype: body}), etype) is None, body
