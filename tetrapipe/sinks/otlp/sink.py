"""`otlp` sink: events as OpenTelemetry LogRecords to an OTLP collector, acknowledged, never dropped.

Guarantee: `await write(envelopes)` returns only when the collector accepted
every given event — or, for an event the collector refuses as invalid (or too
large) on its own, when it was handed to the dead-letter path.  That return is
the acknowledgement the runner waits for before committing the source.

How:
- Each event is mapped (`tetrapipe.sinks.otlp.mapping`) and encoded once
  (`tetrapipe.sinks.otlp.encode`); requests are packed from encoded records, bounded by
  `max_records` and `max_bytes` (default under the 4 MiB gRPC receive limit
  collectors ship with), records of one Tetragon node under one ResourceLogs.
  A batch may take several requests, sent `max_concurrent_requests` at a time;
  each is sent as soon as it is packed, so the collector works on one while
  the next is encoded.
- Retryable failures (UNAVAILABLE, RESOURCE_EXHAUSTED, HTTP 429/5xx, refused
  connections, timeouts) raise `SinkError(retryable=True, retry_after=<the
  server's RetryInfo / Retry-After>)`: the runner backs off and retries, the
  bounded queue fills, and intake pauses until the collector is back.
- Requests already accepted are remembered across the runner's retries of the
  same write, so an outage in the middle of a batch does not resend (duplicate)
  what the collector already has.  A timeout can still duplicate: the collector
  may have accepted a request whose answer never arrived (at-least-once).
- A request refused as invalid (INVALID_ARGUMENT / HTTP 400) is bisected: each
  half is sent on its own, down to the single records at fault, which go to
  the dead-letter path — `reject`, tetrapipe.sinks.rejections, bound by delivery to the run's dead letter
  (without one: counted and reported as an ERROR).  A
  request refused as too large (HTTP 413, gRPC OUT_OF_RANGE) is split the same
  way; a lone record still too large is dead-lettered.
- A partial success (`rejected_log_records`) cannot be retried per the OTLP
  spec (the collector does not say which records): it is counted and reported.
- Fatal answers (authentication, unknown endpoint, a server certificate that does not verify)
  raise `SinkError(retryable=False)`: configuration errors stop the run, nothing is committed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, TextIO

from tetrapipe.event.envelope import Envelope
from tetrapipe.logs import emit
from tetrapipe.sinks.base import SELECT_ALL, Selection, SinkError
from tetrapipe.sinks.otlp.encode import ENCODERS
from tetrapipe.sinks.otlp.mapping import Attribute, LogMapper
from tetrapipe.sinks.otlp.transport import Accepted, ExportError, TransportSettings, make_transport
from tetrapipe.sinks.rejections import Rejections

DEFAULT_MAX_RECORDS = 2048
DEFAULT_MAX_BYTES = 3 * 1024 * 1024  # < 4 MiB: the default gRPC max receive size of collectors
_REQUEST_OVERHEAD = 16  # per record: field tag and length; per group: resource and scope framing
_MEMO_LIMIT = 1024


class DeadLetter(Protocol):
    async def write(self, envelopes: Sequence[Envelope]) -> None: ...


class Transport(Protocol):
    async def export(self, body: bytes) -> Accepted: ...

    async def close(self) -> None: ...


class _Progress:
    """What the current batch has delivered: kept across the runner's retries of the same write."""

    __slots__ = ("envelopes", "done", "records", "resources")

    def __init__(self, envelopes: Sequence[Envelope]) -> None:
        self.envelopes = envelopes
        self.done = [False] * len(envelopes)
        self.records: list[bytes] = [b""] * len(envelopes)  # b"": not encoded yet
        self.resources: list[bytes] = [b""] * len(envelopes)


