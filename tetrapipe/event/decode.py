"""Turn one input line into a decoded Tetragon event, unwrapping log-shipper envelopes.

Accepted forms (the guarantee: each yields the Tetragon JSON object's own bytes,
which the output keeps unchanged):
- a raw Tetragon export line: `{"process_exec": {...}, "time": ...}`;
- a CRI container-log line: `<RFC3339 time> stdout F {json}` (partial `P`
  lines are joined until their `F` line, bounded by `max_event_bytes`);
- a Fluent Bit record `{"log": ...}` or a Vector record `{"message": ...}`
  whose field holds the Tetragon JSON as a string or as an object.

Anything else raises `BadInput` with a short machine-readable reason and a
human-readable detail; the caller dead-letters the original line.

Nesting depth.  A JSON document nested deeper than `max_depth` objects/arrays
(default `DEFAULT_MAX_DEPTH`) is `too_deep`, checked on the bytes *before* any
recursive decoder sees them: the record as received, and the event text a
`log`/`message` string or a CRI payload holds.  Tetragon's deepest events nest
7-8 levels; thousands of levels would exhaust the interpreter's recursion
limit in msgspec or in a sink that walks the event.  The check on every line
is a bracket count, which bounds the depth, made with `bytes.replace` (memchr
from one bracket to the next, then a copy; `bytes.count` compares every byte
in a loop and measured two to three times slower on Tetragon events): only a
line with more than `max_depth` brackets gets the exact, linear scan that
ignores brackets inside strings.

CRI partial lines.  `P` lines are kept per stream (`stdout`, `stderr`): the
runtime (containerd's CRI logger) writes the two streams interleaved line by
line, so a line of the other stream between the parts of a long line is
normal and does not interrupt it.  A group of `P` lines ends with its stream's
`F` line; it is orphaned — `BadInput("incomplete_partial")`, kept as the lines
received, joined with newlines — when a record that is not a CRI line comes
(the input is not one container's log), at the end of the input
(`end_of_input()`), or by exceeding `max_event_bytes` (`too_large`, the group
and the line that overflowed it).  A group whose joined payload does not
decode is rejected whole as well.  The caller learns of these records through
`BadInput.group`, `orphans` and `hold()` (see `tetrapipe.pipeline.processor`), so no line
is lost between the buffer and the dead letter.
"""

from __future__ import annotations

import re
from itertools import accumulate
from pathlib import Path
from typing import Any

import msgspec

from tetrapipe.event.model import COMMON_KEYS, KNOWN_TYPES, LeanEvent, TetragonEvent

_typed = msgspec.json.Decoder(TetragonEvent)
_lean = msgspec.json.Decoder(LeanEvent)
_generic = msgspec.json.Decoder()
_CRI = re.compile(rb"^(\d{4}-\d\d-\d\d[T ][^ ]+) (stdout|stderr) ([FP])(?: (.*))?$", re.DOTALL)
_MAX_UNWRAP_DEPTH = 3
# Event types whose body Tetragon always gives a `process`; its absence is
# reported (the event still flows: it is valid JSON and may still be tagged).
_EXPECTED_BODY_FIELD = "process"
_TYPES_WITH_PROCESS = frozenset(KNOWN_TYPES) - {"process_throttle", "rate_limit_info"}
_RARER_TYPES = KNOWN_TYPES[3:]  # after process_exec, process_exit, process_kprobe (probed by name)
assert KNOWN_TYPES[:3] == ("process_exec", "process_exit", "process_kprobe")

# Tetragon's deepest event in tests/data/docs-examples.jsonl nests 7 levels (8 inside a Fluent Bit
# object); 64 leaves ample room for new fields, and stays far below what recursive code can take:
# CPython stops at 1000 frames, and the OTLP encoder spends two frames per level of a map body.
DEFAULT_MAX_DEPTH = 64
# The most a user may configure: the recursive consumers of a decoded event (msgspec, the OTLP
# map encoder at ~2 frames a level) must stay far below CPython's 1000-frame recursion limit.
MAX_DEPTH_LIMIT = 256

# A JSON string, or an unterminated one up to the end: every `"` starts a match, so the scan never
# backtracks over the rest of the line (linear, also for `"\"\"\"…` without an end).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the repository (or site-packages)


