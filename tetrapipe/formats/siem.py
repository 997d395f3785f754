"""`ocsf` and `ecs`: the event in a SIEM's schema (mappings in `ocsf.py` and `ecs.py`).

Both re-encode the event from its decoded form, with its tags, egress classification and the
peer resolver's answers (`peer`, `source`) carried along; `ocsf` with `findings` also emits a
Detection Finding per event tagged with a `security`-group category (a second line of the same
record).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from tetrapipe.event.envelope import Envelope
from tetrapipe.formats.base import lines_of_records
from tetrapipe.formats.ecs import encode_ecs
from tetrapipe.formats.ocsf import encode_ocsf


def _parts(env: Envelope) -> tuple[dict[str, Any], str, tuple[str, ...], tuple[str, ...], dict[str, Any] | None]:
    decoded = env.decoded
    assert decoded is not None, "formats render decoded events only"
    egress = decoded.egress
    # Decoded here and dropped after the mapping (Decoded.plain_view), not kept on the envelope.
    return (decoded.plain_view(), decoded.etype, env.tags.categories,
            env.tags.groups, msgspec.to_builtins(egress) if egress is not None else None)


def _peers(env: Envelope) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    decoded = env.decoded
    return (decoded.peer, decoded.source_peer) if decoded is not None else (None, None)


class OcsfFormat:
    name = "ocsf"

    def __init__(self, findings: bool = False, category_groups: Mapping[str, str] | None = None) -> None:
        self.findings = findings
        self.category_groups = dict(category_groups or {})

    def record(self, env: Envelope) -> bytes | None:
        peer, source = _peers(env)
        return encode_ocsf(*_parts(env), findings=self.findings, category_groups=self.category_groups,
                           peer=peer, source=source)

    def lines(self, envelopes: Sequence[Envelope]) -> bytes:
        return lines_of_records(self, envelopes)


class EcsFormat:
    name = "ecs"

    def record(self, env: Envelope) -> bytes | None:
        return encode_ecs(*_parts(env), *_peers(env))

    def lines(self, envelopes: Sequence[Envelope]) -> bytes:
        return lines_of_records(self, envelopes)
