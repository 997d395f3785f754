"""Issue 14 item 6: the peer (and a source that is not the event's own pod) as OTLP LogRecord attributes with
semantic-convention names (destination.k8s.*, source.k8s.*, destination/source/server/client addresses),
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
def test_peer_and_source_attributes_arrive_with_semantic_convention_names(
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
    # a static entry: no Kubernetes names, the output contract's
    assert (db["tetrapipe.peer.kind"], db["tetrapipe.peer.namespace"], db["tetrapipe.peer.name"]) == (
        "database", "infra", "corp-db")
    assert db["tetrapipe.peer.via"] == "static" and db["destination.address"] == "10.40.3.3"
    assert (db["server.address"], db["server.port"], db["client.address"]) == ("10.40.3.3", 5432, "10.244.1.5")
    # a learned pod: the semantic-convention k8s keys under destination.k8s.
    assert (web["destination.k8s.namespace.name"], web["destination.k8s.pod.name"],
            web["destination.k8s.deployment.name"], web["destination.k8s.pod.label.app"]) == (
        "shop", "web-1", "web", "web")
    assert web["tetrapipe.peer.kind"] == "pod" and web["tetrapipe.peer.via"] == "learned"
    assert not any(k.startswith("tetrapipe.peer.") and k.rsplit(".", 1)[1] in ("name", "namespace", "workload",
                                                                               "workload_kind", "ip") for k in web)
    assert web["k8s.pod.name"] == "api-2"  # the event's own pod keeps the plain semantic-convention names
    assert not any(k.startswith(("tetrapipe.source.", "source.k8s.")) for k in web)  # its source is its own pod
    assert (host["source.k8s.pod.name"], host["source.k8s.namespace.name"], host["tetrapipe.source.kind"]) == (
        "api-2", "shop", "pod")
    assert host["source.address"] == "10.244.1.9" and host["tetrapipe.peer.name"] == "corp-db"
    assert not any(k.startswith(("tetrapipe.peer.", "tetrapipe.source.", "destination.k8s.", "source.k8s."))
                   for k in unknown)
    assert unknown["network.peer.address"] == unknown["destination.address"] == "10.99.0.1"


def test_without_peers_no_peer_attribute(processor: Processor) -> None:
    envs = connections(processor)
    for env in envs:
        attrs = dict(LogMapper().record(env).all_attributes())
        assert not any(k.startswith(("tetrapipe.peer.", "tetrapipe.source.", "destination.k8s.", "source.k8s."))
                       for k in attrs)


def test_services_are_a_string_array_and_kubernetes_names_are_the_conventions() -> None:
    peer = {"kind": "pod", "namespace": "payments", "name": "api-1", "workload": "api",
            "workload_kind": "Deployment", "labels": {"app": "api"}, "node": "node-1", "ip": "10.244.1.7",
            "services": ["payments/api", "payments/api-canary"], "via": "endpointslice"}
    assert dict(peer_attributes(peer, "destination")) == {
        "tetrapipe.peer.kind": "pod", "destination.k8s.namespace.name": "payments",
        "destination.k8s.pod.name": "api-1", "destination.k8s.deployment.name": "api",
        "destination.k8s.pod.label.app": "api", "destination.k8s.node.name": "node-1",
        "tetrapipe.peer.services": ("payments/api", "payments/api-canary"), "tetrapipe.peer.via": "endpointslice"}
    bare = {"kind": "pod", "namespace": "a", "name": "p", "workload": "p", "workload_kind": "Pod", "via": "learned"}
    assert dict(peer_attributes(bare, "source")) == {
        "tetrapipe.source.kind": "pod", "source.k8s.namespace.name": "a", "source.k8s.pod.name": "p",
        "tetrapipe.source.workload": "p", "tetrapipe.source.workload_kind": "Pod", "tetrapipe.source.via": "learned"}
    service = {"kind": "service", "namespace": "db", "name": "pg", "labels": {"tier": "data"}, "via": "api"}
    assert dict(peer_attributes(service, "destination")) == {
        "tetrapipe.peer.kind": "service", "destination.k8s.namespace.name": "db", "destination.k8s.service.name": "pg",
        "destination.k8s.service.label.tier": "data", "tetrapipe.peer.via": "api"}
    node = {"kind": "node", "name": "worker-1", "via": "api"}
    assert dict(peer_attributes(node, "destination")) == {
        "tetrapipe.peer.kind": "node", "destination.k8s.node.name": "worker-1", "tetrapipe.peer.via": "api"}


_values = st.one_of(st.text(max_size=10), st.integers(), st.none(), st.booleans(), st.lists(st.text(max_size=5),
                    max_size=3), st.dictionaries(st.text(max_size=5), st.text(max_size=5)))


@given(st.dictionaries(st.sampled_from(["kind", "name", "namespace", "workload", "workload_kind", "labels", "node",
                                         "services"]) | st.text(max_size=12), _values, max_size=8),
       st.sampled_from(["pod", "service", "apiserver", "node", "static", None]))
def test_odd_peers_encode_and_decode(peer: dict, kind: str | None) -> None:  # type: ignore[type-arg]
    if kind is not None:
        peer["kind"] = kind
    attrs = peer_attributes(peer, "destination")
    encoder = ProtobufEncoder()
    for key, value in attrs:
        assert key.startswith(("tetrapipe.peer.", "destination.k8s.")) and isinstance(value, str | tuple)
    body = b"".join(encoder.attributes(list(attrs)))  # the hand-written encoder accepts every value
    assert isinstance(body, bytes)


@pytest.mark.parametrize("encoder_cls", [ProtobufEncoder, JsonEncoder])
@pytest.mark.parametrize("inline", [[], [("tetragon.event_type", "process_kprobe")]])
def test_shared_groups_encode_like_inline_attributes(encoder_cls: type, inline: list) -> None:  # type: ignore[type-arg]
    from tetrapipe.sinks.otlp.mapping import LogFields
    from tetrapipe.sinks.otlp.peer_attributes import AttributeGroup

    peer = peer_attributes({"kind": "pod", "namespace": "a", "name": "b", "labels": {"app": "b"}}, "destination")
    source = peer_attributes({"kind": "node", "name": "n1"}, "source")
    groups = (AttributeGroup(peer), AttributeGroup(()), AttributeGroup(source))
    encoder = encoder_cls()
    for _ in range(2):  # the second time from the bytes kept on the groups
        shared = encoder.record(LogFields(1, 2, 9, "INFO", "tetragon.x", b"{}", list(inline), groups))
        flat = encoder_cls().record(LogFields(1, 2, 9, "INFO", "tetragon.x", b"{}", [*inline, *peer, *source]))
        assert shared == flat
