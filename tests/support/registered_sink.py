"""A sink type from outside tetrapipe — all that adding a sink takes: this module and one registry line.

`type: recorder` appends each acknowledged event's output line to `path`, prefixed with `label`.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from tetrapipe.event.envelope import Envelope
from tetrapipe.sinks.base import SELECT_ALL, Selection, SinkContext


class RecorderSink:
    def __init__(self, path: str, label: str, selection: Selection) -> None:
        self.name = f"recorder {label}"
        self.path = path
        self.label = label.encode()
        self.selection = selection

    async def start(self) -> None:
        return None

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        with open(self.path, "ab") as out:
            out.write(b"".join(self.label + b" " + env.out + b"\n" for env in envelopes))

    async def close(self) -> None:
        return None


class RecorderSinkConfig(msgspec.Struct, tag="recorder", tag_field="type", forbid_unknown_fields=True):
    path: str
    label: str = "recorded"
    select: Selection = SELECT_ALL

    def build(self, context: SinkContext) -> RecorderSink:  # noqa: ARG002
        return RecorderSink(self.path, self.label, self.select)


def main() -> int:
    """`tetrapipe` with `recorder` registered (as a plugin would register it at import)."""
    import sys

    from tetrapipe.cli.main import main as tetrapipe_main
    from tetrapipe.sinks import SINKS

    SINKS["recorder"] = "tests.support.registered_sink:RecorderSinkConfig"
    return tetrapipe_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
