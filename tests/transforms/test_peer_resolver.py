"""The peer resolver: precedence (API > learned > static), learning from the stream, sources, config, counts."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.k8s.objects import node, pod, service, tetragon_connect
from tests.support import synth
from tetrapipe.transforms.peer_model import epoch_seconds, node_record, pod_record, service_record
from tetrapipe.transforms.peers import PeerConfig, PeerConfigError, PeerResolver, source_address

T0 = "2024-05-14T09:00:00Z"
SEC0 = epoch_seconds(T0) or 0


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock(SEC0 + 10)


def make(clock: Clock, tmp_path: Path | None = None, **cfg: object) -> PeerResolver:
    if tmp_path is not None:
        static = tmp_path / "peers.yaml"
        static.write_text("peers:\n  - {cidr: 10.244.0.0/16, name: pod-network, kind: network}\n"
                          "  - {cidr: 203.0.113.7, name: partner-api, kind: external}\n")
        cfg["static_file"] = str(static)
    return PeerResolver(PeerConfig(**cfg), clock=clock)  # type: ignore[arg-type]


def api_pod(r: PeerResolver, name: str, ip: str, created: str = T0, ns: str = "payments") -> None:
    r.api.upsert_pod(pod_record(pod(name, ns, uid=f"uid-{name}", created=created, ip=ip), r.labels))


def test_api_wins_over_learned_and_static(clock: Clock, tmp_path: Path) -> None:
    r = make(clock, tmp_path)
    api_pod(r, "api-0", "10.244.1.7")
    r.learned.learn("10.244.1.7", {"namespace": "evil", "name": "impostor"})  # type: ignore[union-attr]
    peer, _ = r.resolve("10.244.1.7", 443)
    assert peer is not None and (peer["name"], peer["via"]) == ("api-0", "api")


def test_learned_fills_what_the_api_does_not_know_then_static(clock: Clock, tmp_path: Path) -> None:
    r = make(clock, tmp_path)
    ev = tetragon_connect("shop", "cart-1", saddr="10.244.2.2", daddr="10.96.0.10", workload="cart")
    r.resolve_event(ev, "10.96.0.10", 443, pod=ev["process_kprobe"]["process"]["pod"])
    peer, _ = r.resolve("10.244.2.2", 80)
    assert peer == {"kind": "pod", "namespace": "shop", "name": "cart-1", "workload": "cart",
                    "workload_kind": "Deployment", "labels": {"app": "cart"}, "ip": "10.244.2.2", "via": "learned"}
    peer, _ = r.resolve("10.244.3.3", 80)
    assert peer is not None and (peer["kind"], peer["name"], peer["via"]) == ("network", "pod-network", "static")
    assert r.resolve("198.51.100.1", 80) == (None, None)
    assert (r.stats()["resolved"], r.stats()["unknown"]) == (4, 2)  # 10.96.0.10 too


def test_known_address_at_another_time_does_not_fall_back(clock: Clock, tmp_path: Path) -> None:
    r = make(clock, tmp_path)
    api_pod(r, "late", "10.244.4.4", created="2024-05-14T09:00:05Z")
    assert r.resolve("10.244.4.4", time="2024-05-14T08:59:00Z") == (None, None)  # not the static "pod-network"
    assert r.resolve("10.244.4.4", time="2024-05-14T09:00:06.25Z")[0]["name"] == "late"  # type: ignore[index]


def test_learned_entries_expire_when_idle(clock: Clock) -> None:
    r = make(clock, learn_idle=60.0)
    r.learned.learn("10.244.5.5", {"namespace": "a", "name": "p"})  # type: ignore[union-attr]
    clock.t += 59
    r.learned.learn("10.244.5.5", {"namespace": "a", "name": "p"})  # type: ignore[union-attr]  # seen again
    clock.t += 59
    assert r.expire() == 0 and r.resolve("10.244.5.5")[0] is not None
    clock.t += 2
    assert r.expire() == 1 and r.resolve("10.244.5.5")[0] is None


def test_two_pods_on_one_learned_address_resolve_to_nobody(clock: Clock) -> None:
    r = make(clock, learn_conflict=30.0)
    assert r.learned is not None
    r.learned.learn("192.168.5.10", {"namespace": "a", "name": "host-net-1"})
    clock.t += 1
    r.learned.learn("192.168.5.10", {"namespace": "b", "name": "host-net-2"})
    assert r.resolve("192.168.5.10")[0] is None
    clock.t += 1
    r.learned.learn("192.168.5.10", {"namespace": "a", "name": "host-net-1"})  # flapping: still ambiguous
    clock.t += 29
    assert r.resolve("192.168.5.10")[0] is None
    clock.t += 2  # one pod alone for longer than the conflict window
    assert r.resolve("192.168.5.10")[0]["name"] == "host-net-1"  # type: ignore[index]
    assert r.stats()["learned_conflicts"] == 2


def test_learned_address_reused_after_silence_moves_to_the_new_pod(clock: Clock) -> None:
    r = make(clock, learn_conflict=30.0)
    assert r.learned is not None
    r.learned.learn("10.244.6.6", {"namespace": "a", "name": "old"})
    clock.t += 31
    r.learned.learn("10.244.6.6", {"namespace": "a", "name": "new"})
    assert r.resolve("10.244.6.6")[0]["name"] == "new"  # type: ignore[index]


@pytest.mark.parametrize("silence", [31.0, 1.0])
def test_a_pods_own_socket_never_gets_another_pods_learned_claim_as_its_source(clock: Clock, silence: float) -> None:
    """The event proves its pod holds the address: the other pod's claim is stale (reused after silence: the
    address moves) or contested (both active: nobody) — either way it is not this event's `source`."""
    r = make(clock, learn_conflict=30.0)
    r.resolve("203.0.113.9", 443, saddr="10.244.6.6", pod={"namespace": "a", "name": "old"})
    clock.t += silence
    assert r.resolve("203.0.113.9", 443, saddr="10.244.6.6", pod={"namespace": "a", "name": "new"})[1] is None
    now = r.resolve("10.244.6.6")[0]
    assert (now["name"] if now is not None else None) == ("new" if silence > 30 else None)
    skb = r.resolve_seen("203.0.113.9", 443, "10.244.6.6", "a", "third", None, learn=False)  # a packet's sender
    assert skb[1] == now  # not the pod's own address: the index's answer is the source


