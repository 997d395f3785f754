"""The processing step: decode → classify → tag → render, per envelope, synchronously.

`Processor.process(batch)` fills every envelope of a batch in place, and the
batch's `good` (decoded) and `bad` (rejected) lists, in one pass (the batch is
owned by the pipeline between source and sinks; nothing else sees it until
this returns).  The output bytes are the unwrapped event's own bytes with one
key, `tetrapipe`, appended — the event is not re-encoded, so fields tetrapipe
does not model pass through untouched.  Except with top-level filters
(`self.stage`, tetrapipe.pipeline.filtering), run right after decoding: an
event they drop is in neither `good` nor `bad` (counted in `dropped`, its
position committed with the batch), and one that redaction or field filters
changed is re-encoded and decoded again before it is classified and tagged
(`"redacted": true` in its `tetrapipe` object when redaction changed it).

A batch whose lines are all plain Tetragon objects is decoded in one go
(`tetrapipe.event.batch`: C-level loops over the batch, the same `Decoded`s
as line by line); any other batch, and any line without a known event type,
is decoded line by line.

It never raises for a record.  A line that cannot be decoded gets `error` set
and goes to the dead-letter path; so does a record on which any step raises
an unexpected exception (`internal_error`, or `too_deep` for a RecursionError;
`error.fault` is set, and it is reported as an ERROR: it may be a bug) — the
rest of the batch and of the stream flows on, and the record's position is
committed like any other.  The try blocks cost nothing while nothing raises
(CPython ≥ 3.11).

CRI partial lines (see `tetrapipe.event.decode`): a group of them that is never
completed, or that fails as a whole, becomes one bad record holding the lines
as received, joined with newlines, at the position of its first line — in
the `bad` of the batch where that became known (a later batch, or the
source's `final` batch at the end of the input).  While a group is pending at
the end of a batch whose position is a single value (a file offset), that
batch commits nothing: a restart must read the group's first line again.
Dict positions (Kafka partitions) are committed as usual — partial lines are
not joined reliably across Kafka messages anyway.
"""

from __future__ import annotations

import time
from collections import Counter
from itertools import repeat
from operator import attrgetter
from typing import Any

import msgspec

from tetrapipe.event.batch import decode_batch
from tetrapipe.event.decode import MAX_DEPTH_LIMIT, BadInput, Decoded, LineDecoder, PartialGroup, fault
from tetrapipe.event.envelope import Batch, Envelope, Tally, plain_line
from tetrapipe.event.tags import NO_TAGS
from tetrapipe.formats.tetrapipe import enriched, enriched_line, tetrapipe_object
from tetrapipe.pipeline.filtering import mark_redacted, run_keyed, run_stage
from tetrapipe.transforms.classify import Classifier
from tetrapipe.transforms.filter_stage import Stage
from tetrapipe.transforms.peer_event import resolve_decoded
from tetrapipe.transforms.peers import PeerResolver
from tetrapipe.transforms.tag import Tagger

_encode = msgspec.json.Encoder().encode
_raw_of = attrgetter("raw")


def group_record(group: PartialGroup, error: BadInput, last: Envelope | None = None) -> Envelope:
    """One bad record of a group of CRI partial lines (and `last`, the line that ended or overflowed it).

    Its bytes are the lines as received, joined with newlines; its position,
    metadata and read time those of the group's first line.
    """
    raws = group.raws if last is None else [*group.raws, last.raw]
    origin = group.origin if group.origin is not None else last
    env = Envelope(b"\n".join(raws), None) if origin is None else \
        Envelope(b"\n".join(raws), origin.position, origin.meta, origin.received_ns)
    env.error = error
    return env