class BadInput(Exception):
    """A line that cannot become an event: `reason` is a stable counter label.

    `group`: set when the line ended or overflowed a group of CRI partial
    lines; the bad record is then the group's lines plus this one.  `fault`:
    the record raised an unexpected exception (possibly a bug), not a
    recognised kind of bad input.
    """

    group: PartialGroup | None = None
    fault = False

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def fault(exc: BaseException) -> BadInput:
    """The bad-input error for an unexpected exception raised while handling one record.

    `internal_error` names the exception type and where it was raised, never
    its message (it may quote the record).  A RecursionError can only come from
    nesting the depth check let through (`max_depth` set near the interpreter's
    limit): `too_deep`.
    """
    where = ""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None:  # the innermost Python frame: enough to find the bug, and no source file read
        code = tb.tb_frame.f_code
        path = Path(code.co_filename)
        name = str(path.relative_to(_PACKAGE_ROOT)) if path.is_relative_to(_PACKAGE_ROOT) else path.name
        where = f" in {name}:{tb.tb_lineno} ({code.co_name})"
    if isinstance(exc, RecursionError):
        error = BadInput("too_deep", f"RecursionError{where}: nesting deeper than the interpreter allows")
    else:
        error = BadInput("internal_error", f"{type(exc).__name__}{where}")
    error.fault = True
    return error


def nesting_depth(text: bytes) -> int:
    """How many objects/arrays deep a JSON text nests at most (brackets inside strings ignored).

    Linear in the size of `text`, with no Python code per byte.  For text that
    is not valid JSON it is an upper bound of how deep a parser can get before
    failing.
    """
    brackets = _JSON_STRING.sub(b"", text).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


class PartialGroup:
    """The CRI `P` lines of one stream waiting for their `F` line.

    `payload`: their joined payloads; `raws`: the records as received (the
    CRI lines, or the shipper records that carried them) — what the dead
    letter keeps if the group is never completed; `origin`: the caller's token
    for the first of them (the processor's envelope, for its position).
    """

    __slots__ = ("stream", "payload", "raws", "origin")

    def __init__(self, stream: bytes) -> None:
        self.stream = stream
        self.payload = bytearray()
        self.raws: list[bytes] = []
        self.origin: Any = None


class _ShipperEnvelope(msgspec.Struct):
    log: msgspec.Raw = msgspec.Raw(b"")
    message: msgspec.Raw = msgspec.Raw(b"")


_envelope = msgspec.json.Decoder(_ShipperEnvelope)


class Decoded(msgspec.Struct, gc=False, eq=False):
    """One decoded event: its own bytes, its type, and three views of it, each made once.

    - `view`/`vbody`: the lean model (`LeanEvent`), decoded for every event;
      the shipped rules, summaries and `classify` read only this;
    - `root`/`body`: the full typed model (`TetragonEvent`), decoded on first
      access (sink mappings, rules or templates over fields the lean model lacks);
    - `generic_root()`: plain dicts of everything, decoded on first access.
    An event that does not fit a typed model gets plain dicts in its place
    (the same paths work on both).  Made with `decoded_of` (or, on the hot
    path, with `incomplete`/`has_tetrapipe_key` given).

    A msgspec Struct for its C constructor; `gc=False` (never tracked by the
    cycle collector: nothing it holds can refer back to it) and `eq=False`
    (identity, as for a plain object).
    """

    raw: bytes
    etype: str
    view: Any
    vbody: Any
    # the body of a type Tetragon always gives a `process` lacks it (the event still flows)
    incomplete: bool = False
    has_tetrapipe_key: bool = False
    _root: Any = None
    _body: Any = None
    _generic: dict[str, Any] | None = None
    egress: Any = None
    peer: dict[str, Any] | None = None  # tetrapipe.peer / tetrapipe.source (tetrapipe.transforms.peers)
    source_peer: dict[str, Any] | None = None

    @property
    def root(self) -> Any:
        """The full typed event (or plain dicts when it does not fit the model)."""
        if self._root is None:
            try:
                self._root = _typed.decode(self.raw)
                self._body = getattr(self._root, self.etype, None)
            except msgspec.ValidationError:
                self._root = self.generic_root()
                self._body = self._root.get(self.etype)
        return self._root

    @property
    def body(self) -> Any:
        """The object under the event-type key, from `root`."""
        if self._root is None:
            self.root  # noqa: B018 - decodes root and body together
        return self._body

    def generic_root(self) -> dict[str, Any]:
        if self._generic is None:
            self._generic = _generic.decode(self.raw)
        return self._generic

    def generic_body(self) -> Any:
        return self.generic_root().get(self.etype)

    def plain_view(self) -> dict[str, Any]:
        """The event as plain dicts: the one an earlier step decoded, else a fresh one NOT kept on the
        event (a batch's worth of dicts kept until acknowledged pushes the rest out of the CPU caches)."""
        return self._generic if self._generic is not None else _generic.decode(self.raw)


