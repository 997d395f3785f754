"""peers.snapshot: a `kubectl get pods,services,endpointslices,nodes -A -o json` List loaded into the API index."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.k8s.objects import endpoint_slice, node, pod, service, tetragon_connect
from tetrapipe.transforms.peer_snapshot import SnapshotError
from tetrapipe.transforms.peers import PeerConfig, PeerResolver

CREATED = "2024-05-14T08:00:00Z"
EVENT_TIME = "2024-05-14T09:00:10.5Z"


def cluster() -> list[dict[str, Any]]:
    """What kubectl writes for a small cluster: a Deployment's pod (owner ReplicaSet), a bare pod, a service
    backed by the first through an EndpointSlice, the API server's service, a node, and a ReplicaSet (which
    kubectl lists when asked; the index does not need it)."""
    api = pod("api-7c9f8d5b6-x2x9q", "payments", owner=("ReplicaSet", "api-7c9f8d5b6"),
              labels={"app": "api", "pod-template-hash": "7c9f8d5b6"}, uid="u-api", created=CREATED,
              ip="10.244.1.7")
    api["metadata"]["managedFields"] = [{"manager": "kube-controller-manager", "operation": "Update"}]
    batch = pod("report-28716480-abcde", "jobs", owner=("Job", "report-28716480"), uid="u-job", created=CREATED,
                ip="10.244.1.8")
    replica_set = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "metadata": {"name": "api-7c9f8d5b6", "namespace": "payments", "uid": "u-rs"}}
    return [api, batch, replica_set,
            service("api", "payments", cluster_ip="10.96.14.2", uid="u-svc", created=CREATED),
            service("kubernetes", "default", cluster_ip="10.96.0.1", uid="u-k8s", created=CREATED),
            endpoint_slice("api-abcde", "api", "payments", targets={"10.244.1.7": "api-7c9f8d5b6-x2x9q"},
                           uid="u-slice"),
            node("node-1", internal_ip="172.18.0.3", uid="u-node", created=CREATED)]


def write(tmp_path: Path, items: list[Any], *, as_yaml: bool = False) -> str:
    doc = {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}
    path = tmp_path / ("snapshot.yaml" if as_yaml else "snapshot.json")
    path.write_text(yaml.safe_dump(doc) if as_yaml else orjson.dumps(doc).decode())
    return str(path)


def resolver(path: str, *, learn: bool = False) -> PeerResolver:
    return PeerResolver(PeerConfig(kubernetes=False, learn=learn, snapshot=path))


@pytest.mark.parametrize("as_yaml", [False, True])
def test_pods_services_nodes_resolve_like_the_watch(tmp_path: Path, as_yaml: bool) -> None:
    r = resolver(write(tmp_path, cluster(), as_yaml=as_yaml))
    api = r.lookup("10.244.1.7", 8080, EVENT_TIME)
    assert api is not None
    assert (api["kind"], api["namespace"], api["name"]) == ("pod", "payments", "api-7c9f8d5b6-x2x9q")
    assert (api["workload"], api["workload_kind"], api["via"]) == ("api", "Deployment", "api")
    assert api["services"] == ("payments/api",)
    job = r.lookup("10.244.1.8", None, EVENT_TIME)
    assert job is not None and (job["workload"], job["workload_kind"]) == ("report", "CronJob")
    svc = r.lookup("10.96.14.2", 443, EVENT_TIME)
    assert svc is not None and (svc["kind"], svc["name"]) == ("service", "api")
    assert r.lookup("10.96.0.1", 443, EVENT_TIME) == {"kind": "apiserver", "namespace": "default",
                                                      "name": "kubernetes", "ip": "10.96.0.1", "via": "api"}
    nd = r.lookup("172.18.0.3", 10250, EVENT_TIME)
    assert nd is not None and (nd["kind"], nd["name"]) == ("node", "node-1")
    assert (r.snapshot.objects, r.snapshot.skipped) == (6, 1)  # the ReplicaSet is not needed


def test_an_event_before_the_pod_existed_is_not_its(tmp_path: Path) -> None:
    r = resolver(write(tmp_path, cluster()))
    assert r.lookup("10.244.1.7", None, "2024-05-14T07:00:00Z") is None


def test_learning_never_overrides_a_snapshot_entry(tmp_path: Path) -> None:
    r = resolver(write(tmp_path, cluster()), learn=True)
    event = tetragon_connect("other", "impostor", saddr="10.244.1.7", daddr="10.96.14.2")
    for _ in range(3):
        r.resolve_event(event, "10.96.14.2", 443, event["process_kprobe"]["process"]["pod"])
    peer = r.lookup("10.244.1.7", None, EVENT_TIME)
    assert peer is not None and (peer["name"], peer["via"]) == ("api-7c9f8d5b6-x2x9q", "api")
    assert r.learned is not None and "10.244.1.7" not in r.learned.by_ip


@pytest.mark.parametrize(("bad", "message"), [
    ("not an object", "items[4]: expected an object with a kind"),
    ({"kind": "Pod", "metadata": {"namespace": "x"}}, "items[4]: Pod: metadata.name missing"),
    ({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"ports": [{"containerPort": "x"}]}]},
      "status": {"podIPs": "10.0.0.1"}}, "items[4] (p): "),
])
def test_a_malformed_item_is_named_and_nothing_is_loaded(tmp_path: Path, bad: Any, message: str) -> None:
    items = cluster()
    items.insert(4, bad)
    with pytest.raises(SnapshotError) as err:
        resolver(write(tmp_path, items))
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("content", ["{", "[]", '{"kind": "List"}', "items: 3"])
def test_not_a_list_document(tmp_path: Path, content: str) -> None:
    path = tmp_path / "snapshot.json"
    path.write_text(content)
    with pytest.raises(SnapshotError, match=str(path)):
        resolver(str(path))


def test_reload_replaces_the_previous_snapshot_and_a_bad_one_changes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, cluster())
    r = PeerResolver(PeerConfig(kubernetes=False, learn=False, snapshot=path, grace=0.0))
    items = [i for i in cluster() if i["metadata"].get("uid") != "u-job"]
    write(tmp_path, [*items, {"kind": "Node"}])
    with pytest.raises(SnapshotError, match=r"items\[6\]"):
        r.reload_snapshot()
    assert r.lookup("10.244.1.8", None, EVENT_TIME) is not None
    write(tmp_path, items)
    assert r.reload_snapshot() == 5
    r.expire()
    assert r.lookup("10.244.1.8", None, EVENT_TIME) is None  # gone from the file: deleted (no grace here)
    assert r.lookup("10.244.1.7", None, EVENT_TIME) is not None
    assert r.stats()["snapshot_loads"] == 2