def test_a_contested_own_address_falls_back_to_the_static_file(clock: Clock, tmp_path: Path) -> None:
    r = make(clock, tmp_path, learn_conflict=30.0)
    r.resolve("203.0.113.9", 443, saddr="10.244.6.6", pod={"namespace": "a", "name": "old"})
    clock.t += 1
    source = r.resolve("203.0.113.9", 443, saddr="10.244.6.6", pod={"namespace": "a", "name": "new"})[1]
    assert source is not None and source["name"] == "pod-network" and source["via"] == "static"


def test_learned_ipv6_and_mapped_sources_are_stored_canonical(clock: Clock) -> None:
    r = make(clock)
    r.resolve("10.96.0.10", 53, saddr="::ffff:10.244.12.1", pod={"namespace": "a", "name": "v4"})
    r.resolve("10.96.0.10", 53, saddr="FD00:10:244::0C", pod={"namespace": "a", "name": "v6"})
    assert r.resolve("10.244.12.1")[0]["name"] == "v4"  # type: ignore[index]
    assert r.resolve("fd00:10:244::c")[0]["name"] == "v6"  # type: ignore[index]


def test_learning_can_be_turned_off(clock: Clock) -> None:
    r = make(clock, learn=False)
    ev = tetragon_connect("shop", "cart-1", saddr="10.244.2.2", daddr="10.96.0.10")
    r.resolve_event(ev, "10.96.0.10", 443, pod=ev["process_kprobe"]["process"]["pod"])
    assert r.learned is None and r.resolve("10.244.2.2")[0] is None


def test_learned_index_is_bounded(clock: Clock) -> None:
    r = make(clock, learn_max=2)
    assert r.learned is not None
    for i in range(5):
        r.learned.learn(f"10.244.7.{i}", {"namespace": "a", "name": f"p{i}"})
    assert len(r.learned) == 2 and r.stats()["learned_dropped"] == 3


