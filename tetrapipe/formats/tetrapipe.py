"""`tetrapipe`: the output contract (README, "Output contract"), the default format everywhere.

The event's own bytes — the unwrapped object, byte for byte — with one key, `tetrapipe`,
appended: categories, groups, summaries, the egress classification and, when the peer resolver
knows them, who is at the destination (`peer`) and at the source (`source`, only when it is not
the event's own pod; see tetrapipe.transforms.peers).  The processor
renders it for every event as it tags it (`enriched(decoded, tetrapipe_object(...))`), since
every run has a sink in this format unless configured otherwise; `record()` returns that.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from tetrapipe.event.decode import Decoded
from tetrapipe.event.envelope import Envelope
from tetrapipe.event.tags import EMPTY_TP, UNTAGGED_END, Tags

__all__ = ["EMPTY_TP", "UNTAGGED_END", "TetrapipeFormat", "enriched", "enriched_line", "tetrapipe_object"]

_encode = msgspec.json.Encoder().encode
_PLAIN_END = UNTAGGED_END + b"\n"  # enriched(), for most events (no tag, no egress), and its newline
_PEER_JSON_LIMIT = 16384
_peer_json: dict[int, tuple[dict, bytes]] = {}  # id(peer) -> (peer, its JSON); the peer is held so its id stays its own


def peer_json(peer: dict) -> bytes:
    """A peer's JSON, encoded once per peer: the resolver hands the same read-only dict to every event that
    reaches that address (``tetrapipe.transforms.peers``), and encoding a pod's (0.2–0.4 µs) is a large part
    of the resolver's per-event budget. Bounded: cleared when full; until then it also keeps alive the peers
    the index has replaced (at most ``_PEER_JSON_LIMIT``, about 1 KiB each)."""
    hit = _peer_json.get(id(peer))
    if hit is not None and hit[0] is peer:
        return hit[1]
    if len(_peer_json) >= _PEER_JSON_LIMIT:
        _peer_json.clear()
    encoded = _encode(peer)
    _peer_json[id(peer)] = (peer, encoded)
    return encoded


def tetrapipe_object(tags: Tags, decoded: Decoded) -> bytes:
    """The `tetrapipe` value of the output contract, as JSON bytes."""
    egress = decoded.egress
    if not tags.categories and egress is None:
        return EMPTY_TP
    summaries = _encode(tags.summaries) if tags.summaries else b"{}"
    if egress is None:
        return b"".join((tags.head, summaries, b"}"))
    peer, source = decoded.peer, decoded.source_peer
    if peer is None and source is None:
        return b"".join((tags.head, summaries, b',"egress":', _encode(egress), b"}"))
    parts = [tags.head, summaries, b',"egress":', _encode(egress)]
    if peer is not None:
        parts += (b',"peer":', peer_json(peer))
    if source is not None:
        parts += (b',"source":', peer_json(source))
    parts.append(b"}")
    return b"".join(parts)


def enriched(decoded: Decoded, tp: bytes) -> bytes:
    """The event's own bytes with `"tetrapipe": tp` added as the last key."""
    raw = decoded.raw
    if decoded.has_tetrapipe_key:
        # Re-processing tetrapipe output: replace the old key instead of duplicating it.
        root = dict(decoded.generic_root())
        root.pop("tetrapipe", None)
        raw = _encode(root)
    return b"".join((raw[:-1], b',"tetrapipe":', tp, b"}"))


def enriched_line(tags: Tags, decoded: Decoded) -> bytes:
    """`enriched(decoded, tetrapipe_object(tags, decoded))`, in one join (the processor's, per tagged event)."""
    if decoded.has_tetrapipe_key:
        return enriched(decoded, tetrapipe_object(tags, decoded))
    egress = decoded.egress
    if not tags.categories and egress is None:
        return decoded.raw[:-1] + UNTAGGED_END
    summaries = _encode(tags.summaries) if tags.summaries else b"{}"
    if egress is None:
        return b"".join((decoded.raw[:-1], b',"tetrapipe":', tags.head, summaries, b"}}"))
    parts = [decoded.raw[:-1], b',"tetrapipe":', tags.head, summaries, b',"egress":', _encode(egress)]
    peer, source = decoded.peer, decoded.source_peer
    if peer is not None:
        parts += (b',"peer":', peer_json(peer))
    if source is not None:
        parts += (b',"source":', peer_json(source))
    parts.append(b"}}")
    return b"".join(parts)


class TetrapipeFormat:
    name = "tetrapipe"

    def record(self, env: Envelope) -> bytes | None:
        return env.out

    def lines(self, envelopes: Sequence[Envelope]) -> bytes:
        # One join for the batch.  An event the processor left plain (`rendered` empty: see
        # Envelope.out) goes in as its bytes up to the closing brace and the common ending: one
        # copy into the buffer, where making its line first would copy it twice more.
        parts: list[bytes] = []
        append = parts.append
        for env in envelopes:
            out = env.rendered
            if out:
                append(out)
                append(b"\n")
            elif type(decoded := env.decoded) is Decoded:
                append(decoded.raw[:-1])
                append(_PLAIN_END)
            else:  # no event (`out` is empty): an empty line, as ever
                append(b"\n")
        return b"".join(parts)
