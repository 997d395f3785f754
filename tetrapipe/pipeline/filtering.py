"""Where the Tetragon-style filters run: the top level in the processor, each sink's in delivery.

A `Stage` (tetrapipe.transforms.filter_stage) applies, per event, in this order:
redaction → allow/deny filters → dedup → rate limit → field filters.  (An allow or deny list none of
whose lines reads what redaction changes — arguments, CEL — is decided before redacting, allow
before deny: the same verdicts, and a dropped event is never redacted.)  (Tetragon redacts when the
event is made, before its export filters see it; field filters come last, so dedup and rate-limit
keys read the whole event.)  At the top level, dedup and rate limit run last, after tagging (their
keys may name `categories`), on the event as redaction and field filters left it.  Their summary
records are delivered by tetrapipe.pipeline.summaries.  The outcome is a drop reason, or the event
to ship: unchanged (its bytes are kept), or changed by redaction/field filters (then re-encoded —
see `Processor.rerender`).

Drop reasons (counted in `Stats.filtered_out[scope][reason]`, scope ALL_SINKS for the top level,
else the sink's name; metric `tetrapipe_events_filtered_out_total{sink,reason}`):
`filtered` (allow/deny), `deduplicated`, `rate_limited`, `field_filter` (a field filter cannot
apply to the event — its event object is not a JSON object; the engine fails closed, and so does
this: the event is dropped and counted, never shipped unfiltered and never dead-lettered, since the
dead letter would receive the unfiltered bytes), `internal_error` (re-encoding a changed event
raised; dropped and counted for the same reason).  A dropped event is never dead-lettered; it stays
in its batch, so its position is committed with the batch like any other.

Cost: nothing runs for a scope without a stage (the processor and delivery test for None once per
batch / per sink and group).  Allow/deny lines whose fields the lean view carries read it
(`ExportFilter.decide`); redaction first asks `Redactor.unchanged_decoded` (the strings it reads: from
the view when the config redacts, tetrapipe.transforms.redact_view); dedup and rate-limit keys whose
paths the lean view carries read it (`KeyFields.values_of`); an EXCLUDE field filter first asks
`FieldFilters.unchanged` (a narrow decode of its paths); only a step that needs plain dicts
(another filter line, a redaction that may change the event, other keys, field filters) decodes the
event generically, once;
a per-sink redaction or field filter re-encodes, re-decodes,
re-tags and re-renders each event it changes, for that sink alone — the other sinks keep the shared
rendering.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from tetrapipe.event.decode import Decoded
from tetrapipe.event.envelope import Envelope
from tetrapipe.transforms.filter_errors import FieldFilterError
from tetrapipe.transforms.filter_stage import Stage

ALL_SINKS = "*"  # the scope of the top-level filters in Stats.filtered_out

Rerender = Callable[[Envelope, dict[str, Any], bool], Envelope]


def run_stage(stage: Stage, decoded: Decoded, categories: Sequence[str] = (), *, keyed: bool = True
              ) -> tuple[str | None, dict[str, Any] | None, bool]:
    """(drop reason or None, the changed event or None when unchanged, whether redaction changed it).

    `keyed=False` leaves out dedup and rate limit: the top level runs them after tagging (`run_keyed`).
    """
    etype = decoded.etype
    root: dict[str, Any] | None = None  # the generic decode, made only when a step needs it
    event: dict[str, Any] | None = None
    redacted = False
    export, redact = stage.export, stage.redact
    # A list whose lines do not read what redaction changes is decided before redacting (a dropped event
    # is then never redacted); the allow list always before the deny list, so pid_set sees the same calls.
    allow_done = deny_done = export is None
    if export is not None and redact is not None and not export.allow_reads_redacted:
        if not export.allows(decoded):
            return "filtered", None, False
        allow_done = True
        if not export.deny_reads_redacted:
            if export.denies(decoded):
                return "filtered", None, False
            deny_done = True
    if redact is not None and not redact.unchanged_decoded(decoded):
        root = event = decoded.generic_root()
        event, redacted = redact(event, etype)
    if export is not None and not (allow_done and deny_done):
        # a redacted event is judged as redacted (as Tetragon does); any other from the lean view
        judged = event if redacted else None
        if not allow_done and not export.allows(decoded, judged) or export.denies(decoded, judged):
            return "filtered", None, False
    if keyed and stage.keyed and (reason := run_keyed(stage, decoded, event, categories)) is not None:
        return reason, None, False
    if stage.fields is not None and (event is not None or not stage.fields.unchanged(decoded)):
        if event is None:
            root = event = decoded.generic_root()
        try:
            event = stage.fields(event, etype)
        except FieldFilterError:
            return "field_filter", None, False
    return None, (None if event is root else event), redacted


def run_keyed(stage: Stage, decoded: Decoded, event: dict[str, Any] | None, categories: Sequence[str]
              ) -> str | None:
    """Dedup, then the rate limit: the drop reason, or None to pass.  Keys are read from `event` (plain
    dicts: redacted) when given, else from the lean view when their paths allow (else the generic decode)."""
    if stage.dedup is not None and not stage.dedup.check(decoded, event, categories):
        return "deduplicated"
    if stage.rate is not None and not stage.rate.check(decoded, event, categories):
        return "rate_limited"
    return None


def apply_sink_stage(stage: Stage, envelopes: list[Envelope], dropped: Counter[str],
                     rerender: Rerender | None) -> list[Envelope]:
    """The envelopes a sink gets after its stage: kept as they are, or its own re-rendered copies."""
    out: list[Envelope] = []
    for env in envelopes:
        decoded = env.decoded
        if decoded is None:  # not possible for a good envelope; nothing to filter on
            out.append(env)
            continue
        reason, changed, redacted = run_stage(stage, decoded, env.tags.categories)
        if reason is not None:
            dropped[reason] += 1
            continue
        if changed is None:
            out.append(env)
            continue
        if rerender is None:  # fail closed: a changed event must not ship unchanged
            dropped["internal_error"] += 1
            continue
        try:
            out.append(rerender(env, changed, redacted))
        except Exception:  # noqa: BLE001 - one record must not stop the stream; counted
            dropped["internal_error"] += 1
    return out


def mark_redacted(out: bytes) -> bytes:
    """An output-contract line with `"redacted": true` added inside its `tetrapipe` object (its last key)."""
    return out[:-2] + b',"redacted":true}}'