def decoded_of(raw: bytes, etype: str, view: Any, vbody: Any) -> Decoded:
    """The `Decoded` of an event whose view is a `LeanEvent` or (not fitting it) plain dicts."""
    if type(view) is dict:
        return Decoded(raw, etype, view, vbody, etype in _TYPES_WITH_PROCESS and (
            vbody is None or _field(vbody, _EXPECTED_BODY_FIELD) is None), "tetrapipe" in view,
            view, vbody, view)
    # a LeanEvent: the types with a process have a LeanBody
    return Decoded(raw, etype, view, vbody, etype in _TYPES_WITH_PROCESS and (vbody is None or vbody.process is None),
                   view.tetrapipe is not None)


def _check_utf8(text: bytes) -> None:
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as bad:
        raise BadInput("invalid_utf8", f"invalid UTF-8 at byte {bad.start}") from None


def _undecodable(text: bytes, exc: Exception) -> BadInput:
    """The reason for bytes the JSON decoder refused, decided by the bytes, not by the exception.

    msgspec < 0.23 raised `UnicodeDecodeError` for invalid UTF-8 and 0.23
    raises `DecodeError("Invalid UTF-8 encoded string")`: the exception type
    is no stable signal.  Validating the bytes costs nothing on good input
    (this runs only on the error path).
    """
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as bad:
        return BadInput("invalid_utf8", f"invalid UTF-8 at byte {bad.start}")
    return BadInput("invalid_json", str(exc))


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if type(obj) is dict else getattr(obj, name, None)


