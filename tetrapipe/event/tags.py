"""The tags of one event: its categories (sorted ids), their groups and summary lines.

Made by `tetrapipe.transforms.tag`, carried on the envelope, read by formats and sinks (selection,
routing, severity); here at the bottom so that carrying them needs nothing of the rule compiler.
"""

from __future__ import annotations

import msgspec

_encode = msgspec.json.Encoder().encode


class Tags:
    """The categories of one event (sorted ids), their groups and summaries.

    `head` is the JSON of the output contract's `tetrapipe` object up to the
    summaries value (`{"categories":[…],"groups":[…],"summaries":`), shared by
    every event with the same categories.
    """

    __slots__ = ("categories", "groups", "summaries", "head")

    def __init__(self, categories: tuple[str, ...], groups: tuple[str, ...], summaries: dict[str, str],
                 head: bytes) -> None:
        self.categories = categories
        self.groups = groups
        self.summaries = summaries
        self.head = head


def tags_head(categories: tuple[str, ...], groups: tuple[str, ...]) -> bytes:
    return b"".join((b'{"categories":', _encode(categories), b',"groups":', _encode(groups), b',"summaries":'))


NO_TAGS = Tags((), (), {}, tags_head((), ()))


# The output contract's `tetrapipe` value of an event without categories or egress, and how its line
# ends: here at the bottom because the envelope renders such lines on demand (tetrapipe.event.envelope).
EMPTY_TP = b'{"categories":[],"groups":[],"summaries":{}}'
UNTAGGED_END = b',"tetrapipe":' + EMPTY_TP + b"}"
