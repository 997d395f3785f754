"""`sources: [{type: follow, path: FILE, checkpoint: PATH}]` — the short form is `--follow FILE --checkpoint PATH`.

Apart from the source so that loading a config imports no more than the struct.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import msgspec

from tetrapipe.event.oversized import Spill

if TYPE_CHECKING:
    from tetrapipe.sources.follow.source import FollowSource


class FollowSourceConfig(msgspec.Struct, tag="follow", tag_field="type", forbid_unknown_fields=True,
                         omit_defaults=True):
    """A file followed like `tail -F`; `checkpoint` keeps the acknowledged position (required)."""

    path: str
    checkpoint: str
    start_at: Literal["beginning", "end"] = "beginning"  # first run only (no checkpoint yet); --follow-from

    def build(self, spill: Spill | None = None) -> FollowSource:
        from tetrapipe.sources.follow.source import FollowSource

        return FollowSource(self.path, self.checkpoint, start_at=self.start_at, spill=spill)
