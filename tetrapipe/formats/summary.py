"""`summary`: only the summary lines of tagged events, one per (event, category), as `jq -r` prints them.

Categories in sorted order; `only` (the stdout sink's `--only`) keeps the lines of those
categories.  As a record (Kafka, OTLP) an event's lines are joined with newlines; an event
without a summary has no record.
"""

from __future__ import annotations

from collections.abc import Sequence

from tetrapipe.event.envelope import Envelope


class SummaryFormat:
    name = "summary"

    def __init__(self, only: frozenset[str] = frozenset()) -> None:
        self.only = only

    def _lines(self, env: Envelope) -> list[str]:
        only = self.only
        return [line for cid, line in env.tags.summaries.items() if not only or cid in only]

    def record(self, env: Envelope) -> bytes | None:
        lines = self._lines(env)
        return "\n".join(lines).encode("utf-8", "surrogatepass") if lines else None

    def lines(self, envelopes: Sequence[Envelope]) -> bytes:
        lines = [line for env in envelopes for line in self._lines(env)]
        if not lines:
            return b""
        return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")
