"""The processing step: decode → classify → tag → render, per envelope, synchronously.

`Processor.process(batch)` fills every envelope of a batch in place, and the
batch's `good` (decoded) and `bad` (rejected) lists, in one pass (the batch is
owned by the pipeline between source and sinks; nothing else sees it until
this returns).  It never raises for bad input: a line that cannot be decoded
gets `error` set and goes to the dead-letter path.  The output bytes are the
unwrapped event's own bytes with one key, `tetrapipe`, appended — the event is
not re-encoded, so fields tetrapipe does not model pass through untouched.
"""

from __future__ import annotations

import time

import msgspec

from pipeline.codec import BadInput, Decoded, LineDecoder
from pipeline.envelope import Batch
from transforms.classify import Classifier
from transforms.tag import Tagger, Tags

_encode = msgspec.json.Encoder().encode
_generic = msgspec.json.Decoder()
_EMPTY_TP = b'{"categories":[],"groups":[],"summaries":{}}'


def tetrapipe_object(tags: Tags, decoded: Decoded) -> bytes:
    """The `tetrapipe` value of the output contract, as JSON bytes."""
    egress = decoded.egress
    if not tags.categories and egress is None:
        return _EMPTY_TP
    summaries = _encode(tags.summaries) if tags.summaries else b"{}"
    if egress is None:
        return b"".join((tags.head, summaries, b"}"))
    return b"".join((tags.head, summaries, b',"egress":', _encode(egress), b"}"))


def enriched(decoded: Decoded, tp: bytes) -> bytes:
    """The event's own bytes with `"tetrapipe": tp` added as the last key."""
    raw = decoded.raw
    if decoded.has_tetrapipe_key:
        # Re-processing tetrapipe output: replace the old key instead of duplicating it.
        root = dict(decoded.generic_root())
        root.pop("tetrapipe", None)
        raw = _encode(root)
    return b"".join((raw[:-1], b',"tetrapipe":', tp, b"}"))


class Processor:
    """Holds the compiled transforms; swap them atomically by replacing the Processor."""

    def __init__(self, tagger: Tagger, classifier: Classifier, decoder: LineDecoder | None = None) -> None:
        self.tagger = tagger
        self.classifier = classifier
        self.decoder = decoder or LineDecoder()

    def process(self, batch: Batch) -> None:
        decode = self.decoder.decode
        classify = self.classifier.classify
        tag = self.tagger.tag
        good = batch.good
        bad = batch.bad
        now = time.time_ns()
        for env in batch.envelopes:
            if not env.received_ns:
                env.received_ns = now
            if env.error is not None:  # the source already rejected it (e.g. too large)
                bad.append(env)
                continue
            try:
                decoded = decode(env.raw)
            except BadInput as exc:
                env.error = exc
                bad.append(env)
                continue
            if decoded is None:  # a CRI partial line, joined with its final line later
                continue
            body = decoded.vbody
            if body is not None and decoded.etype != "process_exec" and decoded.etype != "process_exit":
                decoded.egress = classify(body)
            tags = tag(decoded)
            env.decoded = decoded
            env.tags = tags
            env.out = enriched(decoded, tetrapipe_object(tags, decoded))
            good.append(env)
