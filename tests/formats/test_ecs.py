"""ECS 9.4 mapping: every document of every type and category validates, the decisions hold, docs are current."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.formats import ecs_validator as schema
from tests.formats.corpus import Input, docs_inputs, odd_variants, synthetic_inputs
from tetrapipe.formats import ecs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "ecs.md"
Mapped = list[tuple[Input, dict[str, Any]]]

# What Elastic's Tetragon integration (elastic/integrations, packages/tetragon, data_stream/log/_dev/test/
# pipeline/test-execkprobe-log.log-expected.json) makes of the cap_capable event that is also in
# tests/data/docs-examples.jsonl: the ECS fields both mappings set must agree.
ELASTIC_INTEGRATION_CAP_CAPABLE = {
    "container.name": "spaceship", "container.image.name": "docker.io/tgraf/netperf:latest",
    "host.name": "kind-control-plane", "orchestrator.namespace": "default", "orchestrator.resource.name": "xwing",
    "process.entity_id": "a2luZC1jb250cm9sLXBsYW5lOjEyODQyNzgzMzUwNjg0OjczODYw", "process.executable": "/bin/dmesg",
    "process.pid": 73860, "process.start": "2023-07-06T10:13:33.834390020Z", "process.thread.id": 73860,
    "process.user.id": "0", "process.working_directory": "/",
    "process.parent.entity_id": "a2luZC1jb250cm9sLXBsYW5lOjEyODQyMTI3MTIwOTcyOjczODUw",
    "process.parent.executable": "/bin/bash", "process.parent.pid": 73850,
    "process.parent.start": "2023-07-06T10:13:33.178160018Z", "process.parent.thread.id": 73850,
    "process.parent.user.id": "0", "process.parent.working_directory": "/",
}


@pytest.fixture(scope="module")
def inputs(processor: Any) -> list[Input]:
    return docs_inputs(processor) + synthetic_inputs(processor)


@pytest.fixture(scope="module")
def mapped(inputs: list[Input]) -> Mapped:
    return [(i, ecs.to_ecs(*i[:5])) for i in inputs]


def _flat(doc: dict[str, Any]) -> dict[str, Any]:
    return dict(schema.flatten(doc))


def _fn(i: Input) -> Any:
    return i.event.get("process_kprobe", {}).get("function_name")


def test_every_document_validates_against_ecs_9_4(mapped: Mapped) -> None:
    problems: Counter[str] = Counter()
    for i, doc in mapped:
        problems.update(f"{i.etype}: {e}" for e in schema.validate(doc))
    assert not problems, problems.most_common(20)
    categories = {c for _, doc in mapped for c in doc["event"].get("category", ())}
    assert categories == {"process", "library", "driver", "network", "file"}


def test_the_validator_catches_what_it_should(mapped: Mapped) -> None:
    good = next(doc for i, doc in mapped if _fn(i) == "tcp_connect")
    assert schema.validate(good) == []

    def broken(change: Any) -> list[str]:
        bad = copy.deepcopy(good)
        change(bad)
        return schema.validate(bad)

    assert broken(lambda d: d.update(bogus=1))
    assert broken(lambda d: d["process"].update(pid="12"))
    assert broken(lambda d: d["process"].update(args="/bin/x"))
    assert broken(lambda d: d["destination"].update(ip="not-an-ip"))
    assert broken(lambda d: d["event"].update(type=["creation"]))
    assert broken(lambda d: d["event"].update(kind="signal"))
    assert broken(lambda d: d.pop("@timestamp"))
    assert broken(lambda d: d["process"]["user"].update(id=0))
    assert broken(lambda d: d.update(process={**d["process"], "start": "yesterday"}))
    assert schema.validate({**good, "tetragon": {"anything": [1, {"x": None}]}}) == []


@pytest.mark.parametrize(("pred", "category", "kind"), [
    (lambda i: i.etype == "process_exec", ["process"], ["start"]),
    (lambda i: i.etype == "process_exit", ["process"], ["end"]),
    (lambda i: i.source == "setuid", ["process"], ["change"]),
    (lambda i: i.etype == "process_loader", ["library"], ["start"]),
    (lambda i: "kernel-module" in i.categories, ["driver"], ["start"]),
    (lambda i: _fn(i) == "free_module", ["driver"], ["end"]),
    (lambda i: _fn(i) == "bpf_check", ["driver"], ["start"]),
    (lambda i: _fn(i) == "tcp_connect", ["network"], ["connection", "start"]),
    (lambda i: _fn(i) == "tcp_close", ["network"], ["connection", "end"]),
    (lambda i: _fn(i) == "__x64_sys_write", ["file"], ["change"]),
    (lambda i: i.etype in ("process_throttle", "rate_limit_info", "process_future_thing"), None, None),
])
def test_categories_and_types(mapped: Mapped, pred: Any, category: Any, kind: Any) -> None:
    matching = [doc["event"] for i, doc in mapped if pred(i)]
    assert matching
    assert all((e.get("category"), e.get("type")) == (category and tuple(category), kind and tuple(kind))
               for e in matching)


def test_compatible_with_elastics_tetragon_integration(mapped: Mapped) -> None:
    doc = next(doc for i, doc in mapped if i.source == "docs" and _fn(i) == "cap_capable")
    flat = _flat(doc)
    assert {k: flat.get(k) for k in ELASTIC_INTEGRATION_CAP_CAPABLE} == ELASTIC_INTEGRATION_CAP_CAPABLE
    # Where ECS says otherwise (module docstring): the bare container id, and the runtime beside it.
    assert flat["container.id"] == "cfb961400ff25811d22d139a10f6a62efef53c2ecc11af47bc911a7f9a2ac1f7"
    assert flat["container.runtime"] == "containerd"
    exec_doc = next(doc for i, doc in mapped if i.etype == "process_exec")
    assert exec_doc["event"]["action"] == "executed"


def test_process_fields(mapped: Mapped) -> None:
    i, doc = next((i, d) for i, d in mapped if i.etype == "process_exec" and i.event["process_exec"]["process"]
                  .get("arguments") and "parent" in i.event["process_exec"])
    body, proc = i.event["process_exec"], doc["process"]
    assert proc["args"] == [body["process"]["binary"], *body["process"]["arguments"].split()]
    assert proc["args_count"] == len(proc["args"])
    assert proc["command_line"] == f"{body['process']['binary']} {body['process']['arguments']}"
    assert proc["parent"]["entity_id"] == body["parent"]["exec_id"]
    i, doc = next((i, d) for i, d in mapped if "process_credentials" in i.event.get("process_exec", {})
                  .get("process", {}))
    creds = i.event["process_exec"]["process"]["process_credentials"]
    assert doc["process"]["user"]["id"] == doc["user"]["id"] == str(creds["euid"])
    assert doc["process"]["real_user"]["id"] == str(creds["uid"])


def test_network_fields(mapped: Mapped) -> None:
    for i, doc in mapped:
        if _fn(i) == "tcp_connect":
            sock = i.event["process_kprobe"]["args"][0]["sock_arg"]
            assert doc["source"] == {"ip": sock["saddr"], "port": sock["sport"]}
            assert doc["destination"] == {"ip": sock["daddr"], "port": sock["dport"]}
            assert doc["network"]["direction"] == "egress" and doc["network"]["transport"] == "tcp"
        if _fn(i) == "tcp_create_openreq_child":
            sock = i.event["process_kprobe"]["args"][0]["sock_arg"]
            assert doc["source"]["ip"] == sock["daddr"] and doc["network"]["direction"] == "ingress"


def test_loader_sets_dll(mapped: Mapped) -> None:
    i, doc = next((i, d) for i, d in mapped if i.etype == "process_loader")
    assert doc["dll"]["path"] == i.event["process_loader"]["path"]


def test_tags_travel_as_tetrapipe_fields(mapped: Mapped) -> None:
    for i, doc in mapped:
        tp = doc["tetrapipe"]
        assert (tuple(tp["categories"]), tuple(tp["groups"]), tp.get("egress")) == (i.categories, i.groups, i.egress)
        assert doc["tetragon"]["event_type"] == i.etype


def test_unknown_event_types_keep_the_original(mapped: Mapped) -> None:
    unknown = [(i, doc) for i, doc in mapped if i.etype not in ecs.ETYPE_CLASSES and i.etype != "process_kprobe"]
    assert unknown
    for i, doc in unknown:
        assert json.loads(doc["event"]["original"]) == i.event


def test_event_id_matches_ocsf_metadata_uid(inputs: list[Input]) -> None:
    from tetrapipe.formats import ocsf

    for i in inputs[::11]:
        assert ecs.to_ecs(*i[:5])["event"]["id"] == ocsf.to_ocsf(*i[:5])[0]["metadata"]["uid"]


def test_mapping_does_not_change_its_input(inputs: list[Input]) -> None:
    for i in inputs[::7]:
        before = copy.deepcopy(i.event)
        ecs.to_ecs(*i[:5])
        assert i.event == before


def test_encode_gives_the_document_as_one_json_line(inputs: list[Input]) -> None:
    for i in inputs[::5]:
        line = ecs.encode_ecs(*i[:5])
        assert b"\n" not in line
        got, expected = orjson.loads(line), orjson.loads(orjson.dumps(ecs.to_ecs(*i[:5])))
        if "time" not in i.event:  # then @timestamp is the time of mapping
            del got["@timestamp"], expected["@timestamp"]
        assert got == expected


def test_topic_keys(mapped: Mapped) -> None:
    doc = next(doc for i, doc in mapped if i.etype == "process_exec")
    assert ecs.topic_keys(doc) == {"ecs_category": "process", "ecs_dataset": "tetragon.log"}
    doc = next(doc for i, doc in mapped if i.etype == "rate_limit_info")
    assert ecs.topic_keys(doc)["ecs_category"] == "none"


def test_odd_values_anywhere_never_raise_and_stay_valid(inputs: list[Input]) -> None:
    """Any field replaced by a value of another type: the mapping leaves it out, the result stays valid ECS."""
    checked = 0
    for i, path, odd, event in odd_variants(inputs):
        assert schema.validate(ecs.to_ecs(event, *i[1:5])) == [], (path, odd)
        ecs.encode_ecs(event, *i[1:5])
        checked += 1
    assert checked > 1000


def test_docs_are_generated_from_the_code() -> None:
    assert DOCS.read_text() == ecs.mapping_table_markdown(), "regenerate docs/ecs.md (see its header)"


def test_memoised_objects_are_never_changed_by_later_events(inputs: list[Input]) -> None:
    timed = [i for i in inputs if "time" in i.event]
    first = [ecs.encode_ecs(*i[:5]) for i in timed]
    again = [ecs.encode_ecs(*i[:5]) for i in reversed(timed)]
    assert first == again[::-1]


def test_the_documentation_samples_validate_too() -> None:
    """The samples docs/ecs.md is traced from cover kinds the corpus lacks (process_usdt, module syscalls, …)."""
    from tetrapipe.formats._doc import samples

    for title, etype, body, egress in samples():
        event = {etype: body, "node_name": "n1", "time": "2024-05-14T09:30:00.987654321Z"}
        assert schema.validate(ecs.to_ecs(event, etype, ("sudo",), ("security",), egress)) == [], title
