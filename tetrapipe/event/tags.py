"""The tags of one event: its categories (sorted ids), their groups and summary lines.

Made by `tetrapipe.transforms.tag`, carried on the envelope, read by formats and sinks (selection,
routing, severity); here at the bottom so that carrying them needs nothing of the rule compiler.
"""

from __future__ import annotations

import msgspec

_encode = msgspec.json.Encoder().encode


class Tags(msgspec.Struct, frozen=True, gc=False, eq=False):
    """The categories of one event (sorted ids), their groups and summaries.

    `head` is the JSON of the output contract's `tetrapipe` object up to the
    summaries value (`{"categories":[…],"groups":[…],"summaries":`), shared by
    every event with the same categories.

    A msgspec Struct for its C constructor (one per tagged event: a Python
    `__init__` cost about 0.15 µs); frozen (it is shared: `NO_TAGS`, the
    envelope's default, and one per shape in the worker results); `gc=False`
    (it holds strings, tuples of strings and a dict of strings: nothing that
    can refer back to it) and `eq=False` (identity, as for a plain object:
    `NO_TAGS` is compared with `is`).  Constructed as before:
    `Tags(categories, groups, summaries, head)`.
    """

    categories: tuple[str, ...]
    groups: tuple[str, ...]
    summaries: dict[str, str]
    head: bytes


def tags_head(categories: tuple[str, ...], groups: tuple[str, ...]) -> bytes:
    return b"".join((b'{"categories":', _encode(categories), b',"groups":', _encode(groups), b',"summaries":'))


NO_TAGS = Tags((), (), {}, tags_head((), ()))


# The output contract's `tetrapipe` value of an event without categories or egress, and how its line
# ends: here at the bottom because the envelope renders such lines on demand (tetrapipe.event.envelope).
EMPTY_TP = b'{"categories":[],"groups":[],"summaries":{}}'
UNTAGGED_END = b',"tetrapipe":' + EMPTY_TP + b"}"
