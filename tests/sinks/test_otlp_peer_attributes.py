"""Issue 14 item 6: the peer (and a source that is not the event's own pod) as OTLP LogRecord attributes,
encoded by tetrapipe and read back with the official opentelemetry-proto decoders."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from tests.k8s.objects import tetragon_connect
from tests.sinks.test_otlp_mapping import decode, encode_all, expected_attributes
from tetrapipe.event.decode import LineDecoder
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.pipeline.processor import Processor
from tetrapipe.sinks.otlp.encode import JsonEncoder, ProtobufEncoder
from tetrapipe.sinks.otlp.mapping import LogMapper
from tetrapipe.sinks.otlp.peer_attributes import peer_attributes
from tetrapipe.transforms.peers import PeerConfig, PeerResolver

STATIC = "peers:\n  - {cidr: 10.40.0.0/16, name: corp-db, kind: database, namespace: infra}\n"


@pytest.fixture
def peered(processor: Processor, tmp_path: Path) -> Processor:
    static = tmp_path / "peers.yaml"
    static.write_text(STATIC)
    resolver = PeerResolver(PeerConfig(kubernetes=False, learn=True, static_file=str(static)))
    return Processor(processor.tagger, processor.classifier, LineDecoder(), peers=resolver)


def connections(processor: Processor) -> list[Envelope]:
    events = [
        tetragon_connect("shop", "web-1", saddr="10.244.1.5", daddr="10.40.3.3", dport=5432, workload="web"),
        # learned from the first event: 10.244.1.5 is shop/web-1 (workload web, label app=web)
        tetragon_connect("shop", "api-2", saddr="10.244.1.9", daddr="10.244.1.5", dport=80, workload="api"),
        # from the host: its source 10.244.1.9 is api-2, not the event's own pod -> tetrapipe.source.*
        tetragon_connect(None, None, saddr="10.244.1.9", daddr="10.40.9.9"),
        tetragon_connect("shop", "web-1", saddr="10.244.1.5", daddr="10.99.0.1"),  # nobody knows it
    ]
    batch = Batch([Envelope(orjson.dumps(e), i) for i, e in enumerate(events)])
    processor.process(batch)
    return batch.envelopes


@pytest.mark.parametrize("encoder_cls", [ProtobufEncoder, JsonEncoder])
def test_peer_and_source_attributes_arrive_as_the_output_contract_names_them(
        peered: Processor, encoder_cls: type) -> None:
    envs = connections(peered)
    raw = encode_all(envs, encoder_cls(), LogMapper())
    request = (ExportLogsServiceRequest.FromString(raw) if encoder_cls is ProtobufEncoder
               else json_format.Parse(raw, ExportLogsServiceRequest()))
    records = {rec["body"]: rec["attributes"] for rec in decode(request)}
    attrs = [records[env.out.decode()] for env in envs]
    for env, got in zip(envs, attrs, strict=True):
        assert got == expected_attributes(env)
    db, web, host, unknown = attrs
    assert (db["tetrapipe.peer.kind"], db["tetrapipe.peer.namespace"], db["tetrapipe.peer.name"]) == (
        "database", "infra", "corp-db")
    assert db["tetrapipe.peer.via"] == "static" and db["tetrapipe.peer.ip"] == "10.40.3.3"
    assert (web["tetrapipe.peer.name"], web["tetrapipe.peer.workload"], web["tetrapipe.peer.workload_kind"]) == (
        "web-1", "web", "Deployment")
    assert web["tetrapipe.peer.labels.app"] == "web"
    assert web["k8s.pod.name"] == "api-2"  # the event's own pod keeps the semantic-convention names
    assert not any(k.startswith("tetrapipe.source.") for k in web)  # its source is its own pod
    assert host["tetrapipe.source.name"] == "api-2" and host["tetrapipe.peer.name"] == "corp-db"
    assert not any(k.startswith(("tetrapipe.peer.", "tetrapipe.source.")) for k in unknown)
    assert unknown["network.peer.address"] == "10.99.0.1"


def test_without_peers_no_peer_attribute(processor: Processor) -> None:
    envs = connections(processor)
    for env in envs:
        attrs = dict(LogMapper().record(env).all_attributes())
        assert not any(k.startswith(("tetrapipe.peer.", "tetrapipe.source.")) for k in attrs)


def test_services_are_a_string_array_and_shared_peers_map_once() -> None:
    peer = {"kind": "pod", "namespace": "payments", "name": "api-1", "workload": "api",
            "workload_kind": "Deployment", "labels": {"app": "api"}, "node": "node-1", "ip": "10.244.1.7",
            "services": ["payments/api", "payments/api-canary"], "via": "endpointslice"}
    assert dict(peer_attributes(peer, "tetrapipe.peer.")) == {
        "tetrapipe.peer.kind": "pod", "tetrapipe.peer.namespace": "payments", "tetrapipe.peer.name": "api-1",
        "tetrapipe.peer.workload": "api", "tetrapipe.peer.workload_kind": "Deployment",
        "tetrapipe.peer.labels.app": "api", "tetrapipe.peer.node": "node-1", "tetrapipe.peer.ip": "10.244.1.7",
        "tetrapipe.peer.services": ("payments/api", "payments/api-canary"), "tetrapipe.peer.via": "endpointslice"}


_values = st.one_of(st.text(max_size=10), st.integers(), st.none(), st.booleans(), st.lists(st.text(max_size=5),
                    max_size=3), st.dictionaries(st.text(max_size=5), st.text(max_size=5)))


@given(st.dictionaries(st.text(max_size=12), _values, max_size=8))
def test_odd_peers_encode_and_decode(peer: dict) -> None:  # type: ignore[type-arg]
    attrs = peer_attributes(peer, "tetrapipe.peer.")
    encoder = ProtobufEncoder()
    for key, value in attrs:
        assert key.startswith("tetrapipe.peer.") and isinstance(value, str | tuple)
    body = b"".join(encoder.attributes(list(attrs)))  # the hand-written encoder accepts every value
    assert isinstance(body, bytes)


@pytest.mark.parametrize("encoder_cls", [ProtobufEncoder, JsonEncoder])
@pytest.mark.parametrize("inline", [[], [("tetragon.event_type", "process_kprobe")]])
def test_shared_groups_encode_like_inline_attributes(encoder_cls: type, inline: list) -> None:  # type: ignore[type-arg]
    from tetrapipe.sinks.otlp.mapping import LogFields
    from tetrapipe.sinks.otlp.peer_attributes import AttributeGroup

    peer = peer_attributes({"kind": "pod", "namespace": "a", "name": "b", "labels": {"app": "b"}}, "tetrapipe.peer.")
    source = peer_attributes({"kind": "node", "name": "n1"}, "tetrapipe.source.")
    groups = (AttributeGroup(peer), AttributeGroup(()), AttributeGroup(source))
    encoder = encoder_cls()
    for _ in range(2):  # the second time from the bytes kept on the groups
        shared = encoder.record(LogFields(1, 2, 9, "INFO", "tetragon.x", b"{}", list(inline), groups))
        flat = encoder_cls().record(LogFields(1, 2, 9, "INFO", "tetragon.x", b"{}", [*inline, *peer, *source]))
        assert shared == flat
