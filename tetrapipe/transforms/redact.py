"""Tetragon redaction filters (``--redaction-filters``): hide secrets in process arguments and environment.

Contract: ``compile_redaction(items, *, replacement="*****", string_args=False,
path="redaction_filters") -> Redactor``; each item is Tetragon's ``RedactionFilter`` as JSON/YAML:
``{"redact": ["(?:--password|-p)[\\s=]+(\\S+)"], "binary_regex": ["mysql$"]}`` (``match``, deprecated
in Tetragon and ignored by it, is accepted and ignored).  ``Redactor(event, event_type)`` returns
``(event, redacted)``: the event with every *capture group* of every ``redact`` match replaced by
``replacement`` (Tetragon's ``*****``), and whether anything was replaced.  Semantics (cilium/tetragon
``pkg/fieldfilters/redaction.go``, which redacts each process once, at exec):

* Applies to every process record of the event (``process``, ``parent``, each of ``ancestors``) of
  the eight process event types: its ``arguments`` and its ``environment_variables`` (each
  ``{"Key","Value"}`` redacted as the string ``Key=Value``, then split at the first ``=`` again;
  without one the key becomes ``invalid``, as Tetragon names it).
* A filter with ``binary_regex`` applies only to processes whose ``binary`` matches one of them (a
  search, as Go's MatchString).  Filters apply in order, each to the previous one's output; the
  patterns of a filter likewise.
* Each match is re-matched on its own text and its groups replaced left to right; a group nested in
  a replaced group, or one that did not take part, is skipped (Go's ReplaceAllStringFunc + Tetragon's
  redactString, byte for byte).  A pattern without groups redacts nothing.
* ``string_args=True`` (not in Tetragon, which never redacts kprobe arguments) also redacts the
  ``string_arg`` values of ``args`` of kprobe/tracepoint/uprobe/lsm/usdt events, matched against the
  event's ``process.binary``.

``Redactor.unchanged(raw, event_type) -> bool``: True only when the redactor would return the event
unchanged (``redacted`` False) -- then the caller need not decode the whole event.  It decodes from the
raw JSON only the strings redaction reads (arguments, environment, string args) into a narrow
``msgspec`` struct and runs the same any-pattern search on each exact string as ``__call__`` does
first; an event whose shape that struct cannot take (a process that is not an object, ...) answers
False (the caller takes the full path).  ``Redactor.unchanged_lean(vbody, event_type)``: the same
answer read from a ``RedactionLeanEvent`` view's body (:mod:`.redact_view`: decoded with the event,
no second decode); ``unchanged_decoded(decoded)`` picks whichever the event's view allows.  When
every filter has a ``binary_regex``, a process whose binary matches none of them is not searched
(no filter applies to it).  Both proven by differential property tests.

The input event is not mutated.  Per string, results are memoised (bounded), so a repeated argument
line costs a dict lookup; a line no pattern matches costs one RE2 search the first time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from .filter_errors import FilterConfigError
from .re2match import MEMO_MAX_LEN, MEMO_SIZE, AnyRegex, compile_re2, redact_bytes
from .redact_view import RedactionLeanEvent

_PROC = frozenset({"process_exec", "process_exit", "process_kprobe", "process_tracepoint", "process_uprobe",
                   "process_usdt", "process_lsm", "process_loader"})
_SAME = object()
_ARGS = frozenset({"process_kprobe", "process_tracepoint", "process_uprobe", "process_lsm", "process_usdt"})


class _Env(msgspec.Struct, gc=False):
    Key: Any = ""  # noqa: N815 - Tetragon's JSON names; the defaults are what `_env` reads for a missing key
    Value: Any = ""  # noqa: N815


class _ProcessStrings(msgspec.Struct, gc=False):
    binary: Any = None
    arguments: Any = None
    environment_variables: list[_Env] | None = None  # an entry that is not an object: the full path decides


class _BodyStrings(msgspec.Struct, gc=False):
    process: _ProcessStrings | None = None
    parent: _ProcessStrings | None = None
    ancestors: list[_ProcessStrings] | None = None
    args: Any = None


_BodyDecoder = msgspec.json.Decoder


def _decoder_for(etype: str) -> Any:
    """A decoder of just ``{etype: {process, parent, ancestors, args}}``: every other key is skipped."""
    event = msgspec.defstruct(f"_Strings_{etype}", [(etype, _BodyStrings | None, None)], gc=False)
    return _BodyDecoder(event)


_DECODERS = {etype: _decoder_for(etype) for etype in sorted(_PROC)}


class _Filter:
    __slots__ = ("binary", "patterns")

    def __init__(self, item: Any, path: str) -> None:
        if not isinstance(item, dict):
            raise FilterConfigError(path, "expected an object (one Tetragon redaction filter)")
        for key in item:
            if key not in ("redact", "binary_regex", "binaryRegex", "match"):
                raise FilterConfigError(f"{path}.{key}", "unknown field; expected redact, binary_regex")
        binary = item.get("binary_regex", item.get("binaryRegex")) or []
        redact = item.get("redact") or []
        for name, value in (("binary_regex", binary), ("redact", redact)):
            if not isinstance(value, list):
                raise FilterConfigError(f"{path}.{name}", "expected a list of regular expressions")
        self.binary = AnyRegex(binary, f"{path}.binary_regex") if binary else None
        self.patterns = [compile_re2(p, f"{path}.redact[{i}]", capture=True) for i, p in enumerate(redact)]


class Redactor:
    """Compiled redaction filters; call with (event, event_type) -> (event, redacted)."""

    __slots__ = ("_filters", "_replacement", "_string_args", "_any", "_binaries", "_memo", "is_noop")

    def __init__(self, items: Sequence[Any], *, replacement: str = "*****", string_args: bool = False,
                 path: str = "redaction_filters") -> None:
        if not isinstance(items, list | tuple):
            raise FilterConfigError(path, "expected a list of redaction filters")
        self._filters = [_Filter(item, f"{path}[{i}]") for i, item in enumerate(items)]
        self._replacement = replacement.encode("utf-8", "surrogatepass")
        self._string_args = string_args
        every = [p for i, item in enumerate(items) for p in (item.get("redact") or [])]
        # Cheap pre-check: a string no pattern matches anywhere needs no group-wise work.
        self._any = AnyRegex(every, path) if every else None
        # When every filter names binaries, a process whose binary matches none of them is left alone.
        binaries = [b for f, item in zip(self._filters, items, strict=True) if f.binary is not None
                    for b in (item.get("binary_regex", item.get("binaryRegex")))]
        self._binaries = AnyRegex(binaries, path) if all(f.binary is not None for f in self._filters) else None
        self._memo: dict[tuple[str, str], object] = {}
        self.is_noop = self._any is None

    def __call__(self, event: dict[str, Any], event_type: str) -> tuple[dict[str, Any], bool]:
        body = event.get(event_type)
        if self._any is None or event_type not in _PROC or type(body) is not dict:
            return event, False
        new_body: dict[str, Any] | None = None
        for key in ("process", "parent"):
            p = body.get(key)
            if type(p) is dict:
                q = self._process(p)
                if q is not p:
                    new_body = new_body or dict(body)
                    new_body[key] = q
        ancestors = body.get("ancestors")
        if type(ancestors) is list:
            new = [self._process(a) if type(a) is dict else a for a in ancestors]
            if any(a is not b for a, b in zip(new, ancestors, strict=True)):
                new_body = new_body or dict(body)
                new_body["ancestors"] = new
        if self._string_args and event_type in _ARGS:
            args = self._string_args_of(body)
            if args is not None:
                new_body = new_body or dict(body)
                new_body["args"] = args
        if new_body is None:
            return event, False
        return {**event, event_type: new_body}, True

    def unchanged_decoded(self, decoded: Any) -> bool:
        """``unchanged`` for a ``Decoded`` event: read from its view when that is a ``RedactionLeanEvent``."""
        if type(decoded.view) is not RedactionLeanEvent:
            return self.unchanged(decoded.raw, decoded.etype)
        body = decoded.vbody
        any_match = self._any
        if any_match is None or body is None or decoded.etype not in _PROC:
            return True
        if self._binaries is not None or self._string_args or body.ancestors:
            return self._body_unchanged(body, decoded.etype)
        # The common case, unrolled (it runs for every event shipped): the arguments of the process and
        # its parent, through the matcher's memo; environment variables take the general path.
        memo = any_match.memo
        for p in (body.process, body.parent):
            if p is None:
                continue
            if p.environment_variables:
                return self._body_unchanged(body, decoded.etype)
            args = p.arguments
            if type(args) is str and args:
                hit = memo.get(args)
                if hit is None:
                    hit = any_match(args)
                if hit:
                    return False
        return True

    def unchanged(self, raw: bytes, event_type: str) -> bool:
        """True only if ``self(generic decode of raw, event_type)`` returns the event unchanged."""
        if self._any is None or event_type not in _PROC:
            return True
        try:
            body = getattr(_DECODERS[event_type].decode(raw), event_type)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return False  # a shape the narrow struct cannot take: let the full path decide
        return body is None or self._body_unchanged(body, event_type)

    def unchanged_lean(self, body: Any, event_type: str) -> bool:
        """``unchanged`` from the body of a ``RedactionLeanEvent`` view (its leaves as decoded, any JSON type)."""
        if self._any is None or event_type not in _PROC or body is None:
            return True
        return self._body_unchanged(body, event_type)

    def _body_unchanged(self, body: Any, event_type: str) -> bool:
        """No string of the body's processes (and string args) that a filter applies to is matched."""
        process_unchanged = self._process_unchanged  # unrolled: this runs for every event shipped
        p = body.process
        if p is not None and not process_unchanged(p):
            return False
        p = body.parent
        if p is not None and not process_unchanged(p):
            return False
        for p in body.ancestors or ():
            if not process_unchanged(p):
                return False
        any_match = self._any
        assert any_match is not None
        if self._string_args and event_type in _ARGS and type(body.args) is list:
            if not self._applies(body.process.binary if body.process is not None else None):
                return True
            return not any(type(a) is dict and type(s := a.get("string_arg")) is str and any_match(s)
                           for a in body.args)
        return True

    def _applies(self, binary: Any) -> bool:
        """Whether some filter may apply to a process with this binary (read as ``_process`` reads it)."""
        return self._binaries is None or self._binaries(binary if type(binary) is str else "")

    def _process_unchanged(self, p: Any) -> bool:
        """What ``_process`` checks first, string by string: no pattern matches anywhere in it."""
        any_match = self._any
        assert any_match is not None
        if self._binaries is not None and not self._applies(p.binary):
            return True
        args = p.arguments
        if type(args) is str and args and any_match(args):
            return False
        envs = p.environment_variables  # a list of _Env (narrow decode) or of anything (the lean view)
        if not envs or type(envs) is not list:
            return True
        for e in envs:
            if type(e) is _Env:
                text = f"{e.Key}={e.Value}"
            elif type(e) is dict:
                text = f"{e.get('Key', '')}={e.get('Value', '')}"
            else:
                continue  # `_process` leaves such an entry as it is
            if any_match(text):
                return False
        return True

    def _process(self, p: dict[str, Any]) -> dict[str, Any]:
        binary = p.get("binary", "")
        binary = binary if type(binary) is str else ""
        out: dict[str, Any] | None = None
        args = p.get("arguments")
        if type(args) is str and args:
            new = self.redact(binary, args)
            if new is not args:
                out = dict(p)
                out["arguments"] = new
        envs = p.get("environment_variables")
        if type(envs) is list and envs:
            new_envs = [self._env(binary, e) if type(e) is dict else e for e in envs]
            if any(a is not b for a, b in zip(new_envs, envs, strict=True)):
                out = out or dict(p)
                out["environment_variables"] = new_envs
        return p if out is None else out

    def _env(self, binary: str, env: dict[str, Any]) -> dict[str, Any]:
        text = f"{env.get('Key', '')}={env.get('Value', '')}"
        new = self.redact(binary, text)
        if new is text:
            return env
        key, sep, value = new.partition("=")
        return {**env, "Key": key, "Value": value} if sep else {**env, "Key": "invalid", "Value": new}

    def _string_args_of(self, body: dict[str, Any]) -> list[Any] | None:
        args = body.get("args")
        proc = body.get("process")
        binary = proc.get("binary", "") if type(proc) is dict else ""
        binary = binary if type(binary) is str else ""  # null (or not a string) reads as "", as in _process
        if type(args) is not list:
            return None
        new = [{**a, "string_arg": self.redact(binary, a["string_arg"])}
               if type(a) is dict and type(a.get("string_arg")) is str else a for a in args]
        changed = any(type(b) is dict and a.get("string_arg") is not b.get("string_arg")
                      for a, b in zip(new, args, strict=True))
        return new if changed else None

    def redact(self, binary: str, text: str) -> str:
        """``text`` with the filters that apply to ``binary`` applied; ``text`` itself if unchanged."""
        assert self._any is not None
        if not self._any(text):
            return text
        key = (binary, text)
        hit = self._memo.get(key)
        if hit is not None:
            return text if hit is _SAME else hit  # type: ignore[return-value]
        data = text.encode("utf-8", "surrogatepass")
        changed = False
        for f in self._filters:
            if f.binary is not None and not f.binary(binary):
                continue
            for regex in f.patterns:
                data, modified = redact_bytes(regex, data, self._replacement)
                changed |= modified
        result = data.decode("utf-8", "surrogatepass") if changed else text
        if len(text) <= MEMO_MAX_LEN:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            self._memo[key] = result if changed else _SAME  # "unchanged" must return the caller's object
        return result


def compile_redaction(items: Sequence[Any], *, replacement: str = "*****", string_args: bool = False,
                      path: str = "redaction_filters") -> Redactor:
    """Compile Tetragon redaction filters (see the module docstring)."""
    return Redactor(items, replacement=replacement, string_args=string_args, path=path)