class OtlpSink:
    """Sends selected events to one OTLP endpoint (see the module docstring for the guarantee)."""

    def __init__(self, settings: TransportSettings, *, name: str | None = None, selection: Selection = SELECT_ALL,
                 mapper: LogMapper | None = None, service_name: str = "tetrapipe",
                 resource: dict[str, str] | None = None, dead_letter: DeadLetter | None = None,
                 max_records: int = DEFAULT_MAX_RECORDS, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_concurrent_requests: int = 2, scope_version: str = "", log: TextIO | None = None,
                 transport: Transport | None = None) -> None:
        if max_records < 1 or max_bytes < 1024 or max_concurrent_requests < 1:
            raise ValueError("max_records ≥ 1, max_bytes ≥ 1024 and max_concurrent_requests ≥ 1 are required")
        self.name = name or f"otlp {settings.url}"
        self.selection = selection
        self.settings = settings
        self.mapper = mapper or LogMapper()
        self.encoder = ENCODERS[settings.protocol](scope_version=scope_version)
        self.reject = Rejections(dead_letter, log=log)  # records the collector refuses (bound by delivery in a run)
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.log = log  # None: stderr (tetrapipe.logs)
        self.counters: Counter[str] = Counter()  # exported, requests, rejected_partial, dead_lettered, dropped_invalid
        self._static_resource: list[Attribute] = [("service.name", service_name), *(resource or {}).items()]
        self._resources: dict[tuple[str | None, str | None], bytes] = {}
        self._transport = transport
        self._limit = asyncio.Semaphore(max_concurrent_requests)
        self._progress: _Progress | None = None

    async def start(self) -> None:
        if self._transport is None:
            self._transport = make_transport(self.settings)

    async def close(self) -> None:
        if self._transport is not None:
            await self._transport.close()
            self._transport = None

    # -- write -------------------------------------------------------------------
    async def write(self, envelopes: Sequence[Envelope]) -> None:
        progress = self._progress
        if progress is None or progress.envelopes is not envelopes:
            progress = self._progress = _Progress(envelopes)
        sends: list[asyncio.Future[None]] = []
        try:
            for chunk in self._chunks(progress):
                # Send each request as soon as it is packed, and let requests in flight move on (their
                # bytes written, answers read) before encoding the next: the collector works meanwhile.
                sends.append(asyncio.ensure_future(self._send(progress, chunk)))
                await asyncio.sleep(0)
        except BaseException:  # cancelled (shutdown): no request may outlive the write
            for send in sends:
                send.cancel()
            await asyncio.gather(*sends, return_exceptions=True)
            raise
        results = await asyncio.gather(*sends, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise self._sink_error(failures)
        self._progress = None

    def _resource(self, key: tuple[str | None, str | None]) -> bytes:
        encoded = self._resources.get(key)
        if encoded is None:
            node, cluster = key
            attrs = list(self._static_resource)
            if node:
                attrs += [("host.name", node), ("k8s.node.name", node)]
            if cluster:
                attrs.append(("k8s.cluster.name", cluster))
            if len(self._resources) >= _MEMO_LIMIT:
                self._resources.clear()
            encoded = self._resources[key] = self.encoder.resource(attrs)
        return encoded

    def _chunks(self, progress: _Progress) -> Iterator[list[int]]:
        """The pending records' indices, packed into requests within `max_records` and (approximately) `max_bytes`.

        Each record is mapped and encoded once, when first packed (kept across retries); a
        request is yielded as soon as it is full, so encoding the next one overlaps its sending.
        """
        records, resources, envelopes = progress.records, progress.resources, progress.envelopes
        encode, map_record, resource = self.encoder.record, self.mapper.record, self._resource
        resource_key = self.mapper.resource_key
        current: list[int] = []
        size = 0
        seen: set[int] = set()  # resources already framed in the current request (by identity)
        for i, done in enumerate(progress.done):
            if done:
                continue
            rec = records[i]
            if not rec:  # not encoded yet (an encoded record is never empty: it has timestamps)
                env = envelopes[i]
                rec = records[i] = encode(map_record(env))
                resources[i] = resource(resource_key(env))
            res = resources[i]
            cost = len(rec) + _REQUEST_OVERHEAD + (0 if id(res) in seen else len(res) + 4 * _REQUEST_OVERHEAD)
            if current and (len(current) >= self.max_records or size + cost > self.max_bytes):
                yield current
                current, size, seen = [], 0, set()
                cost = len(rec) + len(res) + 5 * _REQUEST_OVERHEAD
            current.append(i)
            seen.add(id(res))
            size += cost
        if current:
            yield current

    def _request(self, progress: _Progress, chunk: list[int]) -> bytes:
        groups: dict[int, tuple[bytes, list[bytes]]] = {}
        for i in chunk:
            res = progress.resources[i]
            group = groups.get(id(res))
            if group is None:
                group = groups[id(res)] = (res, [])
            group[1].append(progress.records[i])
        return self.encoder.request(list(groups.values()))

    async def _send(self, progress: _Progress, chunk: list[int]) -> None:
        """Deliver one request's records (marking them done), splitting it when the collector refuses it."""
        assert self._transport is not None, "start() first"
        body = self._request(progress, chunk)
        try:
            async with self._limit:
                accepted = await self._transport.export(body)
        except ExportError as exc:
            if exc.kind not in ("bad_data", "too_large"):
                raise
            if len(chunk) == 1:
                await self._reject(progress.envelopes[chunk[0]], exc)
                progress.done[chunk[0]] = True
                return
            half = len(chunk) // 2
            self.counters["splits"] += 1
            for part in (chunk[:half], chunk[half:]):  # in turn: the good half goes through whole
                await self._send(progress, part)
            return
        for i in chunk:
            progress.done[i] = True
        self.counters["requests"] += 1
        self.counters["exported"] += len(chunk) - accepted.rejected
        if accepted.rejected:
            self.counters["rejected_partial"] += accepted.rejected
            self._say("error", f"the collector rejected {accepted.rejected} of {len(chunk)} records of a request "
                               f"(partial success, not retryable per OTLP): {accepted.message}",
                      rejected=accepted.rejected)

    @property
    def dead_letter(self) -> DeadLetter | None:
        return self.reject.dead_letter

    async def _reject(self, env: Envelope, exc: ExportError) -> None:
        """One record the collector refuses on its own: rejected (dead-lettered by tetrapipe.sinks.rejections)."""
        try:
            dead_lettered = await self.reject(self.name, [(env, "refused_by_collector", str(exc))])
        except Exception as err:  # the dead-letter path failing must not lose the record: retry later
            raise ExportError("retry", f"dead-letter write failed: {err!r}") from None
        self.counters["dead_lettered" if dead_lettered else "dropped_invalid"] += 1

    def _sink_error(self, failures: list[BaseException]) -> BaseException:
        errors = [f for f in failures if isinstance(f, ExportError)]
        unexpected = [f for f in failures if not isinstance(f, ExportError | SinkError)]
        if unexpected:
            return unexpected[0]
        sink_errors = [f for f in failures if isinstance(f, SinkError)]
        if sink_errors:
            return sink_errors[0]
        fatal = [e for e in errors if e.kind == "fatal"]
        if fatal:
            return SinkError(str(fatal[0]), retryable=False)
        hints = [e.retry_after for e in errors if e.retry_after is not None]
        self.counters["retryable_failures"] += 1
        return SinkError(str(errors[0]), retryable=True, retry_after=max(hints) if hints else None)

    def _say(self, level: str, message: str, **context: Any) -> None:
        emit(self.log, level, f"{self.name}: {message}", sink=self.name, **context)