def test_source_is_given_only_when_it_is_not_the_events_own_pod(clock: Clock) -> None:
    r = make(clock)
    api_pod(r, "client", "10.244.8.1")
    api_pod(r, "other", "10.244.8.2")
    r.api.upsert_named("node", node_record(node("node-1", internal_ip="192.168.5.10", uid="n", created=T0), r.labels))
    r.api.upsert_named("service", service_record(service("db", "payments", cluster_ip="10.96.3.3", uid="s",
                                                         created=T0), r.labels))
    own = {"namespace": "payments", "name": "client"}
    peer, source = r.resolve("10.96.3.3", 5432, saddr="10.244.8.1", pod=own)
    assert peer is not None and peer["kind"] == "service" and source is None
    _, source = r.resolve("10.96.3.3", 5432, saddr="10.244.8.2", pod=own)
    assert source is not None and source["name"] == "other"
    _, source = r.resolve("10.96.3.3", 5432, saddr="192.168.5.10", pod=None)  # a host process
    assert source is not None and source["kind"] == "node"


def test_resolve_event_reads_time_and_source_from_the_event(clock: Clock) -> None:
    r = make(clock)
    api_pod(r, "young", "10.244.9.9", created="2024-05-14T09:00:30Z")
    ev = tetragon_connect("payments", "client", saddr="10.244.9.1", daddr="10.244.9.9",
                          time="2024-05-14T09:00:10.5Z")
    assert source_address(ev["process_kprobe"]) == "10.244.9.1"
    assert r.resolve_event(ev, "10.244.9.9", 80, pod=ev["process_kprobe"]["process"]["pod"]) == (None, None)
    ev["time"] = "2024-05-14T09:00:31.000000001Z"
    peer, _ = r.resolve_event(ev, "10.244.9.9", 80, pod=ev["process_kprobe"]["process"]["pod"])
    assert peer is not None and peer["name"] == "young"
    assert r.resolve("10.244.9.1")[0]["name"] == "client"  # type: ignore[index] # learned from the event


def test_ipv6_and_mapped_destinations(clock: Clock) -> None:
    r = make(clock)
    api_pod(r, "v4", "10.244.10.1")
    api_pod(r, "v6", "fd00:10:244:1::1f")
    assert r.resolve("::ffff:10.244.10.1")[0]["name"] == "v4"  # type: ignore[index]
    assert r.resolve("FD00:10:244:1:0::1F")[0]["name"] == "v6"  # type: ignore[index]
    assert r.resolve("fe80::1%eth0") == (None, None)
    assert r.resolve("garbage:::") == (None, None)


def test_synthetic_stream_runs_through(clock: Clock, tmp_path: Path) -> None:
    r = make(clock, tmp_path)
    n = 0
    for line in synth.generate(3000, seed=7, mix={"egress": 1}):
        ev = orjson.loads(line)
        body = ev["process_kprobe"]
        sock = body["args"][0]["sock_arg"]
        pod_ = body["process"].get("pod")
        peer, _ = r.resolve_event(ev, sock["daddr"], sock["dport"], pod=pod_, body=body)
        n += 1
    stats = r.stats()
    assert stats["resolved"] == n and 0 < stats["unknown"] < n
    assert stats["learned"] > 0


@pytest.mark.parametrize(("data", "message"), [
    ({"lern": True}, "peers.lern: unknown key"),
    ({"learn": "yes"}, "peers.learn: expected bool"),
    ({"grace": -1}, "peers.grace: expected a non-negative number"),
    ({"labels": "app"}, "peers.labels: expected a list of strings"),
    ({"node_name": 3}, "peers.node_name: expected str"),
])
def test_config_errors_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(PeerConfigError, match=message):
        PeerConfig.from_mapping(data)


def test_config_from_mapping() -> None:
    cfg = PeerConfig.from_mapping({"learn": False, "grace": 5, "labels": ["app"], "node_name": "n1",
                                   "static_file": None})
    assert (cfg.learn, cfg.grace, cfg.labels, cfg.node_name, cfg.static_file) == (False, 5.0, ("app",), "n1", None)
    assert PeerConfig.from_mapping(None) == PeerConfig()
