"""The API index of the peer resolver, with a manual clock and no server: kinds, workloads, time, reuse, grace."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.k8s.objects import endpoint_slice, node, pod, service
from tetrapipe.transforms.peer_index import NOBODY, ApiIndex
from tetrapipe.transforms.peer_model import (
    LabelPicker,
    canonical_ip,
    epoch_seconds,
    node_record,
    pod_record,
    service_record,
    slice_record,
)

T0 = "2024-05-14T09:00:00Z"
SEC0 = epoch_seconds(T0) or 0
LABELS = LabelPicker(("app", "tier"))


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def at(seconds: float) -> str:
    """RFC 3339 time `seconds` after T0 (whole seconds)."""
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(SEC0 + seconds))


@pytest.fixture
def clock() -> Clock:
    return Clock(SEC0 + 100)


@pytest.fixture
def index(clock: Clock) -> ApiIndex:
    return ApiIndex(grace=30.0, skew=2.0, clock=clock)


def add_pod(index: ApiIndex, name: str, ip: str | tuple[str, ...] | None, *, uid: str | None = None, created: float = 0,
            live: bool = True, **kw: object) -> None:
    obj = pod(name, uid=uid or f"uid-{name}", created=at(created), ip=ip, **kw)  # type: ignore[arg-type]
    index.upsert_pod(pod_record(obj, LABELS), live=live)


def test_pod_ip_resolves_to_its_pod_with_workload_labels_and_node(index: ApiIndex) -> None:
    add_pod(index, "api-7c9f8d5b4-x2kq9", "10.244.1.7", owner=("ReplicaSet", "api-7c9f8d5b4"),
            labels={"app": "api", "pod-template-hash": "7c9f8d5b4", "other": "dropped"})
    assert index.lookup("10.244.1.7", 8080, None) == {
        "kind": "pod", "namespace": "default", "name": "api-7c9f8d5b4-x2kq9", "workload": "api",
        "workload_kind": "Deployment", "labels": {"app": "api"}, "node": "node-1", "ip": "10.244.1.7", "via": "api"}
    assert index.lookup("10.244.1.8", 8080, None) is None


@pytest.mark.parametrize(("owner", "labels", "workload"), [
    (("ReplicaSet", "web-5d4f8"), {"pod-template-hash": "5d4f8"}, ("web", "Deployment")),
    (("ReplicaSet", "bare-rs"), {}, ("bare-rs", "ReplicaSet")),
    (("StatefulSet", "db"), {}, ("db", "StatefulSet")),
    (("DaemonSet", "agent"), {}, ("agent", "DaemonSet")),
    (("Job", "backup-28605120"), {}, ("backup", "CronJob")),
    (("Job", "migrate"), {}, ("migrate", "Job")),
    (None, {}, ("lonely", "Pod")),
])
def test_workload_follows_the_controller(index: ApiIndex, owner: tuple[str, str] | None, labels: dict[str, str],
                                         workload: tuple[str, str]) -> None:
    add_pod(index, "lonely" if owner is None else f"{owner[1]}-abcde", "10.244.0.9", owner=owner, labels=labels)
    peer = index.lookup("10.244.0.9", None, None)
    assert peer is not None and (peer["workload"], peer["workload_kind"]) == workload


def test_services_nodes_and_the_api_server(index: ApiIndex) -> None:
    index.upsert_named("service", service_record(service("checkout", "payments", cluster_ip="10.96.14.2",
                                                         labels={"app": "checkout"}, uid="s1", created=T0), LABELS))
    index.upsert_named("service", service_record(service("kubernetes", cluster_ip="10.96.0.1", uid="s0",
                                                         created=T0), LABELS))
    index.upsert_named("node", node_record(node("node-1", internal_ip="192.168.5.10", external_ip="34.1.2.3",
                                                uid="n1", created=T0), LABELS))
    assert index.lookup("10.96.14.2", 443, None) == {"kind": "service", "namespace": "payments", "name": "checkout",
                                                     "labels": {"app": "checkout"}, "ip": "10.96.14.2", "via": "api"}
    assert index.lookup("10.96.0.1", 443, None) == {"kind": "apiserver", "namespace": "default", "name": "kubernetes",
                                                    "ip": "10.96.0.1", "via": "api"}
    for ip in ("192.168.5.10", "34.1.2.3"):
        peer = index.lookup(ip, 10250, None)
        assert peer is not None and (peer["kind"], peer["name"], peer["ip"]) == ("node", "node-1", ip)


def test_host_network_pod_is_named_by_its_port_only(index: ApiIndex) -> None:
    index.upsert_named("node", node_record(node("node-1", internal_ip="192.168.5.10", uid="n1", created=T0), LABELS))
    add_pod(index, "exporter", "192.168.5.10", host_network=True, ports=(9100,), owner=("DaemonSet", "exporter"))
    hit = index.lookup("192.168.5.10", 9100, None)
    assert hit is not None and (hit["kind"], hit["name"], hit["port"]) == ("pod", "exporter", 9100)
    assert index.lookup("192.168.5.10", 22, None)["kind"] == "node"  # type: ignore[index]
    assert index.lookup("192.168.5.10", None, None)["kind"] == "node"  # type: ignore[index]
    index.delete("pod", "uid-exporter")
    assert index.lookup("192.168.5.10", 9100, None)["kind"] == "node"  # type: ignore[index]


def test_endpoint_slices_add_services_and_name_unwatched_pods(index: ApiIndex) -> None:
    add_pod(index, "web-1", "10.244.2.3")
    index.upsert_slice(slice_record(endpoint_slice("web-abc", "web", targets={"10.244.2.3": "web-1"}, uid="e1")))
    index.upsert_slice(slice_record(endpoint_slice("web-admin-x", "web-admin",
                                                   targets={"10.244.2.3": "web-1", "10.244.9.9": "far-away"},
                                                   uid="e2")))
    assert index.lookup("10.244.2.3", 80, None)["services"] == ("default/web", "default/web-admin")  # type: ignore
    assert index.lookup("10.244.9.9", 80, None) == {  # a pod the (node-restricted) pod watch does not see
        "kind": "pod", "namespace": "default", "name": "far-away", "ip": "10.244.9.9",
        "services": ("default/web-admin",), "via": "endpointslice"}
    index.delete_slice("e2")
    assert index.lookup("10.244.2.3", 80, None)["services"] == ("default/web",)  # type: ignore[index]
    assert index.lookup("10.244.9.9", 80, None) is None
    index.delete_slice("e1")
    assert "services" not in index.lookup("10.244.2.3", 80, None)  # type: ignore[operator]


def test_api_server_endpoint_is_named_on_its_port(index: ApiIndex) -> None:
    index.upsert_slice(slice_record(endpoint_slice("kubernetes", "kubernetes", targets={"172.18.0.2": None},
                                                   port=6443, uid="k")))
    assert index.lookup("172.18.0.2", 6443, None)["kind"] == "apiserver"  # type: ignore[index]
    assert index.lookup("172.18.0.2", 22, None) is None


def test_deleted_pod_stays_for_the_grace_then_leaves(index: ApiIndex, clock: Clock) -> None:
    add_pod(index, "old", "10.244.3.3")
    index.delete("pod", "uid-old")
    clock.t += 29
    assert index.lookup("10.244.3.3", None, None)["name"] == "old"  # type: ignore[index]
    assert index.lookup("10.244.3.3", None, at(50))["name"] == "old"  # type: ignore[index] # late event
    assert index.lookup("10.244.3.3", None, at(200)) is NOBODY  # after it was gone: nobody
    clock.t += 2
    assert index.lookup("10.244.3.3", None, None) is NOBODY
    assert index.expire() == 1
    assert index.lookup("10.244.3.3", None, None) is None
    assert index.stats()["addresses"] == 0


def test_reused_ip_resolves_by_event_time(index: ApiIndex, clock: Clock) -> None:
    add_pod(index, "first", "10.244.4.4", created=0)
    clock.t = SEC0 + 100
    index.delete("pod", "uid-first")
    add_pod(index, "second", None, created=90)  # created while the first was terminating
    clock.t = SEC0 + 105
    add_pod(index, "second", "10.244.4.4", created=90)  # the status patch that gives it the address
    assert index.lookup("10.244.4.4", None, None)["name"] == "second"  # type: ignore[index]
    assert index.lookup("10.244.4.4", None, at(50))["name"] == "first"  # type: ignore[index]
    assert index.lookup("10.244.4.4", None, at(95))["name"] == "first"  # type: ignore[index]
    assert index.lookup("10.244.4.4", None, at(110))["name"] == "second"  # type: ignore[index]
    clock.t += 31
    index.expire()
    assert index.lookup("10.244.4.4", None, at(50)) is NOBODY  # the first one's grace is over
    assert index.lookup("10.244.4.4", None, at(110))["name"] == "second"  # type: ignore[index]


def test_live_claim_while_the_old_holder_is_still_listed(index: ApiIndex, clock: Clock) -> None:
    add_pod(index, "first", "10.244.5.5", created=0)
    clock.t = SEC0 + 100
    add_pod(index, "second", "10.244.5.5", created=60)  # its DELETED for "first" has not arrived yet
    assert index.lookup("10.244.5.5", None, at(80))["name"] == "first"  # type: ignore[index]
    assert index.lookup("10.244.5.5", None, at(101))["name"] == "second"  # type: ignore[index]
    index.delete("pod", "uid-first")  # late: changes nothing for the new holder
    assert index.lookup("10.244.5.5", None, None)["name"] == "second"  # type: ignore[index]


def test_an_older_object_never_displaces_a_newer_holder(index: ApiIndex) -> None:
    add_pod(index, "new", "10.244.6.6", created=90, live=False)
    add_pod(index, "stale", "10.244.6.6", created=80, live=False)  # e.g. list order, or a stale status
    assert index.lookup("10.244.6.6", None, None)["name"] == "new"  # type: ignore[index]
    # it held the address until the newer one was created; its grace counts from then
    assert index.lookup("10.244.6.6", None, at(85))["name"] == "stale"  # type: ignore[index]
    assert index.lookup("10.244.6.6", None, at(95))["name"] == "new"  # type: ignore[index]


def test_event_before_the_holder_existed_is_nobody(index: ApiIndex) -> None:
    add_pod(index, "young", "10.244.7.7", created=50)
    assert index.lookup("10.244.7.7", None, at(49))["name"] == "young"  # type: ignore[index] # within skew
    assert index.lookup("10.244.7.7", None, at(40)) is NOBODY


def test_finished_pod_releases_its_ip(index: ApiIndex, clock: Clock) -> None:
    add_pod(index, "job-x", "10.244.8.8", owner=("Job", "job"))
    add_pod(index, "job-x", "10.244.8.8", owner=("Job", "job"), phase="Succeeded")
    clock.t += 31
    index.expire()
    assert index.lookup("10.244.8.8", None, None) is None


def test_relabel_replaces_the_peer_in_place(index: ApiIndex) -> None:
    add_pod(index, "p", "10.244.9.1", labels={"app": "a"})
    add_pod(index, "p", "10.244.9.1", labels={"app": "b"})
    assert index.lookup("10.244.9.1", None, None)["labels"] == {"app": "b"}  # type: ignore[index]
    assert index.stats()["in_grace"] == 0


def test_relist_forgets_what_it_no_longer_lists(index: ApiIndex, clock: Clock) -> None:
    add_pod(index, "a", "10.244.10.1", live=False)
    add_pod(index, "b", "10.244.10.2", live=False)
    assert index.replace("pod", {"uid-a"}) == 1
    clock.t += 31
    index.expire()
    assert index.lookup("10.244.10.2", None, None) is None
    assert index.lookup("10.244.10.1", None, None)["name"] == "a"  # type: ignore[index]


def test_dual_stack_pod_and_address_forms(index: ApiIndex) -> None:
    add_pod(index, "ds", ("10.244.11.1", "FD00:10:244::0B"))
    assert index.lookup("fd00:10:244::b", None, None)["name"] == "ds"  # type: ignore[index]
    assert canonical_ip("::ffff:10.244.11.1") == "10.244.11.1"
    assert canonical_ip("fe80::1%eth0") == "fe80::1"
    assert canonical_ip("not-an-ip") is None


_octet = st.one_of(st.integers(0, 999).map(str), st.integers(0, 99).map(lambda n: f"0{n}"),
                   st.sampled_from(["", "-1", "١", "1 ", "0x1"]))


@settings(max_examples=3000, deadline=None)
@given(st.lists(_octet, min_size=3, max_size=5).map(".".join))
def test_canonical_ip_fast_path_agrees_with_ipaddress(text: str) -> None:
    """The dotted-quad fast path returns exactly what ipaddress would (leading zeros, ranges, non-ASCII digits)."""
    try:
        want: str | None = str(ipaddress.ip_address(text))
    except ValueError:
        want = None
    assert canonical_ip(text) == want
