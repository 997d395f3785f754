"""Tetragon's ``cel_expression`` filter: CEL over the event typed as Tetragon's protobuf messages.

Contract (follows cilium/tetragon ``pkg/filters/cel_expression.go``):

* Variables: one per event type, ``process_exec``, ``process_exit``, ``process_kprobe``,
  ``process_tracepoint``, ``process_loader``, ``process_uprobe``, ``process_throttle``, ``process_lsm``,
  ``process_usdt``, ``test``, ``rate_limit_info``, each typed as its message (``tetragon.ProcessExec``
  ...), container ``tetragon``; plus Kubernetes' ``ip``/``cidr`` functions (:mod:`.cel_net`).
  Being typed, an expression naming an unknown field does not compile, an unset field reads as its
  default (``process_exec.process.pod.namespace == ""`` for a host process), ``pid`` is a ``uint``
  wrapper (``process_exec.process.pid > uint(1)``), enums are ints, times are timestamps.
* An expression must be boolean.  It is evaluated only for an event whose type it names (an
  expression naming no event variable, like ``true``, never matches); the other event variables it
  names are empty messages, as Tetragon's typed nils behave.  Expressions of one filter are OR'ed.
* An evaluation error (or an event the schema cannot parse) is "no match", counted in ``errors``.

Per event: the event object is converted once to its message, only the parts the filter's
expressions can read (:mod:`.cel_select`, :mod:`.protoconv`), and the compiled programs run in
cel-expr-python (CEL's C++ runtime).  The conversion is cached for the last event object.  The event
object must not be mutated while it is being filtered.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import Any

from . import tetragon_schema as schema
from .cel_select import WHOLE, selection
from .filter_errors import FilterConfigError
from .protoconv import Converter

_WELL_KNOWN_FILES = ("timestamp_pb2", "wrappers_pb2", "duration_pb2")
_SCALAR_TYPES = {"string": 9, "bytes": 12, "bool": 8, "int32": 5, "int64": 3, "uint32": 13, "uint64": 4,
                 "double": 1, "float": 2}
_IDENT = re.compile(r"""(?x)
    (?P<str> [rRbB]{0,2}(?:'''(?:.|\n)*?'''|\"\"\"(?:.|\n)*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*") )
  | (?P<dot> \.\s*[A-Za-z_][A-Za-z0-9_]* )
  | (?P<id> [A-Za-z_][A-Za-z0-9_]* )
