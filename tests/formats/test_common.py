"""`_common.clean_ip`'s IPv4 fast path accepts exactly what `ipaddress` does (everything else still goes through it)."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from tetrapipe.formats import _common

OCTETS = st.sampled_from(["0", "00", "01", "1", "9", "10", "99", "100", "199", "200", "249", "250", "255", "256",
                          "300", "012", "1a", "", "٣", " 1"])
DOTTED = st.lists(OCTETS, min_size=3, max_size=5).map(".".join)


def _reference(text: str) -> str | None:
    bare = text.partition("%")[0]
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        return None
    return bare


@given(text=DOTTED | st.text(alphabet="0123456789.:%abcdef", max_size=20))
def test_clean_ip_agrees_with_ipaddress(text: str) -> None:
    _common._IPS.clear()
    assert _common.clean_ip(text) == _reference(text)
    assert _common.clean_ip(text) == _reference(text)  # and from the memo
