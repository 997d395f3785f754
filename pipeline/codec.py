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
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from pipeline.model import COMMON_KEYS, KNOWN_TYPES, LeanEvent, TetragonEvent

_typed = msgspec.json.Decoder(TetragonEvent)
_lean = msgspec.json.Decoder(LeanEvent)
_generic = msgspec.json.Decoder()
_CRI = re.compile(rb"^(\d{4}-\d\d-\d\d[T ][^ ]+) (stdout|stderr) ([FP])(?: (.*))?$", re.DOTALL)
_MAX_UNWRAP_DEPTH = 3
# Event types whose body Tetragon always gives a `process`; its absence is
# reported (the event still flows: it is valid JSON and may still be tagged).
_EXPECTED_BODY_FIELD = "process"
_TYPES_WITH_PROCESS = frozenset(KNOWN_TYPES) - {"process_throttle", "rate_limit_info"}


class BadInput(Exception):
    """A line that cannot become an event: `reason` is a stable counter label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class _ShipperEnvelope(msgspec.Struct):
    log: msgspec.Raw = msgspec.Raw(b"")
    message: msgspec.Raw = msgspec.Raw(b"")


_envelope = msgspec.json.Decoder(_ShipperEnvelope)


class Decoded:
    """One decoded event: its own bytes, its type, and three views of it, each made once.

    - `view`/`vbody`: the lean model (`LeanEvent`), decoded for every event;
      the shipped rules and `classify` read only this;
    - `root`/`body`: the full typed model (`TetragonEvent`), decoded on first
      access (summaries of tagged events, sink mappings, rules over its fields);
    - `generic_root()`: plain dicts of everything, decoded on first access.
    An event that does not fit a typed model gets plain dicts in its place
    (the same paths work on both).
    """

    __slots__ = ("raw", "etype", "view", "vbody", "_root", "_body", "_generic", "incomplete", "egress",
                 "has_tetrapipe_key")

    def __init__(self, raw: bytes, etype: str, view: Any, vbody: Any) -> None:
        self.raw = raw
        self.etype = etype
        self.view = view
        self.vbody = vbody
        self._root: Any = None
        self._body: Any = None
        if type(view) is dict:
            self._generic: dict[str, Any] | None = view
            self._root = view
            self._body = vbody
            self.has_tetrapipe_key = "tetrapipe" in view
        else:
            self._generic = None
            self.has_tetrapipe_key = view.tetrapipe is not None
        self.incomplete = etype in _TYPES_WITH_PROCESS and (
            vbody is None or _field(vbody, _EXPECTED_BODY_FIELD) is None)
        self.egress: Any = None

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
    """Stateful only for CRI partial lines; otherwise a pure function of the line."""

    def __init__(self, max_event_bytes: int = 16 << 20) -> None:
        self.max_event_bytes = max_event_bytes
        self._partial: dict[bytes, bytearray] = {}

    def decode(self, line: bytes) -> Decoded | None:
        """Decode one line (without its newline). None: a CRI partial line was buffered."""
        text = line.strip()
        if not text:
            raise BadInput("blank", "empty line")
        if text[:1] != b"{":
            return self._decode_cri(text)
        return self._decode_object(text, 0)

    def _decode_object(self, text: bytes, depth: int) -> Decoded:
        try:
            root: Any = _lean.decode(text)
        except msgspec.ValidationError:
            root = None  # valid JSON that does not fit the typed model
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise _undecodable(text, exc) from None
        if root is not None:
            for etype in KNOWN_TYPES:
                body = getattr(root, etype)
                if body is not None:
                    return Decoded(text, etype, root, body)
        return self._decode_generic(text, depth)

    def _decode_generic(self, text: bytes, depth: int) -> Decoded:
        try:
            root = _generic.decode(text)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise _undecodable(text, exc) from None
        if type(root) is not dict:
            raise BadInput("not_an_object", f"JSON {type(root).__name__} where an event object was expected")
        for etype in KNOWN_TYPES:
            if etype in root:
                return Decoded(text, etype, root, root[etype])
        inner = self._unwrap_shipper(text, root, depth)
        if inner is not None:
            return inner
        unknown = next((k for k, v in root.items() if k not in COMMON_KEYS and type(v) is dict), None)
        if unknown is None:
            raise BadInput("no_event_type", "object has no Tetragon event-type key")
        return Decoded(text, unknown, root, root[unknown])

    def _unwrap_shipper(self, text: bytes, root: dict[str, Any], depth: int) -> Decoded | None:
        if "log" not in root and "message" not in root:
            return None
        if depth >= _MAX_UNWRAP_DEPTH:
            raise BadInput("bad_envelope", "envelopes nested too deep")
        env = _envelope.decode(text)
        inner = bytes(env.log if "log" in root else env.message).strip()
        if inner[:1] == b'"':
            inner = _generic.decode(inner).encode("utf-8").strip()
            if inner[:1] != b"{":
                try:
                    return self._decode_cri(inner)
                except BadInput:
                    raise BadInput("bad_envelope", "log/message field does not hold a JSON object") from None
        elif inner[:1] != b"{":
            raise BadInput("bad_envelope", "log/message field does not hold a JSON object")
        return self._decode_object(inner, depth + 1)

    def _decode_cri(self, text: bytes) -> Decoded | None:
        m = _CRI.match(text)
        if m is None:
            try:
                value = _generic.decode(text)
            except (msgspec.DecodeError, UnicodeDecodeError):
                raise BadInput("invalid_json", "line is neither JSON nor a CRI container-log line") from None
            raise BadInput("not_an_object", f"JSON {type(value).__name__} where an event object was expected")
        stream, tag, payload = m.group(2), m.group(3), m.group(4) or b""
        if tag == b"P":
            buf = self._partial.setdefault(stream, bytearray())
            if len(buf) + len(payload) > self.max_event_bytes:
                self._partial.pop(stream, None)
                raise BadInput("too_large", "CRI partial lines exceed the event size limit")
            buf += payload
            return None
        pending = self._partial.pop(stream, None)
        if pending is not None:
            payload = bytes(pending + payload)
        payload = payload.strip()
        if payload[:1] != b"{":
            raise BadInput("bad_envelope", "CRI line payload is not a JSON object")
        return self._decode_object(payload, 1)
