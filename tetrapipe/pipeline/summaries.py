"""Rate-limit and dedup summary records: drained from the filter stages and delivered like events.

Contract: `Summaries(processor, delivery, period=1.0)`.
- `start()` (on the running loop) starts a task that every `period` seconds drains every stage
  with state — the top level's (`processor.stage`) and each sink's (`delivery.stages`) — and
  delivers the records that are due: a rate-limit interval that has ended, a dedup window with
  repeats that has closed, the record of an evicted key (`RateLimiter.drain`, `Dedup.drain`).
- `await flush()` closes every open interval and window and delivers their records: the runner
  calls it when the input has ended or a stop was requested, before its last commit.
- `await stop()` ends the task (a delivery in progress is cancelled with it: a summary carries no
  input position, so nothing is left uncommitted by that).

Where they go: a sink's records to that sink alone; the top level's to every sink.  They are the
stages' own output, so no Selection and no stage applies to them; each is written through
`Delivery.deliver_to` — retried like events, counted as sent, never at the same time as a batch.

What they are (one event per record, rendered like any other — tagged, every format):
- rate limit: Tetragon's `rate_limit_info` event, `number_of_dropped_process_events` the count,
  with the record under `tetrapipe_rate_limit`:
  `{"key": {"categories": [...], "node_name": "...", "process.binary": "..."}, "dropped": 17,
  "interval": 60.0, "first_drop": "<RFC 3339>", "last_drop": "<RFC 3339>", "scope": "otlp x"}`;
- dedup: the count as a later record (not added to the first event, which was sent when it came):
  `{"tetrapipe_dedup": {"key": {...}, "repeats": 41, "window": 10.0, "first_seen": "<RFC 3339>",
  "last_seen": "<RFC 3339>", "scope": "*"}}`.
Both carry `node_name` (from the key when it has one) and `time` (when the record was made).
`scope` is the sink's name, or `*` for the top level.  A reload replaces the stages: at the next
look (within `period`), a replaced stage reports everything it still holds, as at shutdown.

Evictions: at each look, the keys each rate limit and dedup evicted (its `max_keys` reached) since
the last look are added to `Stats.evicted_keys[scope][step]` (step `rate_limit` or `dedup`): the run
summary's `evicted_keys` and the metric `tetrapipe_filter_keys_evicted_total{sink,step}` (at most
`period` behind; complete in the summary, which is made after the final flush).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from tetrapipe.event.envelope import Envelope
from tetrapipe.logs import emit
from tetrapipe.pipeline.delivery import Delivery, cancel_and_wait
from tetrapipe.pipeline.filtering import ALL_SINKS
from tetrapipe.pipeline.processor import Processor
from tetrapipe.transforms.filter_stage import Stage
from tetrapipe.transforms.ratelimit import as_rate_limit_info

_TIMES = {"first_drop", "last_drop", "first_seen", "last_seen"}


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def summary_events(stage: Stage, scope: str, *, final: bool = False,
                   wall: Callable[[], float] = time.time) -> list[dict[str, Any]]:
    """The summary events of one stage that are due (every pending one when `final`)."""
    events: list[dict[str, Any]] = []
    now = wall()
    for step, wrap in ((stage.rate, _rate_limit_info), (stage.dedup, _dedup_record)):
        if step is None:
            continue
        records = step.flush() if final else step.drain()
        offset = now - step.clock()  # the steps' times are their clock's (monotonic): to wall-clock time
        for record in records:
            record = {k: rfc3339(v + offset) if k in _TIMES else v for k, v in record.items()}
            record["scope"] = scope
            events.append(wrap(record, now))
    return events


def _node(record: dict[str, Any]) -> str:
    node = record["key"].get("node_name")
    return node if isinstance(node, str) else ""


def _rate_limit_info(record: dict[str, Any], now: float) -> dict[str, Any]:
    return as_rate_limit_info(record, _node(record), rfc3339(now))


def _dedup_record(record: dict[str, Any], now: float) -> dict[str, Any]:
    return {"tetrapipe_dedup": record, "node_name": _node(record), "time": rfc3339(now)}


class Summaries:
    def __init__(self, processor: Processor, delivery: Delivery, *, period: float = 1.0,
                 wall: Callable[[], float] = time.time) -> None:
        self.processor = processor
        self.delivery = delivery
        self.period = period
        self.wall = wall
        self.delivered = 0  # summary records written (to each of their sinks)
        self._task: asyncio.Task[None] | None = None
        self._seen: list[tuple[str, Stage]] = []  # the stages of the last look: a reload may replace them

    def _stages(self) -> list[tuple[str, Stage, bool]]:
        """(scope, stage, replaced) of every stage with state: the current ones, and those a reload replaced
        since the last look (they report all they still hold, once: they are not looked at again)."""
        top = self.processor.stage
        current = [(ALL_SINKS, top)] if top is not None and top.keyed else []
        current += [(name, stage) for name, stage in self.delivery.stages.items() if stage.keyed]
        kept = {id(stage) for _, stage in current}
        replaced = [(scope, stage, True) for scope, stage in self._seen if id(stage) not in kept]
        self._seen = current
        return [(scope, stage, False) for scope, stage in current] + replaced

    def due(self, *, final: bool = False) -> dict[str, list[Envelope]]:
        """Sink name → the summary records to write to it now, rendered."""
        out: dict[str, list[Envelope]] = {}
        every = [sink.name for sink in self.delivery.sinks]
        for scope, stage, replaced in self._stages():
            events = summary_events(stage, scope, final=final or replaced, wall=self.wall)
            self._count_evictions(scope, stage)
            rendered = [env for event in events if (env := self._render(event)) is not None]
            for name in every if scope == ALL_SINKS else [scope]:
                out.setdefault(name, []).extend(rendered)
        return out

    def _count_evictions(self, scope: str, stage: Stage) -> None:
        """The keys the stage's rate limit / dedup evicted since the last look, into the run's stats."""
        evicted = self.delivery.stats.evicted_keys
        for name, step in (("rate_limit", stage.rate), ("dedup", stage.dedup)):
            if step is not None and (n := step.take_evictions()):
                evicted[scope][name] += n

    def _render(self, event: dict[str, Any]) -> Envelope | None:
        raw = msgspec.json.encode(event)  # what a dead letter would show (e.g. one too large for Kafka)
        try:
            return self.processor.rerender(Envelope(raw, None, received_ns=time.time_ns()), event, False)
        except Exception as exc:  # noqa: BLE001 - a summary that cannot be rendered must not stop the run
            emit(None, "error", f"a rate-limit/dedup summary record could not be rendered: {exc!r}",
                 record=raw.decode("utf-8", "replace"))
            return None

    async def deliver(self, *, final: bool = False) -> None:
        records = self.due(final=final)
        if records:
            await self.delivery.deliver_to(records)
            self.delivered += sum(map(len, records.values()))

    async def flush(self) -> None:
        """Close every interval and window; deliver their records (end of input, shutdown)."""
        await self.deliver(final=True)

    def start(self) -> None:
        """Start the periodic task (always: a reload may bring stages; a wake-up a second costs nothing)."""
        if self._task is None:
            self._task = asyncio.create_task(self._every_period(), name="tetrapipe-summaries")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:  # bounded: a sink ignoring cancellation is left behind, as the writer would be
            await cancel_and_wait([task])

    async def _every_period(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.deliver()
            except Exception as exc:  # noqa: BLE001 - a summary must not end the run; the writer sees the sink too
                emit(None, "error", f"delivering rate-limit/dedup summaries failed: {exc!r}")
