"""The default format encodes each peer once (`tetrapipe.formats.tetrapipe.peer_json`): the resolver hands
every event at one address the same read-only dict, so its JSON is kept with it."""

from __future__ import annotations

import msgspec
import pytest

from tetrapipe.formats import tetrapipe as fmt

POD = {"kind": "pod", "namespace": "payments", "name": "db-0", "workload": "db", "workload_kind": "StatefulSet",
       "labels": {"app": "db"}, "ip": "10.244.1.7", "services": ("payments/db",), "via": "api"}


@pytest.fixture(autouse=True)
def empty_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fmt, "_peer_json", {})


def test_a_peer_is_encoded_as_msgspec_would() -> None:
    assert fmt.peer_json(POD) == msgspec.json.encode(POD)


def test_the_same_peer_is_encoded_once() -> None:
    first = fmt.peer_json(POD)
    assert fmt.peer_json(POD) is first
    assert len(fmt._peer_json) == 1


def test_an_equal_but_other_peer_has_its_own_entry() -> None:
    """A peer the index replaced (relabelled pod) is a new dict: never answered from the old one's bytes."""
    fmt.peer_json(POD)
    moved = dict(POD, name="db-1", labels={"app": "db", "tier": "gold"})
    assert msgspec.json.decode(fmt.peer_json(moved)) == msgspec.json.decode(msgspec.json.encode(moved))
    assert fmt.peer_json(POD) == msgspec.json.encode(POD)


def test_a_freed_peer_whose_id_is_reused_is_not_answered_from_the_memo() -> None:
    """The memo holds each peer, so its id cannot be reused while an entry names it; a forged entry whose
    object differs (what a reused id would look like) is not trusted."""
    other = {"kind": "node", "name": "node-0", "ip": "172.27.66.2", "via": "api"}
    fmt._peer_json[id(POD)] = (other, msgspec.json.encode(other))
    assert fmt.peer_json(POD) == msgspec.json.encode(POD)


def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fmt, "_PEER_JSON_LIMIT", 3)
    peers = [dict(POD, name=f"db-{i}") for i in range(10)]
    for peer in peers:
        assert fmt.peer_json(peer) == msgspec.json.encode(peer)
        assert len(fmt._peer_json) <= 3