class LineDecoder:
    """Stateful only for CRI partial lines; otherwise a pure function of the line.

    `max_depth`: the deepest nesting of objects/arrays accepted (see the
    module doc); `max_event_bytes`: the largest event joined from CRI partial
    lines.
    """

    def __init__(self, max_event_bytes: int = 16 << 20, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
        if max_depth < 1:
            raise ValueError(f"max_depth must be at least 1, not {max_depth}")
        self.max_event_bytes = max_event_bytes
        self.max_depth = max_depth
        self._lean = _lean  # the view's decoder (`use_view`)
        self._partial: dict[bytes, PartialGroup] = {}
        self._held: PartialGroup | None = None  # the group the last buffered P line joined
        self._cri_line = False  # the line being decoded turned out to be a CRI line
        # Groups orphaned while decoding (with why): the caller takes them (`take_orphans`).
        self.orphans: list[tuple[PartialGroup, BadInput]] = []
        # The last event joined from partial lines, with its group: a caller whose later step
        # fails on that event rejects the whole group (see tetrapipe.pipeline.processor).
        self.last_joined: tuple[Decoded, PartialGroup] | None = None

    def use_view(self, model: type[LeanEvent] | None) -> None:
        """Decode events into `model` (a `LeanEvent` subclass with more fields) from now on; None: `LeanEvent`."""
        self._lean = _lean if model is None else msgspec.json.Decoder(model)

    @property
    def view_decoder(self) -> msgspec.json.Decoder[Any]:
        """The decoder of the lean view in use (`use_view`): a batch decode must use this one too."""
        return self._lean

    @property
    def pending(self) -> bool:
        """True while CRI partial lines wait for their final line."""
        return bool(self._partial)

    def decode(self, line: bytes) -> Decoded | None:
        """Decode one line (without its newline). None: a CRI partial line was buffered."""
        text = line.strip()
        if not text:
            raise BadInput("blank", "empty line")
        if self._partial:
            return self._decode_among_partials(text)
        if text[:1] != b"{":
            return self._decode_cri(text)
        return self._decode_object(text, 0)

    def hold(self, raw: bytes, origin: Any) -> None:
        """The line `decode` just buffered (returned None for) is `raw`, from `origin`.

        Keeps the record exactly as received (decode sees it stripped, or
        unwrapped from a shipper record) and the first line's origin, for the
        dead letter should the group never complete.
        """
        group = self._held
        if group is None or not group.raws:
            return
        group.raws[-1] = raw
        if group.origin is None:
            group.origin = origin

    def end_of_input(self) -> None:
        """No more lines will come: every pending group of partial lines is orphaned."""
        self._orphan_all("the input ended before its final (F) line")

    def take_orphans(self) -> list[tuple[PartialGroup, BadInput]]:
        """The groups orphaned since the last call, with their errors."""
        orphans, self.orphans = self.orphans, []
        return orphans

    def _orphan_all(self, why: str) -> None:
        for group in self._partial.values():
            self.orphans.append((group, BadInput(
                "incomplete_partial", f"{len(group.raws)} CRI partial ({group.stream.decode()}) line(s): {why}")))
        self._partial.clear()
        self._held = None

    def _decode_among_partials(self, text: bytes) -> Decoded | None:
        """Decode while partial lines wait: a record that is not a CRI line orphans them."""
        self._cri_line = False
        try:
            if text[:1] != b"{":
                return self._decode_cri(text)
            return self._decode_object(text, 0)
        finally:
            if not self._cri_line:
                self._orphan_all("interrupted by a record that is not a CRI container-log line")

    def _check_depth(self, text: bytes) -> None:
        """Raise `too_deep` when `text` nests deeper than `max_depth`.

        The bracket count bounds the depth (the second replace returns its
        input unchanged when there is no `[`); only past the limit does the
        exact scan run.
        """
        if len(text) - len(text.replace(b"{", b"").replace(b"[", b"")) > self.max_depth:
            self._check_depth_exactly(text)

    def _check_depth_exactly(self, text: bytes) -> None:
        depth = nesting_depth(text)
        if depth > self.max_depth:
            raise BadInput("too_deep", f"nested {depth} levels deep, more than the limit of {self.max_depth}")

    def _decode_object(self, text: bytes, depth: int) -> Decoded | None:
        # `_check_depth`, inlined: this runs for every line
        if len(text) - len(text.replace(b"{", b"").replace(b"[", b"")) > self.max_depth:
            self._check_depth_exactly(text)
        try:
            root: Any = self._lean.decode(text)
        except msgspec.ValidationError:
            root = None  # valid JSON that does not fit the typed model
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise _undecodable(text, exc) from None
        if root is not None:
            if not text.isascii():
                # The lean model skips fields it does not name without validating them: invalid UTF-8
                # there (a key, an unmodelled value) would reach the output, which must be JSON.
                _check_utf8(text)
            # The commonest types by attribute, in KNOWN_TYPES order: a third of the cost of getattr.
            # The constructor inlined for these three (types with a process): no Python call per event.
            body = root.process_exec
            if body is not None:
                return Decoded(text, "process_exec", root, body, body.process is None, root.tetrapipe is not None)
            body = root.process_exit
            if body is not None:
                return Decoded(text, "process_exit", root, body, body.process is None, root.tetrapipe is not None)
            body = root.process_kprobe
            if body is not None:
                return Decoded(text, "process_kprobe", root, body, body.process is None, root.tetrapipe is not None)
            for etype in _RARER_TYPES:
                body = getattr(root, etype)
                if body is not None:
                    return decoded_of(text, etype, root, body)
        return self._decode_generic(text, depth)

    def _decode_generic(self, text: bytes, depth: int) -> Decoded | None:
        try:
            root = _generic.decode(text)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise _undecodable(text, exc) from None
        if type(root) is not dict:
            raise BadInput("not_an_object", f"JSON {type(root).__name__} where an event object was expected")
        for etype in KNOWN_TYPES:
            if etype in root:
                return decoded_of(text, etype, root, root[etype])
        if "log" in root or "message" in root:
            return self._unwrap_shipper(text, root, depth)
        unknown = next((k for k, v in root.items() if k not in COMMON_KEYS and type(v) is dict), None)
        if unknown is None:
            raise BadInput("no_event_type", "object has no Tetragon event-type key")
        return decoded_of(text, unknown, root, root[unknown])

    def _unwrap_shipper(self, text: bytes, root: dict[str, Any], depth: int) -> Decoded | None:
        """The event in a shipper record's `log`/`message` (None: it held a CRI partial line, buffered)."""
        if depth >= _MAX_UNWRAP_DEPTH:
            raise BadInput("bad_envelope", "envelopes nested too deep")
        env = _envelope.decode(text)
        inner = bytes(env.log if "log" in root else env.message).strip()
        if inner[:1] == b'"':
            inner = _generic.decode(inner).encode("utf-8").strip()
            if inner[:1] != b"{":
                if _CRI.match(inner) is None:
                    self._check_depth(inner)  # too deep says more than "not an object"
                    raise BadInput("bad_envelope", "log/message field holds neither a JSON object nor a CRI line")
                return self._decode_cri(inner)  # Fluent Bit without its CRI parser: one CRI line per record
        elif inner[:1] != b"{":
            raise BadInput("bad_envelope", "log/message field does not hold a JSON object")
        return self._decode_object(inner, depth + 1)

    def _decode_cri(self, text: bytes) -> Decoded | None:
        m = _CRI.match(text)
        if m is None:
            self._check_depth(text)
            try:
                value = _generic.decode(text)
            except (msgspec.DecodeError, UnicodeDecodeError):
                raise BadInput("invalid_json", "line is neither JSON nor a CRI container-log line") from None
            raise BadInput("not_an_object", f"JSON {type(value).__name__} where an event object was expected")
        self._cri_line = True
        stream, tag, payload = m.group(2), m.group(3), m.group(4) or b""
        if tag == b"P":
            self._buffer(stream, payload, text)
            return None
        group = self._partial.pop(stream, None)
        if group is None:
            return self._decode_payload(payload)
        return self._decode_joined(group, payload)

    def _buffer(self, stream: bytes, payload: bytes, text: bytes) -> None:
        """Keep a P line until its stream's F line; the group is rejected whole if it outgrows the limit."""
        group = self._partial.get(stream)
        if group is None:
            group = PartialGroup(stream)
        size = len(group.payload) + len(payload)
        if size > self.max_event_bytes:
            self._partial.pop(stream, None)
            error = BadInput("too_large", f"CRI partial lines of {size} bytes or more exceed the event size "
                                          f"limit of {self.max_event_bytes} bytes")
            if group.raws:
                error.group = group
            raise error
        self._partial[stream] = group
        group.payload += payload
        group.raws.append(text)
        self._held = group

    def _decode_joined(self, group: PartialGroup, payload: bytes) -> Decoded:
        """The event of a group of partial lines and its F line's payload; on failure the group goes with it."""
        if len(group.payload) + len(payload) > self.max_event_bytes:
            error = BadInput("too_large", f"CRI partial lines exceed the event size limit of "
                                          f"{self.max_event_bytes} bytes")
            error.group = group
            raise error
        try:
            decoded = self._decode_payload(bytes(group.payload + payload))
        except BadInput as exc:
            exc.group = group
            raise
        except Exception as exc:  # noqa: BLE001 - the group must not vanish with the exception
            error = fault(exc)
            error.group = group
            raise error from exc
        if decoded is None:  # the payload held one more CRI partial line: no event to join into
            error = BadInput("bad_envelope", "the joined payload of CRI partial lines holds another partial line")
            error.group = group
            raise error
        self.last_joined = (decoded, group)
        return decoded

    def _decode_payload(self, payload: bytes) -> Decoded | None:
        payload = payload.strip()
        if payload[:1] != b"{":
            self._check_depth(payload)  # too deep says more than "not an object"
            raise BadInput("bad_envelope", "CRI line payload is not a JSON object")
        return self._decode_object(payload, 1)
