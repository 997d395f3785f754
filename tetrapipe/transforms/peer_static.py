"""Static peers: a YAML file of CIDR or address -> name, for what no API names (databases, VPNs, partners).

File format (a mapping with ``peers:``, or the list alone)::

    peers:
      - cidr: 10.40.0.0/16      # a prefix, or one address (10.40.1.7 = 10.40.1.7/32); IPv4 or IPv6
        name: corp-vpn          # required
        kind: network           # optional, default "static"
        namespace: infra        # optional

Contract:
- Longest prefix wins (one pytricia trie per family; single addresses in a dict, read first); the same
  prefix twice is an error.
- A match is ``{kind, namespace?, name, cidr, ip, via: "static"}``, built once per address and
  memoised in a bounded table (cleared when full), so repeated addresses cost one dict read.
- :meth:`StaticPeers.reload` reads the file again and swaps the new table in only when the whole
  file is valid; on an error it raises :class:`StaticPeersError` naming the entry and the old
  table stays in use.
"""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytricia
import yaml

from tetrapipe.transforms.peer_model import Peer

_KEYS = {"cidr", "name", "kind", "namespace"}
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's: a file of thousands of entries loads in ms
_MEMO_LIMIT = 65536


class StaticPeersError(ValueError):
    """The static peers file is invalid; the message names the file and the entry."""


class _Table:
    def __init__(self) -> None:
        self.v4 = pytricia.PyTricia(32)
        self.v6 = pytricia.PyTricia(128)
        self.exact: dict[str, dict[str, str]] = {}  # single addresses (/32, /128): a dict read, no trie walk
        self.prefixes = 0  # entries in the tries
        self.size = 0


def _entry(where: str, item: Any) -> tuple[str, dict[str, str]]:
    if not isinstance(item, dict):
        raise StaticPeersError(f"{where}: expected a mapping with cidr and name")
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        raise StaticPeersError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_KEYS))})")
    for key in ("cidr", "name"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise StaticPeersError(f"{where}: {key!r} must be a non-empty string")
    for key in ("kind", "namespace"):
        if key in item and not isinstance(item[key], str):
            raise StaticPeersError(f"{where}: {key!r} must be a string")
    try:
        net = ipaddress.ip_network(item["cidr"].strip(), strict=False)
    except ValueError as exc:
        raise StaticPeersError(f"{where}: {exc}") from None
    base = {"kind": item.get("kind") or "static"}
    if item.get("namespace"):
        base["namespace"] = item["namespace"]
    base.update(name=item["name"], cidr=str(net))
    return str(net), base


def load_table(path: Path) -> _Table:
    """Parse and validate the whole file into a new table."""
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)  # noqa: S506 - a safe loader
    except (OSError, yaml.YAMLError) as exc:
        raise StaticPeersError(f"{path}: {exc}") from None
    items = doc.get("peers") if isinstance(doc, dict) else doc
    if isinstance(doc, dict) and set(doc) - {"peers"}:
        raise StaticPeersError(f"{path}: unknown key {sorted(set(doc) - {'peers'})[0]!r} (expected 'peers')")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise StaticPeersError(f"{path}: expected a list of peers")
    table, seen = _Table(), set()
    for i, item in enumerate(items):
        cidr, base = _entry(f"{path}: peers[{i}]", item)
        if cidr in seen:
            raise StaticPeersError(f"{path}: peers[{i}]: prefix {cidr} is listed twice")
        seen.add(cidr)
        address, _, length = cidr.partition("/")
        if int(length) == (128 if ":" in cidr else 32):  # the longest prefix there is: nothing can beat it
            table.exact[address] = base
        else:
            (table.v6 if ":" in cidr else table.v4)[cidr] = base
            table.prefixes += 1
        table.size += 1
    return table


class StaticPeers:
    """The static fallback; see the module docstring."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._table = _Table()
        self._memo: dict[str, Peer | None] = {}
        self.size = 0  # entries (the resolver skips the call while there are none)
        self.reloads = 0
        if self.path is not None:
            self.reload()

    def __len__(self) -> int:
        return self._table.size

    def reload(self) -> int:
        """Read the file again; returns the number of entries. Raises StaticPeersError, keeping the old table."""
        if self.path is None:
            return 0
        table = load_table(self.path)
        self._table, self._memo = table, {}  # swap as a whole: a lookup sees the old or the new table
        self.size = table.size
        self.reloads += 1
        return table.size

    def lookup(self, ip: str) -> Peer | None:
        table = self._table
        if not table.size:
            return None
        hit = self._memo.get(ip, False)
        if hit is not False:
            return hit  # type: ignore[return-value]
        base = table.exact.get(ip)
        if base is None:
            if not table.prefixes:
                return None  # no prefix can match: nothing to remember either
            tree = table.v6 if ":" in ip else table.v4
            try:
                base = tree.get(ip)
            except (ValueError, KeyError, SystemError):
                base = None
        peer: Peer | None = None
        if base is not None:
            peer = dict(base)
            peer.update(ip=ip, via="static")
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()  # bounded: an address scan must not grow memory
        self._memo[ip] = peer
        return peer
