"""CIDR zone classification: built-in zones, configured zones, longest prefix, v4/v6/mapped."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tetrapipe.transforms.classify import Classifier, ConfigError, ZoneSpec, connection, destination
from tetrapipe.transforms.peers import socket_source


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(
        pod_cidrs=["10.244.0.0/16", "fd10:244::/56"],
        service_cidrs=["10.96.0.0/12"],
        zones=[ZoneSpec("corp-vpn", ("10.8.0.0/16", "192.168.50.0/24"), internal=True),
               ZoneSpec("partner", ("203.0.113.0/24",), internal=False)],
    )


@pytest.mark.parametrize(("addr", "zone", "external", "cidr"), [
    ("104.198.14.52", "public", True, "0.0.0.0/0"),
    ("10.244.1.2", "pod", False, "10.244.0.0/16"),
    ("10.96.0.1", "service", False, "10.96.0.0/12"),
    ("10.111.255.255", "service", False, "10.96.0.0/12"),
    ("10.112.0.1", "private", True, "10.0.0.0/8"),
    ("172.16.0.1", "private", True, "172.16.0.0/12"),
    ("192.168.1.1", "private", True, "192.168.0.0/16"),
    ("100.64.1.1", "private", True, "100.64.0.0/10"),
    ("169.254.169.254", "metadata", True, "169.254.169.254/32"),
    ("169.254.169.253", "link-local", True, "169.254.0.0/16"),
    ("127.0.0.1", "loopback", False, "127.0.0.0/8"),
    ("127.8.9.10", "loopback", False, "127.0.0.0/8"),
    ("224.0.0.251", "multicast", True, "224.0.0.0/4"),
    ("0.0.0.0", "unspecified", False, "0.0.0.0/8"),
    ("10.8.3.4", "corp-vpn", False, "10.8.0.0/16"),
    ("192.168.50.7", "corp-vpn", False, "192.168.50.0/24"),   # more specific than private 192.168/16
    ("192.168.51.7", "private", True, "192.168.0.0/16"),
    ("203.0.113.9", "partner", True, "203.0.113.0/24"),
    ("::1", "loopback", False, "::1/128"),
    ("2606:4700::1111", "public", True, "::/0"),
    ("fd00::1", "private", True, "fc00::/7"),
    ("fd10:244::5", "pod", False, "fd10:244::/56"),          # more specific than ULA fc00::/7
    ("fd00:ec2::254", "metadata", True, "fd00:ec2::254/128"),
    ("fe80::1", "link-local", True, "fe80::/10"),
    ("fe80::1%eth0", "link-local", True, "fe80::/10"),
    ("ff02::1", "multicast", True, "ff00::/8"),
    ("::ffff:104.198.14.52", "public", True, "0.0.0.0/0"),   # IPv4-mapped: classified as IPv4
    ("::ffff:10.244.0.3", "pod", False, "10.244.0.0/16"),
    ("::FFFF:127.0.0.1", "loopback", False, "127.0.0.0/8"),
])
def test_zones(classifier, addr, zone, external, cidr):
    assert classifier.lookup(addr) == (zone, external, cidr)


@pytest.mark.parametrize("addr", ["", "not-an-ip", "999.1.1.1", "1.2.3", "::gg"])
def test_non_addresses_have_no_zone(classifier, addr):
    assert classifier.lookup(addr) is None


def test_configured_zone_beats_builtin_with_same_prefix():
    c = Classifier(pod_cidrs=["10.0.0.0/8"])
    assert c.lookup("10.1.2.3") == ("pod", False, "10.0.0.0/8")


def test_same_cidr_in_two_configured_zones_is_an_error():
    with pytest.raises(ConfigError, match="both zone 'pod' and zone 'service'"):
        Classifier(pod_cidrs=["10.0.0.0/16"], service_cidrs=["10.0.0.0/16"])


def test_invalid_cidr_names_the_zone():
    with pytest.raises(ConfigError, match="zone 'corp'"):
        Classifier(zones=[ZoneSpec("corp", ("10.0.0.0/33",), True)])


def test_host_bits_are_an_error_that_names_the_setting_and_the_network():
    with pytest.raises(ConfigError, match=r"--pod-cidr / POD_CIDR / egress.pod_cidrs: 10.244.1.7/16 has host "
                                          r"bits set; the network is 10.244.0.0/16"):
        Classifier(pod_cidrs=["10.244.1.7/16"])
    assert Classifier(pod_cidrs=["10.244.0.0/16", "10.0.0.1"]).lookup("10.0.0.1")[0] == "pod"  # a host is a /32


def test_thousands_of_cidrs(classifier):
    zones = [ZoneSpec(f"z{i}", (f"11.{i // 256}.{i % 256}.0/24",), i % 2 == 0) for i in range(5000)]
    big = Classifier(zones=zones)
    assert big.lookup("11.3.7.200") == ("z775", True, "11.3.7.0/24")
    assert big.lookup("11.3.8.1") == ("z776", False, "11.3.8.0/24")
    assert big.lookup("11.200.0.1")[0] == "public"


def test_memo_is_bounded(classifier):
    for i in range(70000):
        classifier.lookup(f"44.{i // 65536}.{(i // 256) % 256}.{i % 256}")
    assert len(classifier._memo) <= 65536


@pytest.mark.parametrize(("args", "expected"), [
    ([{"sock_arg": {"daddr": "1.2.3.4", "dport": 80}}], ("1.2.3.4", 80)),
    ([{"int_arg": 1}, {"sockaddr_arg": {"addr": "::1", "port": 22}}], ("::1", 22)),
    ([{"skb_arg": {"daddr": "8.8.8.8", "dport": 53}}], ("8.8.8.8", 53)),
    ([{"sock_arg": {"saddr": "1.2.3.4"}}], None),
    ([], None),
    (None, None),
    (["not-a-dict"], None),
])
def test_destination(args, expected):
    assert destination({"args": args}) == expected


def test_egress_object(classifier):
    egress = classifier.classify({"args": [{"sock_arg": {"daddr": "8.8.8.8", "dport": 53}}]})
    assert (egress.zone, egress.external, egress.daddr, egress.dport, egress.cidr) == (
        "public", True, "8.8.8.8", 53, "0.0.0.0/0")


_SOCK = st.fixed_dictionaries({}, optional={"daddr": st.sampled_from(["", "10.0.0.1", "fe80::1%eth0", 7]),
                                             "saddr": st.sampled_from(["", "10.244.0.5", None, 5]),
                                             "dport": st.sampled_from([80, None, "x"])})
_SOCKADDR = st.fixed_dictionaries({}, optional={"addr": st.sampled_from(["", "192.0.2.1"]),
                                                 "port": st.sampled_from([53, None])})
_VALUE = st.one_of(_SOCK, st.just({}), st.none(), st.just(0), st.just("s"))
_ARG = st.one_of(
    st.fixed_dictionaries({}, optional={"sock_arg": _VALUE, "skb_arg": _VALUE,
                                        "sockaddr_arg": st.one_of(_SOCKADDR, st.none(), st.just(1)),
                                        "int_arg": st.just(3)}),
    st.just("not-a-dict"), st.none())


_PODS = Classifier(pod_cidrs=["10.244.0.0/16"])  # built once: hypothesis runs the test 500 times


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.none(), st.lists(_ARG, max_size=4)))
def test_connection_is_destination_and_socket_source_in_one_pass(args: Any) -> None:
    """The one-pass reading (with the peer resolver on) gives what the two separate readings give."""
    body = {"args": args}
    dest = destination(body)
    expected = None if dest is None else (*dest, *socket_source(args))
    assert connection(body) == expected
    egress, saddr, owned = _PODS.classify_connection(body)
    assert egress == _PODS.classify(body)
    assert (saddr, owned) == ((None, False) if dest is None else socket_source(args))
