"""Issue 14 item 6 (and issue 12's format keys) through `tetrapipe run` against the real servers: a static
peers file names the destinations; Kafka routes by `{peer_namespace}` with the `tetrapipe-peer` header
(and by `{ocsf_class}`), and the peer arrives at the rotel collector with semantic-convention names
(`destination.k8s.*`, `source.k8s.*`, the addresses as `destination.*`/`source.*`/`server.*`/`client.*`)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from brokers import Broker, unique_name
from collector import Collector
from otlp_fixtures import otlp_collector  # noqa: F401 (fixture)
from test_kafka_helpers import header, read_all

from tests.k8s.objects import tetragon_connect
from tests.support import synth
from tetrapipe.formats.ocsf import CLASSES

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TETRAPIPE = [sys.executable, "-m", "tetrapipe.cli.main", "run"]
ENV = {**os.environ, "POD_CIDR": "10.244.0.0/16", "SERVICE_CIDR": "10.96.0.0/12"}
# outside the pod and service CIDRs: connections there are tagged `egress` (untagged events go to the default topic)
STATIC = {"peers": [
    {"cidr": "10.40.1.7/32", "name": "db-0", "kind": "pod", "namespace": "payments"},
    {"cidr": "10.60.20.0/24", "name": "ledger", "kind": "service", "namespace": "billing"},
    {"cidr": "10.70.0.0/16", "name": "corp-db", "kind": "database", "namespace": "infra"},
]}


def connect(daddr: str, n: int) -> bytes:
    event = tetragon_connect("shop", f"web-{n}", saddr="10.244.0.5", daddr=daddr, dport=5432, workload="web")
    return orjson.dumps(event)


# (event, where the peer is): payments/db-0, billing/ledger, infra (not listed), nobody
EVENTS = [(connect("10.40.1.7", 1), "payments"), (connect("10.60.20.9", 2), "billing"),
          (connect("10.70.3.3", 3), "infra"), (connect("10.80.9.9", 4), None)]


def write_config(tmp_path: Path, **sections: Any) -> Path:
    static = tmp_path / "peers.yaml"
    static.write_text(yaml.safe_dump(STATIC))
    path = tmp_path / "tetrapipe.yaml"
    path.write_text(yaml.safe_dump({"peers": {"static_file": str(static)}, **sections}))
    return path


def run(args: list[str], lines: list[bytes], tmp_path: Path) -> None:
    result = subprocess.run([*TETRAPIPE, *args], input=b"\n".join(lines) + b"\n", capture_output=True,
                            timeout=120, env=ENV, cwd=ROOT)
    assert result.returncode == 0, result.stderr.decode()[-3000:]


def kafka_sink(broker: Broker, **sink: Any) -> dict[str, Any]:
    return {"kafka": {"sink": {"idempotence": broker.supports_idempotence, "topics": {"partitions": 1}, **sink}}}


async def test_kafka_routes_by_the_peer_namespace_with_the_peer_header(kafka_broker: Broker, tmp_path: Path) -> None:
    prefix = unique_name("peers")
    cfg = write_config(tmp_path, **kafka_sink(kafka_broker, topic_template=prefix + ".{peer_namespace}.{category}",
                                              default_topic=prefix + ".other",
                                              peer_namespaces=["payments", "billing"]))
    exec_lines = list(synth.generate(20, seed=5, mix={"exec": 1}))
    lines = [line for line, _ in EVENTS] + exec_lines
    await asyncio.to_thread(run, ["--config", str(cfg), "--kafka-bootstrap", kafka_broker.bootstrap], lines, tmp_path)
    topics = [f"{prefix}.payments.egress", f"{prefix}.billing.egress", f"{prefix}.other"]
    records = await read_all(kafka_broker.bootstrap, topics)
    by_daddr = {orjson.loads(r.value)["tetrapipe"]["egress"]["daddr"]: r
                for r in records if b'"egress"' in r.value}
    assert by_daddr["10.40.1.7"].topic == f"{prefix}.payments.egress"
    assert header(by_daddr["10.40.1.7"], "tetrapipe-peer") == b"pod/payments/db-0"
    assert by_daddr["10.60.20.9"].topic == f"{prefix}.billing.egress"
    assert header(by_daddr["10.60.20.9"], "tetrapipe-peer") == b"service/billing/ledger"
    # a peer in a namespace without a topic, and no peer at all: the default topic (with / without the header)
    assert by_daddr["10.70.3.3"].topic == f"{prefix}.other"
    assert header(by_daddr["10.70.3.3"], "tetrapipe-peer") == b"database/infra/corp-db"
    assert by_daddr["10.80.9.9"].topic == f"{prefix}.other"
    assert header(by_daddr["10.80.9.9"], "tetrapipe-peer") is None
    assert Counter(r.topic for r in records) == {f"{prefix}.payments.egress": 1, f"{prefix}.billing.egress": 1,
                                                 f"{prefix}.other": 2 + len(exec_lines)}  # every event once
    assert orjson.loads(by_daddr["10.40.1.7"].value)["tetrapipe"]["peer"]["name"] == "db-0"


async def test_untagged_connections_inside_the_cluster_are_routed_by_their_peer(
        kafka_broker: Broker, tmp_path: Path) -> None:
    prefix = unique_name("inside")
    cfg = write_config(tmp_path, **kafka_sink(kafka_broker, topic_template=prefix + ".{peer_namespace}.{category}",
                                              default_topic=prefix + ".other", peer_namespaces=["payments", "shop"]))
    lines = [  # learning is on by default: the first event teaches that 10.244.3.3 is shop/cart-1
        orjson.dumps(tetragon_connect("shop", "cart-1", saddr="10.244.3.3", daddr="10.40.1.7", workload="cart")),
        orjson.dumps(tetragon_connect("shop", "api-2", saddr="10.244.3.4", daddr="10.244.3.3", dport=8080)),
        orjson.dumps(tetragon_connect("shop", "api-2", saddr="10.244.3.4", daddr="10.244.9.9", dport=8080)),
    ]
    await asyncio.to_thread(run, ["--config", str(cfg), "--kafka-bootstrap", kafka_broker.bootstrap], lines, tmp_path)
    topics = [f"{prefix}.payments.egress", f"{prefix}.shop.untagged", f"{prefix}.other"]
    records = await read_all(kafka_broker.bootstrap, topics)
    by_daddr = {orjson.loads(r.value)["tetrapipe"]["egress"]["daddr"]: r for r in records}
    assert by_daddr["10.40.1.7"].topic == f"{prefix}.payments.egress"  # tagged, as before
    inside = by_daddr["10.244.3.3"]  # untagged (inside the pod CIDR), its peer learned from the stream
    assert orjson.loads(inside.value)["tetrapipe"]["categories"] == []
    assert inside.topic == f"{prefix}.shop.untagged"
    assert header(inside, "tetrapipe-peer") == b"pod/shop/cart-1"
    assert header(inside, "tetrapipe-peer-workload") == b"Deployment/cart"
    assert by_daddr["10.244.9.9"].topic == f"{prefix}.other"  # untagged and nobody knows the address
    assert header(by_daddr["10.244.9.9"], "tetrapipe-peer") is None
    assert Counter(r.topic for r in records) == {t: 1 for t in topics}  # every event once


async def test_kafka_routes_ocsf_records_by_their_class(kafka_broker: Broker, tmp_path: Path) -> None:
    prefix = unique_name("ocsf")
    cfg = write_config(tmp_path, **kafka_sink(kafka_broker, topic_template=prefix + ".{ocsf_class}", format="ocsf",
                                              default_topic=prefix + ".other"))
    lines = [line for line, _ in EVENTS] + list(synth.generate(300, seed=9))
    await asyncio.to_thread(run, ["--config", str(cfg), "--kafka-bootstrap", kafka_broker.bootstrap], lines, tmp_path)
    topics = [f"{prefix}.{name}" for name in CLASSES if name != "detection_finding"]
    records = await read_all(kafka_broker.bootstrap, topics)
    assert records
    uid_of = {name: v[0] for name, v in CLASSES.items()}
    for record in records:
        assert orjson.loads(record.value)["class_uid"] == uid_of[record.topic.removeprefix(prefix + ".")]
    assert {r.topic for r in records} >= {f"{prefix}.network_activity", f"{prefix}.process_activity"}
    network = [orjson.loads(r.value) for r in records if r.topic == f"{prefix}.network_activity"]
    db = next(r for r in network if r["dst_endpoint"].get("ip") == "10.40.1.7")
    assert db["class_uid"] == 4001


def test_otlp_records_carry_the_peer(otlp_collector: Collector, tmp_path: Path) -> None:  # noqa: F811
    cfg = write_config(tmp_path)
    learned = [  # learning is on by default: the first names 10.244.3.3, the third's source is api-2
        orjson.dumps(tetragon_connect("shop", "cart-1", saddr="10.244.3.3", daddr="10.70.3.4", workload="cart")),
        orjson.dumps(tetragon_connect("shop", "api-2", saddr="10.244.3.4", daddr="10.244.3.3", dport=8080)),
        orjson.dumps(tetragon_connect(None, None, saddr="10.244.3.4", daddr="10.60.20.10", dport=443)),
    ]
    run(["--config", str(cfg), "--otlp-endpoint", otlp_collector.http_endpoint],
        [line for line, _ in EVENTS] + learned, tmp_path)
    records = otlp_collector.wait_for_count(len(EVENTS) + len(learned), timeout=30)
    by_daddr = {r.attributes["destination.address"]: r.attributes for r in records}
    db = by_daddr["10.40.1.7"]
    # a static entry of kind pod: the semantic-convention Kubernetes names, on the destination side
    assert (db["tetrapipe.peer.kind"], db["destination.k8s.namespace.name"], db["destination.k8s.pod.name"]) == (
        "pod", "payments", "db-0")
    assert db["tetrapipe.peer.via"] == "static" and db["network.peer.address"] == "10.40.1.7"
    assert (db["destination.port"], db["server.address"], db["server.port"]) == (5432, "10.40.1.7", 5432)
    assert (db["source.address"], db["client.address"], db["source.port"]) == ("10.244.0.5", "10.244.0.5", 40000)
    assert db["k8s.pod.name"] == "web-1"  # the event's own pod keeps the plain semantic-convention names
    ledger = by_daddr["10.60.20.9"]
    assert (ledger["destination.k8s.service.name"], ledger["destination.k8s.namespace.name"]) == ("ledger", "billing")
    corp = by_daddr["10.70.3.3"]
    assert (corp["tetrapipe.peer.kind"], corp["tetrapipe.peer.name"], corp["tetrapipe.peer.namespace"]) == (
        "database", "corp-db", "infra")
    assert not any(k.startswith(("tetrapipe.peer.", "destination.k8s.")) for k in by_daddr["10.80.9.9"])
    cart = by_daddr["10.244.3.3"]  # learned from the stream
    assert (cart["destination.k8s.pod.name"], cart["destination.k8s.deployment.name"], cart["tetrapipe.peer.via"],
            cart["destination.k8s.pod.label.app"]) == ("cart-1", "cart", "learned", "cart")
    assert cart["k8s.pod.name"] == "api-2" and not any(k.startswith("source.k8s.") for k in cart)  # its own pod
    host = by_daddr["10.60.20.10"]  # a host process whose source address is a learned pod's
    assert (host["source.k8s.pod.name"], host["source.k8s.namespace.name"], host["tetrapipe.source.kind"]) == (
        "api-2", "shop", "pod")
    assert "k8s.pod.name" not in host
