"""Decode a whole batch of lines with C-level loops, when every line is a plain Tetragon event.

`decode_batch(decoder, lines)` returns, per line, the very `Decoded` that
`decoder.decode(line)` would return, or None where the caller must call
`decoder.decode(line)` itself (an object without a known event type: an
envelope, a newer Tetragon type, no event at all); or None for the whole
batch, which the caller then decodes line by line.  It only takes the common
case: every line a Tetragon export object (begins with `{`, ends with `}`:
nothing to strip, no CRI line) within the nesting bound, fitting the lean
model, valid UTF-8, and no CRI partial lines pending.  Anything else anywhere
in the batch (a blank line, a CRI line, bad JSON, a line past the depth
bound, …) returns None before any state changes, so `LineDecoder.decode`
stays the one definition of every outcome (dead-letter reasons, `too_deep`,
envelopes); this is a faster road to the same result.

The caller's part: a line it decodes itself may leave CRI partial lines
pending (an envelope holding a `P` line); from then on the decoder's state
matters to every line, so the rest of the batch must be decoded line by line
too (`tetrapipe.pipeline.processor` does).

Why: per line, `decode` costs two Python calls and a few checks on top of
msgspec (about 0.4 µs); here the depth bound, the decode and the UTF-8 check
run as `map` over the batch, and a Python loop only picks each event's type.
"""

from __future__ import annotations

from itertools import filterfalse, repeat
from operator import sub

from tetrapipe.event.decode import _RARER_TYPES, Decoded, LineDecoder, decoded_of

_replace = bytes.replace


def decode_batch(decoder: LineDecoder, lines: list[bytes]) -> list[Decoded | None] | None:
    """Each line's `Decoded` (None: decode that line one by one); None: decode the batch line by line."""
    # A subclass that decodes differently gets its own `decode` for every line.
    if decoder.pending or not lines or type(decoder).decode is not LineDecoder.decode:
        return None
    try:
        # Begins with `{` and ends with `}`: `strip()` would change nothing, and it is no CRI line.
        if not all(map(bytes.startswith, lines, repeat(b"{"))) or \
                not all(map(bytes.endswith, lines, repeat(b"}"))):
            return None
        # The per-line bound (see LineDecoder._check_depth): no line has more brackets than the limit.
        unopened = map(_replace, map(_replace, lines, repeat(b"{"), repeat(b"")), repeat(b"["), repeat(b""))
        if max(map(sub, map(len, lines), map(len, unopened))) > decoder.max_depth:
            return None
        roots = list(map(decoder.view_decoder.decode, lines))  # the view in use (LineDecoder.use_view)
        for text in filterfalse(bytes.isascii, lines):  # the lean model does not validate what it skips
            text.decode("utf-8")
    except Exception:  # noqa: BLE001 - whatever it is (not bytes, bad JSON, …), line by line says it exactly
        return None
    decoded: list[Decoded | None] = []
    append = decoded.append
    for text, root in zip(lines, roots, strict=True):
        # As LineDecoder._decode_object: the commonest types by attribute, the constructor inlined.
        body = root.process_exec
        if body is not None:
            append(Decoded(text, "process_exec", root, body, body.process is None, root.tetrapipe is not None))
            continue
        body = root.process_exit
        if body is not None:
            append(Decoded(text, "process_exit", root, body, body.process is None, root.tetrapipe is not None))
            continue
        body = root.process_kprobe
        if body is not None:
            append(Decoded(text, "process_kprobe", root, body, body.process is None, root.tetrapipe is not None))
            continue
        for etype in _RARER_TYPES:
            body = getattr(root, etype)
            if body is not None:
                append(decoded_of(text, etype, root, body))
                break
        else:  # no known type: an envelope, a newer type or no event at all, for LineDecoder.decode
            append(None)
    return decoded