class Processor:
    """Holds the compiled transforms; swap them atomically by replacing the Processor."""

    def __init__(self, tagger: Tagger, classifier: Classifier, decoder: LineDecoder | None = None,
                 peers: PeerResolver | None = None) -> None:
        self.tagger = tagger
        self.classifier = classifier
        self.decoder = decoder or LineDecoder()
        self.peers = peers  # None: no per-event lookup at all
        # the top-level filters/redaction (tetrapipe.pipeline.filtering); None: no per-event call at all
        self.stage: Stage | None = None
        self.dropped: Counter[str] = Counter()  # reason -> events the top-level stage dropped (Stats.filtered_out)
        self._redecoder = LineDecoder(max_depth=MAX_DEPTH_LIMIT)  # re-decodes events the stage changed

    def process(self, batch: Batch) -> None:
        decoder = self.decoder
        decode = decoder.decode
        classify = self.classifier.classify
        tag = self.tagger.tag
        peers = self.peers
        classifier = self.classifier
        stage = self.stage
        good = batch.good
        bad = batch.bad
        tally = batch.tally = Tally()  # the batch's counters, kept here rather than in a second loop
        shapes = tally.shapes
        zones = tally.zones
        incomplete = 0
        now = time.time_ns()
        envelopes = batch.envelopes
        # The whole batch decoded at once when every line is a plain event (tetrapipe.event.batch),
        # else None: then each line is decoded here, one by one.
        predecoded = decode_batch(decoder, list(map(_raw_of, envelopes)))
        for env, decoded in zip(envelopes, predecoded or repeat(None), strict=False):  # repeat: endless
            if not env.received_ns:
                env.received_ns = now
            if env.error is not None:  # the source already rejected it (e.g. too large)
                bad.append(env)
                continue
            if decoded is None or predecoded is None:  # this line decoded on its own
                decoded = None
                try:
                    decoded = decode(env.raw)
                except BadInput as exc:
                    bad.append(self._rejected(env, exc))
                except Exception as exc:  # noqa: BLE001 - one record must not stop the stream
                    bad.append(self._rejected(env, fault(exc)))
                else:
                    if decoded is None:  # a CRI partial line, joined with its final line later
                        decoder.hold(env.raw, env)
                if predecoded is not None and decoder.pending:  # the decoder's state matters: line by line now
                    predecoded = None
                if decoded is None:
                    continue
            redacted = False
            if stage is not None:  # dropped: counted, never dead-lettered, committed with its batch
                try:
                    reason, changed, redacted = run_stage(stage, decoded, keyed=False)
                    if changed is not None and reason is None:
                        decoded = self._redecode(changed)
                except Exception:  # noqa: BLE001 - fail closed: the dead letter would get the unfiltered bytes
                    reason = "internal_error"
                if reason is not None:
                    self.dropped[reason] += 1
                    continue
            try:
                body = decoded.vbody
                if body is not None and decoded.etype != "process_exec" and decoded.etype != "process_exit":
                    if peers is None:
                        decoded.egress = classify(body)
                    else:  # the destination and the source address in one pass over the args
                        egress, saddr, owned = classifier.classify_connection(body)
                        decoded.egress = egress
                        if egress is not None:
                            decoded.peer, decoded.source_peer = resolve_decoded(
                                peers, decoded, body, egress.daddr, egress.dport, saddr, owned)
                tags = tag(decoded)
                if stage is not None and stage.keyed and (reason := run_keyed(
                        stage, decoded, None, tags.categories)) is not None:
                    self.dropped[reason] += 1  # top-level dedup/rate limit: keyed by categories too
                    continue
                if tags.categories or decoded.egress is not None or decoded.has_tetrapipe_key:
                    out = enriched_line(tags, decoded)
                    if redacted:
                        out = mark_redacted(out)
                elif redacted:
                    out = mark_redacted(plain_line(decoded.raw))
                else:  # left plain: Envelope.out makes its line when a sink asks (the stdout format need not)
                    out = b""
            except Exception as exc:  # noqa: BLE001 - one record must not stop the stream
                bad.append(self._failed(env, decoded, exc))
                continue
            env.decoded = decoded
            env.tags = tags
            env.rendered = out
            good.append(env)
            if tags.categories:
                shapes[tags.categories] = shapes.get(tags.categories, 0) + 1
            if decoded.egress is not None:
                zones[decoded.egress.zone] = zones.get(decoded.egress.zone, 0) + 1
            if decoded.incomplete:
                incomplete += 1
        tally.incomplete = incomplete
        if batch.final or decoder.orphans or decoder.pending:
            self._settle_partials(batch)

    def _redecode(self, event: dict[str, Any]) -> Decoded:
        """An event changed by redaction/field filters, re-encoded (without any old `tetrapipe` key) and decoded."""
        if "tetrapipe" in event:
            event = {k: v for k, v in event.items() if k != "tetrapipe"}
        decoded = self._redecoder.decode(_encode(event))
        assert decoded is not None  # an encoded object is never a CRI partial line
        return decoded

    def rerender(self, env: Envelope, event: dict[str, Any], redacted: bool) -> Envelope:
        """A sink's own copy of `env` made from `event` (its per-sink redaction/field filters changed it):
        re-encoded, classified, tagged and rendered again; the peers resolved for `env` are kept."""
        decoded = self._redecode(event)
        body = decoded.vbody
        if body is not None and decoded.etype != "process_exec" and decoded.etype != "process_exit":
            decoded.egress = self.classifier.classify(body)
            old = env.decoded
            if decoded.egress is not None and old is not None:
                decoded.peer, decoded.source_peer = old.peer, old.source_peer
        tags = self.tagger.tag(decoded)
        out = enriched(decoded, tetrapipe_object(tags, decoded))
        copy = Envelope(env.raw, env.position, env.meta, env.received_ns)
        copy.decoded, copy.tags, copy.out = decoded, tags, mark_redacted(out) if redacted else out
        return copy

    def _rejected(self, env: Envelope, error: BadInput) -> Envelope:
        """The bad record for `env`: itself, or the whole group of partial lines it ended."""
        if error.group is not None:
            return group_record(error.group, error, env)
        env.error = error
        return env

    def _failed(self, env: Envelope, decoded: Decoded, exc: Exception) -> Envelope:
        """A record whose decode succeeded but a later step raised: bad as received, nothing half-filled."""
        env.decoded = None
        env.tags = NO_TAGS
        env.out = b""
        error = fault(exc)
        joined = self.decoder.last_joined
        if joined is not None and joined[0] is decoded:  # an event joined from partial lines
            error.group = joined[1]
        return self._rejected(env, error)

    def _settle_partials(self, batch: Batch) -> None:
        """Orphaned partial-line groups into `bad`; hold the commit while a group is pending."""
        decoder = self.decoder
        if batch.final:
            decoder.end_of_input()
        for group, error in decoder.take_orphans():
            batch.bad.append(group_record(group, error))
        position = batch.commit_position
        if decoder.pending and position is not None and not isinstance(position, dict):
            batch.commit_position = None