""")


class _Runtime:
    """The descriptor pool, message classes and CEL environment, built once per process."""

    def __init__(self) -> None:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        from . import cel_net

        pool = descriptor_pool.DescriptorPool()
        for name in _WELL_KNOWN_FILES:
            module = __import__(f"google.protobuf.{name}", fromlist=["DESCRIPTOR"])
            pool.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
        pool.Add(_tetragon_file(descriptor_pb2))
        pool.Add(_net_file(descriptor_pb2))
        classes = {msg: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tetragon.{msg}"))
                   for msg in schema.MESSAGES}
        self.converter = Converter(classes)
        self.empty = {key: classes[msg]() for key, (_, _, msg) in schema.EVENT_TYPES.items()}
        net = {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"net.{name}"))
               for name in cel_net.NET_MESSAGES}
        from cel_expr_python import cel

        self.cel = cel
        self.env = cel.NewEnv(
            pool, container="tetragon", functions=cel_net.net_functions(net["IP"], net["CIDR"]),
            variables={key: cel.Type(f"tetragon.{msg}") for key, (_, _, msg) in schema.EVENT_TYPES.items()})
        self._last: tuple[object, object, Any] = (None, None, None)

    def message(self, body: dict[str, Any], etype: str, node: Any) -> Any:
        last_body, last_node, last_msg = self._last
        if body is last_body and node is last_node:
            return last_msg
        msg = self.converter.convert(schema.EVENT_TYPES[etype][2], body, node)
        # Keep the object itself, not its id: a freed dict's id can be reused by the next event.
        self._last = (body, node, msg)
        return msg


def _tetragon_file(descriptor_pb2: Any) -> Any:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="tetrapipe/tetragon_schema.proto", package="tetragon", syntax="proto3",
        dependency=[f"google/protobuf/{n.removesuffix('_pb2')}.proto" for n in _WELL_KNOWN_FILES])
    label = descriptor_pb2.FieldDescriptorProto
    for enum_name in schema.ENUMS:
        enum = fdp.enum_type.add(name=enum_name)
        for value, number in schema.enum_values(enum_name).items():
            enum.value.add(name=value, number=number)
    for msg_name in schema.MESSAGES:
        msg = fdp.message_type.add(name=msg_name)
        oneofs: list[str] = []
        # protobuf wants a oneof's fields consecutive (KprobeArgument's label sits inside its range)
        for f in sorted(schema.fields(msg_name).values(), key=lambda f: (f.oneof is None, f.number)):
            field = msg.field.add(name=f.name, number=f.number, json_name=f.name,
                                  label=label.LABEL_REPEATED if f.repeated or f.is_map else label.LABEL_OPTIONAL)
            if f.is_map:
                entry = msg.nested_type.add(name=_map_entry_name(f.name))
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, type=9, label=label.LABEL_OPTIONAL, json_name="key")
                entry.field.add(name="value", number=2, type=9, label=label.LABEL_OPTIONAL, json_name="value")
                field.type, field.type_name = label.TYPE_MESSAGE, f".tetragon.{msg_name}.{entry.name}"
            elif f.type in _SCALAR_TYPES:
                field.type = _SCALAR_TYPES[f.type]
            elif f.type in schema.ENUMS:
                field.type, field.type_name = label.TYPE_ENUM, f".tetragon.{f.type}"
            else:
                package = "google.protobuf" if f.type in schema.WELL_KNOWN else "tetragon"
                field.type, field.type_name = label.TYPE_MESSAGE, f".{package}.{f.type}"
            if f.oneof:
                if f.oneof not in oneofs:
                    oneofs.append(f.oneof)
                    msg.oneof_decl.add(name=f.oneof)
                field.oneof_index = oneofs.index(f.oneof)
    return fdp


def _map_entry_name(field: str) -> str:
    return "".join(part.capitalize() for part in field.split("_")) + "Entry"


def _net_file(descriptor_pb2: Any) -> Any:
    from .cel_net import NET_MESSAGES

    fdp = descriptor_pb2.FileDescriptorProto(name="tetrapipe/net.proto", package="net", syntax="proto3")
    for name, field in NET_MESSAGES.items():
        fdp.message_type.add(name=name).field.add(name=field, number=1, type=9, label=1)
    return fdp


@cache
def runtime() -> _Runtime:
    return _Runtime()


def referenced_event_types(expr: str) -> frozenset[str]:
    """Event variables an expression names (identifiers outside strings and not after a dot)."""
    names = {m.group("id") for m in _IDENT.finditer(expr) if m.group("id")}
    return frozenset(names & schema.EVENT_TYPES.keys())


class CelExpressions:
    """One filter's ``cel_expression`` list: ``(body, event_type) -> bool``, expressions OR'ed."""

    def __init__(self, exprs: Sequence[object], path: str) -> None:
        rt = runtime()
        self._rt = rt
        self.errors = 0
        self._programs: list[tuple[Any, frozenset[str]]] = []
        for i, expr in enumerate(exprs):
            where = f"{path}[{i}]"
            if not isinstance(expr, str):
                raise FilterConfigError(where, f"expected a CEL expression string, got {type(expr).__name__}")
            try:
                program = rt.env.compile(expr)
            except Exception as exc:  # cel-expr-python raises RuntimeError with the checker's message
                raise FilterConfigError(where, f"error compiling CEL expression: {_one_line(exc)}") from None
            if program.return_type() != rt.cel.Type.BOOL:
                raise FilterConfigError(where, f"got {program.return_type().name()!r}, wanted 'bool' result type")
            self._programs.append((program, referenced_event_types(expr)))
        self.event_types = frozenset().union(*(names for _, names in self._programs))
        # one selection per event type for all expressions of this filter, so one conversion serves all
        self._nodes: dict[str, Any] = {}
        for expr in exprs:
            for etype, node in selection(str(expr)).items():
                self._nodes[etype] = _union(self._nodes.get(etype), node)

    def __call__(self, body: dict[str, Any], etype: str) -> bool:
        if etype not in self.event_types:
            return False
        rt = self._rt
        try:
            msg = rt.message(body, etype, self._nodes.get(etype, WHOLE))
        except Exception:  # json_format.ParseError and friends: a value the schema cannot hold
            self.errors += 1
            return False
        for program, names in self._programs:
            if etype not in names:
                continue
            data = {name: rt.empty[name] for name in names}
            data[etype] = msg
            try:
                result = program.eval(data=data).value()
            except Exception:
                self.errors += 1
                continue
            if result is True:
                return True
            if not isinstance(result, bool):  # an error value: CEL's evaluation error
                self.errors += 1
        return False


def _union(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if a is WHOLE or b is WHOLE:
        return WHOLE
    from .cel_select import merge

    out = dict(a)
    for k, v in b.items():
        merge(out, k, v)
    return out


def _one_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
