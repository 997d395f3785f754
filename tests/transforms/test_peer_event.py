"""The resolver on decoded events (tetrapipe.transforms.peer_event): reads the lean view, decodes an event's
whole pod only for a pod it has not learned yet, learns only a sock_arg's own source address."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.k8s.objects import pod, tetragon_connect
from tetrapipe.event.decode import LineDecoder
from tetrapipe.transforms.classify import Classifier
from tetrapipe.transforms.peer_event import resolve_decoded
from tetrapipe.transforms.peer_model import canonical_ip, pod_record
from tetrapipe.transforms.peers import PeerConfig, PeerResolver

CLASSIFY = Classifier(pod_cidrs=["10.244.0.0/16"], service_cidrs=["10.96.0.0/12"]).classify_connection


def resolve(r: PeerResolver, event: dict[str, Any]) -> tuple[Any, Any, Any]:
    decoded = LineDecoder().decode(orjson.dumps(event))
    assert decoded is not None
    egress, saddr, owned = CLASSIFY(decoded.vbody)
    assert egress is not None
    peer, source = resolve_decoded(r, decoded, decoded.vbody, egress.daddr, egress.dport, saddr, owned)
    return peer, source, decoded


def test_a_pod_learned_once_is_not_decoded_again() -> None:
    r = PeerResolver(PeerConfig(kubernetes=False))
    _, _, first = resolve(r, tetragon_connect("shop", "web-1", saddr="10.244.1.5", daddr="203.0.113.9",
                                               workload="web"))
    assert first._generic is not None  # a new pod: its workload and labels read once
    for saddr in ("10.244.1.5", "10.244.1.6"):  # the same address again, and a second address of the same pod
        _, _, again = resolve(r, tetragon_connect("shop", "web-1", saddr=saddr, daddr="203.0.113.9", workload="web"))
        assert again._generic is None and again._root is None  # the lean view only: no second decode
    peer, source, _ = resolve(r, tetragon_connect("shop", "api-1", saddr="10.244.1.7", daddr="10.244.1.6"))
    assert peer == {"kind": "pod", "namespace": "shop", "name": "web-1", "workload": "web",
                    "workload_kind": "Deployment", "labels": {"app": "web"}, "ip": "10.244.1.6", "via": "learned"}
    assert source is None  # the event's own pod


def test_time_of_the_event_is_read_from_the_lean_view() -> None:
    r = PeerResolver(PeerConfig(kubernetes=False, learn=False))
    r.api.upsert_pod(pod_record(pod("young", "shop", uid="u1", created="2024-05-14T09:00:30Z", ip="10.244.9.9"),
                                r.labels))
    before = tetragon_connect("shop", "web-1", saddr="10.244.1.5", daddr="10.244.9.9", time="2024-05-14T09:00:10Z")
    after = tetragon_connect("shop", "web-1", saddr="10.244.1.5", daddr="10.244.9.9", time="2024-05-14T09:00:31Z")
    assert resolve(r, before)[0] is None  # the pod did not hold the address yet
    peer = resolve(r, after)[0]
    assert peer is not None and peer["name"] == "young"


def test_only_a_sock_args_source_address_is_learned() -> None:
    r = PeerResolver(PeerConfig(kubernetes=False))
    event = tetragon_connect("shop", "web-1", saddr="10.244.1.5", daddr="203.0.113.9")
    body = event["process_kprobe"]
    body["args"] = [{"skb_arg": body["args"][0]["sock_arg"]}]  # a packet's sender may be the remote end
    resolve(r, event)
    assert r.resolve("10.244.1.5")[0] is None and r.learned is not None and len(r.learned) == 0


def test_loopback_and_link_local_sources_are_not_learned() -> None:
    r = PeerResolver(PeerConfig(kubernetes=False))
    for saddr in ("127.0.0.1", "::1", "169.254.3.3", "fe80::1", "0.0.0.0"):
        resolve(r, tetragon_connect("shop", "web-1", saddr=saddr, daddr="203.0.113.9"))
    assert r.learned is not None and len(r.learned) == 0


def test_a_host_process_teaches_nothing() -> None:
    r = PeerResolver(PeerConfig(kubernetes=False))
    resolve(r, tetragon_connect(None, None, saddr="10.244.1.5", daddr="203.0.113.9"))
    assert r.learned is not None and len(r.learned) == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 3)), min_size=1, max_size=30))
def test_lean_path_learns_what_the_mapping_path_learns(claims: list[tuple[str, int]]) -> None:
    """The same sequence of (pod, address) claims through the lean view and through pod mappings."""
    lean, plain = PeerResolver(PeerConfig(kubernetes=False)), PeerResolver(PeerConfig(kubernetes=False))
    for name, host in claims:
        event = tetragon_connect("ns", name, saddr=f"10.244.0.{host}", daddr="203.0.113.9")
        resolve(lean, event)
        plain.resolve_event(event, "203.0.113.9", 443, pod=event["process_kprobe"]["process"]["pod"])
    for host in range(4):
        assert lean.resolve(f"10.244.0.{host}")[0] == plain.resolve(f"10.244.0.{host}")[0]


_ADDRESSES = st.sampled_from(["10.244.0.1", "10.244.0.2", "10.40.0.9", "fd00::1", "FD00:0::1", "127.0.0.1", "10.96.0.10",
                             "not:an-address"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_ADDRESSES, _ADDRESSES, st.sampled_from(["a", "b", None]), st.booleans()),
                min_size=1, max_size=25), st.booleans())
def test_the_inlined_paths_answer_what_the_general_lookup_answers(
        tmp_path_factory: Any, events: list[tuple[str, str, str | None, bool]], with_static: bool) -> None:
    """resolve_seen's fast paths against lookup() and LearnedIndex.learn, the general path, on one sequence
    (two pods claiming one address within seconds make it a rival's: with and without a static file)."""
    static = tmp_path_factory.mktemp("static") / "peers.yaml"
    static.write_text("peers:\n  - {cidr: 10.40.0.0/16, name: corp, kind: database}\n  - {cidr: 10.244.0.0/16, name: pods}\n")
    file = str(static) if with_static else None
    fast = PeerResolver(PeerConfig(kubernetes=False, static_file=file))
    slow = PeerResolver(PeerConfig(kubernetes=False, static_file=file))
    for r in (fast, slow):
        r.api.upsert_pod(pod_record(pod("api-pod", "x", uid="u", created="2024-05-14T09:00:00Z", ip="10.96.0.10"),
                                    r.labels))
    for daddr, saddr, name, owned in events:
        got = fast.resolve_seen(daddr, 443, saddr, "ns" if name else None, name, None,
                                {"namespace": "ns", "name": name}, learn=owned)
        want_peer = slow.lookup(daddr, 443)
        source = slow.lookup(saddr)
        # The pod's own socket at an address learned for another pod supersedes that claim: the answer is
        # what the index says once it learned this event (this pod, or nobody while two pods claim it).
        superseded = bool(name and owned and source is not None and source["via"] == "learned"
                          and source["name"] != name)
        if name and owned and (source is None or source["via"] in ("learned", "static")):
            key = canonical_ip(saddr)
            if key is not None:
                slow.learned.learn(key, {"namespace": "ns", "name": name})  # type: ignore[union-attr]
        if superseded:
            source = slow.lookup(saddr)
        if source is not None and name and source["kind"] == "pod" and source["name"] == name \
                and source.get("namespace") == "ns":
            source = None
        assert got == (want_peer, source)
