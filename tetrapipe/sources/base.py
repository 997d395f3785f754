"""The source contract.

`batches()` yields `Batch`es in source order until the input ends or `stop()`
is called; the pipeline awaits between batches, so a full downstream queue
holds the source (backpressure: a source must not read ahead unboundedly).
`commit(position)` persists a merged position the committer computed from
acknowledged batches only.  `describe(position)` names a record's position in
human terms for error reports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from tetrapipe.event.envelope import Batch


class SourceError(Exception):
    """The input cannot be read at all (the run exits non-zero)."""


class Source(Protocol):
    name: str

    async def start(self) -> None: ...

    def batches(self) -> AsyncIterator[Batch]: ...

    async def commit(self, position: Any) -> None: ...

    def stop(self) -> None: ...

    async def close(self) -> None: ...

    def describe(self, position: Any) -> str: ...
