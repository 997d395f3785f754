"""Kafka routing by per-event fields (issue 14: `{peer_namespace}`, `{peer_kind}` and the peer headers;
issue 12: `{ocsf_class}`, `{ecs_category}`, … read back from the record) — pure logic, no broker."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.k8s.objects import tetragon_connect
from tests.support.synth import generate
from tetrapipe.event.decode import LineDecoder
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.formats import build_format
from tetrapipe.formats.ecs import to_ecs
from tetrapipe.formats.ocsf import CLASSES, to_ocsf
from tetrapipe.pipeline.processor import Processor
from tetrapipe.sinks.kafka.event_keys import PEER_KINDS, EventKeys, peer_headers
from tetrapipe.sinks.kafka.routing import DEFAULT, DROPPED, ROUTED, Router, RoutingError
from tetrapipe.transforms.peers import PeerConfig, PeerResolver

GROUPS = {"sudo": "security", "suid": "security", "egress": "network", "ebpf": "system"}
# Outside the pod and service CIDRs (tests/conftest.py): connections there are tagged `egress`; inside them
# (10.244.7.7) untagged, routed by their peer only by a template that names a peer field.
STATIC = """peers:
  - {cidr: 10.40.1.7/32, name: db-0, kind: pod, namespace: payments}
  - {cidr: 10.50.14.2/32, name: api, kind: service, namespace: payments}
  - {cidr: 10.60.20.0/24, name: ledger, kind: service, namespace: billing}
  - {cidr: 10.70.0.0/16, name: corp-db, kind: database, namespace: infra}
  - {cidr: 10.0.0.12/32, name: node-2, kind: node}
  - {cidr: 10.244.7.7/32, name: cart-1, kind: pod, namespace: payments}
