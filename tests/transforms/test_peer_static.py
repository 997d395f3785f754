"""The static peers file: format, longest prefix, IPv6, reload (good and bad)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tetrapipe.transforms.peer_static import StaticPeers, StaticPeersError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_longest_prefix_and_fields(tmp_path: Path) -> None:
    f = write(tmp_path / "p.yaml", """
peers:
  - {cidr: 10.40.0.0/16, name: corp-vpn, kind: network}
  - {cidr: 10.40.1.7, name: legacy-db, namespace: data}
  - {cidr: "2001:db8::/32", name: partner-v6}
""")
    s = StaticPeers(f)
    assert len(s) == 3
    assert s.lookup("10.40.1.7") == {"kind": "static", "namespace": "data", "name": "legacy-db",
                                     "cidr": "10.40.1.7/32", "ip": "10.40.1.7", "via": "static"}
    assert s.lookup("10.40.9.9") == {"kind": "network", "name": "corp-vpn", "cidr": "10.40.0.0/16",
                                     "ip": "10.40.9.9", "via": "static"}
    assert s.lookup("2001:db8::5")["name"] == "partner-v6"  # type: ignore[index]
    assert s.lookup("10.41.0.1") is None
    assert s.lookup("10.40.9.9") is s.lookup("10.40.9.9")  # memoised


def test_a_bare_list_and_an_empty_file_are_accepted(tmp_path: Path) -> None:
    assert len(StaticPeers(write(tmp_path / "a.yaml", "- {cidr: 1.2.3.4, name: x}\n"))) == 1
    assert len(StaticPeers(write(tmp_path / "b.yaml", ""))) == 0
    assert StaticPeers().lookup("1.2.3.4") is None


@pytest.mark.parametrize(("text", "message"), [
    ("peers:\n  - {cidr: 10.0.0.0/8}\n", r"peers\[0\]: 'name' must be a non-empty string"),
    ("peers:\n  - {cidr: 10.0.0.300, name: x}\n", r"peers\[0\]: .*does not appear to be an IPv4 or IPv6"),
    ("peers:\n  - {cidr: 10.0.0.0/8, name: x, zone: y}\n", r"peers\[0\]: unknown key 'zone'"),
    ("peers:\n  - {cidr: 10.0.0.0/8, name: x}\n  - {cidr: 10.1.0.0/8, name: y}\n",
     r"peers\[1\]: prefix 10.0.0.0/8 is listed twice"),
    ("peer: []\n", "unknown key 'peer'"),
    ("peers: {a: 1}\n", "expected a list of peers"),
    ("peers: [\n", "while parsing"),
])
def test_errors_name_the_entry(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(StaticPeersError, match=message):
        StaticPeers(write(tmp_path / "bad.yaml", text))


def test_reload_swaps_in_a_valid_file_and_keeps_the_old_table_otherwise(tmp_path: Path) -> None:
    f = write(tmp_path / "p.yaml", "- {cidr: 10.1.0.0/16, name: one}\n")
    s = StaticPeers(f)
    assert s.lookup("10.1.2.3")["name"] == "one"  # type: ignore[index]
    write(f, "- {cidr: 10.1.0.0/16, name: two}\n- {cidr: 10.2.0.0/16, name: three}\n")
    assert s.reload() == 2
    assert s.lookup("10.1.2.3")["name"] == "two"  # type: ignore[index] # the memo was reset too
    write(f, "- {cidr: nope, name: broken}\n")
    with pytest.raises(StaticPeersError):
        s.reload()
    assert s.lookup("10.2.0.1")["name"] == "three"  # type: ignore[index]
    f.unlink()
    with pytest.raises(StaticPeersError):
        s.reload()
    assert len(s) == 2 and s.reloads == 2


@settings(max_examples=60, deadline=None)
@given(st.sets(st.tuples(st.integers(0, 3), st.integers(0, 3), st.sampled_from([24, 32, 30])), min_size=1, max_size=8),
       st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=10))
def test_single_addresses_and_prefixes_answer_the_longest_prefix(
        tmp_path_factory: pytest.TempPathFactory, entries: set[tuple[int, int, int]],
        asked: list[tuple[int, int]]) -> None:
    """Single addresses live in a dict, prefixes in the trie: the longest matching prefix still wins."""
    nets = {ipaddress.ip_network(f"10.9.{a}.{b}/{n}", strict=False) for a, b, n in entries}
    path = tmp_path_factory.mktemp("s") / "peers.yaml"
    path.write_text(yaml.safe_dump({"peers": [{"cidr": str(net), "name": str(net)} for net in nets]}))
    static = StaticPeers(path)
    for a, b in asked:
        ip = f"10.9.{a}.{b}"
        matching = [net for net in nets if ipaddress.ip_address(ip) in net]
        want = str(max(matching, key=lambda net: net.prefixlen)) if matching else None
        got = static.lookup(ip)
        assert (got["name"] if got else None) == want