"""


@pytest.fixture
def peered(processor: Processor, tmp_path: Path) -> Processor:
    static = tmp_path / "peers.yaml"
    static.write_text(STATIC)
    resolver = PeerResolver(PeerConfig(kubernetes=False, learn=False, static_file=str(static)))
    return Processor(processor.tagger, processor.classifier, LineDecoder(), peers=resolver)


def processed(processor: Processor, *events: dict | bytes) -> list[Envelope]:  # type: ignore[type-arg]
    lines = [e if isinstance(e, bytes) else orjson.dumps(e) for e in events]
    batch = Batch([Envelope(line, i) for i, line in enumerate(lines)])
    processor.process(batch)
    return batch.envelopes


def connect(daddr: str) -> dict:  # type: ignore[type-arg]
    return tetragon_connect("shop", "web-1", saddr="10.244.0.5", daddr=daddr, dport=5432, workload="web")


def test_the_peer_namespace_and_kind_pick_the_topic(peered: Processor) -> None:
    router = Router("tetragon.{peer_namespace}.{peer_kind}.{category}", GROUPS, default_topic="tetragon.other",
                    peer_namespaces=["payments", "billing"])
    db, api, ledger = processed(peered, connect("10.40.1.7"), connect("10.50.14.2"), connect("10.60.20.9"))
    assert db.decoded is not None and db.decoded.peer is not None and db.tags.categories
    category = db.tags.categories[0]
    assert router.route(db).topics[0] == f"tetragon.payments.pod.{category}"
    assert router.route(api).topics[0] == f"tetragon.payments.service.{category}"
    assert router.route(ledger).topics[0] == f"tetragon.billing.service.{category}"
    assert all(router.route(e).outcome == ROUTED for e in (db, api, ledger))
    # every one of them was known (and so created) at startup
    assert {t for e in (db, api, ledger) for t in router.route(e).topics} <= set(router.topics())


def test_events_without_a_routable_peer_go_to_the_default_topic_or_are_dropped(peered: Processor) -> None:
    with_default = Router("tetragon.{peer_namespace}", GROUPS, default_topic="tetragon.other",
                          peer_namespaces=["payments"])
    without = Router("tetragon.{peer_namespace}", GROUPS, peer_namespaces=["payments"])
    exec_event = next(generate(1, seed=3, mix={"sudo": 1}))
    unknown, infra, node, sudo = processed(peered, connect("10.80.9.9"), connect("10.70.1.1"),
                                           connect("10.0.0.12"), exec_event)
    assert unknown.decoded is not None and unknown.decoded.peer is None  # nobody knows the address
    assert infra.decoded is not None and infra.decoded.peer is not None  # a namespace not listed
    assert node.decoded is not None and node.decoded.peer is not None and "namespace" not in node.decoded.peer
    assert sudo.tags.categories and sudo.decoded is not None and sudo.decoded.peer is None  # not a connection
    for env in (unknown, infra, node, sudo):
        assert with_default.route(env).topics == ("tetragon.other",)
        assert with_default.route(env).outcome == DEFAULT
        assert without.route(env).outcome == DROPPED and without.route(env).topics == ()


def test_untagged_connections_with_a_peer_are_routed_by_it(peered: Processor) -> None:
    # inside the pod CIDR: the shipped library does not tag it, the peer resolver names it
    inside, unknown_inside = processed(peered, connect("10.244.7.7"), connect("10.244.9.9"))
    assert not inside.tags.categories and inside.decoded is not None and inside.decoded.peer is not None
    assert not unknown_inside.tags.categories and unknown_inside.decoded is not None
    assert unknown_inside.decoded.peer is None
    by_category = Router("tetragon.{peer_namespace}.{category}", GROUPS, default_topic="tetragon.other",
                         peer_namespaces=["payments", "billing"])
    route = by_category.route(inside)
    assert (route.topics, route.outcome) == (("tetragon.payments.untagged",), ROUTED)
    assert {"tetragon.payments.untagged", "tetragon.billing.untagged"} <= set(by_category.topics())  # created
    assert dict(by_category.headers(inside, route))["tetrapipe-peer"] == b"pod/payments/cart-1"
    assert by_category.route(unknown_inside).topics == ("tetragon.other",)  # no peer: as before
    by_group = Router("t.{group}.{peer_kind}", GROUPS, default_topic="t.other")
    assert by_group.route(inside).topics == ("t.untagged.pod",) and "t.untagged.pod" in by_group.topics()
    # a template without a peer field routes untagged events as before
    plain = Router("t.{category}", GROUPS, default_topic="t.other")
    assert plain.route(inside).topics == ("t.other",) and not any("untagged" in t for t in plain.topics())
    # the peer headers are on every event with a peer, tagged or not
    assert dict(plain.headers(inside, plain.route(inside)))["tetrapipe-peer"] == b"pod/payments/cart-1"


def test_a_kind_outside_the_known_ones_is_not_routed_by_kind(peered: Processor) -> None:
    router = Router("t.{peer_kind}", GROUPS, default_topic="t.other")
    (infra,) = processed(peered, connect("10.70.1.1"))
    assert infra.decoded is not None and infra.decoded.peer is not None
    assert infra.decoded.peer["kind"] == "database" and "database" not in PEER_KINDS
    assert router.route(infra).topics == ("t.other",)
    assert router.topics() == sorted({f"t.{k}" for k in PEER_KINDS} | {"t.other"})


def test_the_peer_header_names_kind_namespace_name_and_workload(peered: Processor) -> None:
    router = Router("t.{category}", GROUPS)
    db, node, unknown = processed(peered, connect("10.40.1.7"), connect("10.0.0.12"), connect("10.80.9.9"))
    headers = dict(router.headers(db, router.route(db)))
    assert headers["tetrapipe-peer"] == b"pod/payments/db-0"
    assert "tetrapipe-peer-workload" not in headers  # the static file names no workload
    assert dict(router.headers(node, router.route(node)))["tetrapipe-peer"] == b"node//node-2"
    assert "tetrapipe-peer" not in dict(router.headers(unknown, router.route(unknown)))
    assert peer_headers({"kind": "pod", "namespace": "a", "name": "b-1", "workload": "b",
                         "workload_kind": "StatefulSet"}) == [
        ("tetrapipe-peer", b"pod/a/b-1"), ("tetrapipe-peer-workload", b"StatefulSet/b")]


def test_stale_peer_headers_from_the_source_are_replaced(peered: Processor) -> None:
    router = Router("t.{category}", GROUPS)
    raw = orjson.dumps(connect("10.80.9.9"))
    batch = Batch([Envelope(raw, 0, (b"k", (("tetrapipe-peer", b"pod/old/x"), ("trace", b"1"))))])
    peered.process(batch)
    env = batch.envelopes[0]
    headers = router.headers(env, router.route(env))
    assert ("trace", b"1") in headers and not any(k == "tetrapipe-peer" for k, _ in headers)


def test_without_peers_the_output_headers_are_as_before(processor: Processor) -> None:
    router = Router("t.{category}", GROUPS)
    (env,) = processed(processor, connect("10.40.1.7"))
    assert env.decoded is not None and env.decoded.egress is not None and env.decoded.peer is None
    assert env.tags.categories
    assert [k for k, _ in router.headers(env, router.route(env))] == [
        "tetrapipe-categories", "tetragon-event-type", "tetrapipe-zone"]


def test_template_fields_that_cannot_work_are_named() -> None:
    with pytest.raises(RoutingError, match="peer_namespaces"):
        Router("t.{peer_namespace}", GROUPS)
    with pytest.raises(RoutingError, match="format: ocsf"):
        Router("t.{ocsf_class}", GROUPS)
    with pytest.raises(RoutingError, match="format: ecs"):
        Router("t.{ecs_category}", GROUPS, record_format="ocsf")
    with pytest.raises(RoutingError, match="one format"):
        Router("t.{ocsf_class}.{ecs_category}", GROUPS, record_format="ocsf")
    with pytest.raises(RoutingError, match="unknown field"):
        Router("t.{peer_workload}", GROUPS)


def records(processor: Processor, fmt: str, n: int = 400) -> list[tuple[Envelope, bytes]]:
    envs = processed(processor, *generate(n, seed=11))
    formatter = build_format(fmt, findings=True, category_groups=GROUPS)
    out = []
    for env in envs:
        if env.decoded is not None and env.tags.categories:
            record = formatter.record(env)
            assert record is not None
            out.append((env, record))
    return out


def test_ocsf_class_routes_by_the_records_own_class(processor: Processor) -> None:
    router = Router("ocsf.{ocsf_category}.{ocsf_class}", GROUPS, record_format="ocsf")
    assert router.needs_record
    seen = set()
    for env, record in records(processor, "ocsf"):
        assert env.decoded is not None
        mapped = to_ocsf(env.decoded.generic_root(), env.decoded.etype, env.tags.categories, env.tags.groups, None)
        name = next(k for k, v in CLASSES.items() if v[0] == mapped[0]["class_uid"])  # the oracle: the mapping
        category = {0: "other", 1: "system", 2: "findings", 4: "network"}[mapped[0]["category_uid"]]
        route = router.route(env, record)
        assert route.outcome == ROUTED and route.topics == (f"ocsf.{category}.{name}",)
        assert route.topics[0] in router.topics()
        seen.add(name)
    assert {"process_activity", "network_activity"} <= seen  # the corpus covered more than one class


def test_ecs_category_routes_by_the_documents_first_category(processor: Processor) -> None:
    groups = processor.tagger.groups  # the shipped library's category -> group table
    router = Router("ecs.{ecs_category}.{group}", groups, record_format="ecs", multi_category="first")
    seen = set()
    for env, record in records(processor, "ecs"):
        assert env.decoded is not None
        doc = to_ecs(env.decoded.generic_root(), env.decoded.etype, env.tags.categories, env.tags.groups, None)
        want = (doc["event"].get("category") or ["none"])[0]
        group = groups[env.tags.categories[0]]
        assert router.route(env, record).topics == (f"ecs.{want}.{group}",)
        assert router.route(env, record).topics[0] in router.topics()
        seen.add(want)
    assert {"process", "network"} <= seen


def test_a_record_that_is_not_the_format_goes_to_the_default_topic(peered: Processor) -> None:
    router = Router("t.{ocsf_class}", GROUPS, record_format="ocsf", default_topic="t.other")
    (env,) = processed(peered, connect("10.40.1.7"))
    assert router.route(env, b"not json").topics == ("t.other",)
    assert router.route(env, None).topics == ("t.other",)
    # a class tetrapipe never emits: ocsf.topic_keys calls it base_event; its uid has no topic
    assert router.route(env, b'{"class_uid": 777}').topics == ("t.base_event",)
    by_uid = Router("t.{ocsf_class_uid}", GROUPS, record_format="ocsf", default_topic="t.other")
    assert by_uid.route(env, b'{"class_uid": 777}').topics == ("t.other",)
    assert "t.777" not in by_uid.topics() and "t.4001" in by_uid.topics()


@given(st.dictionaries(st.sampled_from(["kind", "namespace", "name", "workload", "workload_kind", "ip"]),
                       st.text(max_size=20)))
def test_peer_headers_never_fail_on_odd_peers(peer: dict[str, str]) -> None:
    headers = dict(peer_headers(peer))
    assert headers["tetrapipe-peer"].decode().count("/") >= 2
    assert ("tetrapipe-peer-workload" in headers) == bool(peer.get("workload"))


def test_every_possible_value_renders_a_valid_topic() -> None:
    keys = EventKeys({"peer_namespace", "peer_kind", "ocsf_class"}, peer_namespaces=["a", "b-2"], fmt="ocsf")
    assert len(keys.possible()) == 2 * len(PEER_KINDS) * (len(CLASSES) - 1)  # findings are never first
    Router("t.{peer_namespace}.{peer_kind}.{ocsf_class}", GROUPS, peer_namespaces=["a", "b-2"],
           record_format="ocsf")  # validates every topic name


def test_ocsf_fields_from_a_record_in_any_key_order(peered: Processor) -> None:
    router = Router("t.{ocsf_category}.{ocsf_class}", GROUPS, record_format="ocsf", default_topic="t.other")
    (env,) = processed(peered, connect("10.40.1.7"))
    first = b'{"class_uid":4001,"category_uid":4,"time":1}'
    later = b'{"time":1,"metadata":{"class_uid":1007},"category_uid":4,"class_uid":4001}'
    assert router.route(env, first).topics == router.route(env, later).topics == ("t.network.network_activity",)
    assert router.route(env, b'{"class_uid":4001x}').topics == ("t.other",)  # not JSON
