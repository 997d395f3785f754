"""`tetrapipe check-config FILE`: every error of a config file at once, each with its line and key path.

`load_config` (what `run` uses) stops at the first error, as msgspec does.  Here the file is
walked against the `Config` structs key by key, so that each wrong key, type or value is reported,
then the checks that need compiled values (library rules, filters, CIDRs, peers, and whatever the
caller adds: Kafka and OTLP options) run on the sections that were well-formed, each on its own.

Each problem reads `FILE:LINE: message`; the message is the one `run` would give (msgspec's
`... - at `$.key.path``, or the key path the builder names), the line is that of the offending key
in the YAML (the nearest enclosing key the path resolves to).  A YAML syntax error is the one
problem of its file, with its line and column; an empty file is reported as such.
"""

from __future__ import annotations

import copy
import re
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import msgspec
import yaml

from tetrapipe.config.entries import EntryError, decode_dead_letter, decode_sink, decode_sources
from tetrapipe.config.root import (
    Config,
    ConfigFileError,
    build_classifier,
    build_filters,
    build_peer_config,
    build_tagger,
    check_peer_snapshot,
)
from tetrapipe.rules.library import SAFE_LOADER
from tetrapipe.sinks.kafka.config import KafkaSinkConfig
from tetrapipe.sinks.otlp.config import OtlpSinkConfig
from tetrapipe.transforms.filter_errors import FilterConfigError
from tetrapipe.transforms.filter_stage import compile_sink_stage

KeyPath = tuple[str | int, ...]
Check = Callable[[Config], object]
_AT = re.compile(r" - at `\$([^`]*)`$")
_CATEGORY = re.compile(r"category '([^']+)'(\S*?):")
_PATH_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*")


class Problem(msgspec.Struct, frozen=True):
    key: KeyPath | None  # where in the file; None: a builder's message, which names the key path itself
    message: str


def _render(path: str, line: int | None, message: str) -> str:
    return f"{path}:{line}: {message}" if line is not None else f"{path}: {message}"


def check_config(path: str, more: Sequence[Check] = ()) -> tuple[Config | None, list[str]]:
    """(the config when valid, else None; the problems, rendered `FILE:LINE: message`, in file order)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        raw = yaml.load(text, Loader=SAFE_LOADER)
        lines = key_lines(yaml.compose(text, Loader=SAFE_LOADER))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
        context = f" ({exc.context})" if exc.context else ""
        return None, [f"{where}: YAML syntax error: {exc.problem or exc}{context}"]
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return None, [f"{path}: {exc}"]
    if raw is None:
        return None, [f"{path}: the file is empty (no settings at all: is it the file you meant?)"]
    problems = list(structure_problems(raw, Config, ()))
    config = _well_formed_part(_pruned(raw, [p.key for p in problems if p.key is not None])) if problems \
        else msgspec.convert(raw, Config)
    config = _with_entries(config, problems)
    for check in (*_BUILTIN_CHECKS, *more):
        try:
            check(config)
        except (ConfigFileError, ValueError) as exc:
            if all(p.message != str(exc) for p in problems):  # two checks can meet the same root cause
                problems.append(Problem(None, str(exc)))
    located = [(_line_of(p.key, lines) if p.key is not None else _line_named_in(p.message, lines, raw), p.message)
               for p in problems]
    located.sort(key=lambda lm: (lm[0] is None, lm[0] or 0))
    return (None if located else config), [_render(path, line, message) for line, message in located]


def _with_entries(config: Config, problems: list[Problem]) -> Config:
    """`sources:` / `sinks:` / `dead_letter:` decoded over the registries (as load_config does); each bad entry
    is a problem (every `sinks:` entry is decoded on its own), and the run's checks go on without the entries
    -- but for the filters of the good `sinks:` entries, checked here under their own key paths."""
    decoded: dict[str, Any] = {}
    for key, decode in (("sources", decode_sources), ("dead_letter", decode_dead_letter)):
        try:
            decoded[key] = decode(getattr(config, key))
        except EntryError as exc:
            problems.append(Problem(None, str(exc)))
    sinks: dict[int, Any] = {}
    for i, raw in enumerate(config.sinks):
        try:
            sinks[i] = decode_sink(i, raw)
        except EntryError as exc:
            problems.append(Problem(None, str(exc)))
    if len(sinks) == len(config.sinks):
        decoded["sinks"] = list(sinks.values())
    else:  # the run's checks name entries by their index: they cannot take a list with holes
        for i, entry in sinks.items():
            if isinstance(entry, OtlpSinkConfig | KafkaSinkConfig):  # the types with per-sink filters
                try:
                    compile_sink_stage(f"sinks[{i}]", entry)
                except FilterConfigError as exc:
                    problems.append(Problem(None, str(exc)))
    if len(decoded) < 3:
        return msgspec.structs.replace(config, sources=[], sinks=[], dead_letter=None)
    return msgspec.structs.replace(config, **decoded)


_BUILTIN_CHECKS: tuple[Check, ...] = (
    lambda c: build_tagger(c.library),
    build_filters,
    lambda c: build_classifier(c.egress, c.egress.pod_cidrs, c.egress.service_cidrs),
    lambda c: build_peer_config(c.peers),
    lambda c: check_peer_snapshot(c.peers),
)


def structure_problems(value: Any, typ: Any, at: KeyPath) -> Iterator[Problem]:
    """Each place `value` does not fit `typ`, walking into structs and lists of them past the first error."""
    try:
        msgspec.convert(value, typ)
        return
    except msgspec.ValidationError as exc:
        error = str(exc)
    struct = _struct_in(typ, value)
    found = False
    if struct is not None and isinstance(value, dict):
        fields = {f.encode_name: f.type for f in msgspec.structs.fields(struct)}
        for key, sub in value.items():
            if key not in fields:
                found = True
                yield Problem((*at, key), f"Object contains unknown field `{key}`{_at(at)}")
            else:
                for problem in structure_problems(sub, fields[key], (*at, key)):
                    found = True
                    yield problem
    elif (item := _list_item(typ)) is not None and isinstance(value, list):
        for i, sub in enumerate(value):
            for problem in structure_problems(sub, item, (*at, i)):
                found = True
                yield problem
    if not found:  # the error is this node's own (a wrong type, a missing field, a value out of range)
        match = _AT.search(error)
        inner = _parse_path(match.group(1)) if match else ()
        message = (error[:match.start()] if match else error) + _at((*at, *inner))
        yield Problem((*at, *inner), message)


def key_lines(node: yaml.Node | None, at: KeyPath = ()) -> dict[KeyPath, int]:
    """Key path → 1-based line of its key (mapping entries) or of the item (sequence entries)."""
    out: dict[KeyPath, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*at, key.value)
            out[path] = key.start_mark.line + 1
            out.update(key_lines(value, path))
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            out[(*at, i)] = value.start_mark.line + 1
            out.update(key_lines(value, (*at, i)))
    return out


def _line_of(path: KeyPath, lines: dict[KeyPath, int]) -> int | None:
    for end in range(len(path), 0, -1):  # the deepest key the file has
        if path[:end] in lines:
            return lines[path[:end]]
    return None


def _line_named_in(message: str, lines: dict[KeyPath, int], raw: Any) -> int | None:
    """The line of the longest key path a builder's message names (`egress.pod_cidrs`, `otlp[1].filters`,
    `category 'x'.match`: the library entry with that id)."""
    best: tuple[int, int] | None = None
    named = _CATEGORY.match(message)
    candidates = [_parse_path("." + token) for token in _PATH_TOKEN.findall(message)]
    if named:
        index = _category_index(raw, named.group(1))
        if index is not None:
            candidates.append(("library", "categories", index, *_parse_path(named.group(2))))
    for path in candidates:
        for end in range(len(path), 0, -1):
            if path[:end] in lines:
                if best is None or end > best[0]:
                    best = (end, lines[path[:end]])
                break
    return best[1] if best else None


def _category_index(raw: Any, cid: str) -> int | None:
    entries = raw.get("library", {}).get("categories") if isinstance(raw, dict) else None
    if isinstance(entries, list):
        for i, entry in enumerate(entries):
            if isinstance(entry, dict) and entry.get("id") == cid:
                return i
    return None


def _parse_path(text: str) -> KeyPath:
    """`.egress.zones[0]` → ("egress", "zones", 0)."""
    return tuple(int(part[1:-1]) if part.startswith("[") else part
                 for part in re.findall(r"\[\d+\]|(?<=\.)[^.\[]+", text))


def _at(path: KeyPath) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    return f" - at `${text}`" if path else ""


def _unwrap(typ: Any) -> list[Any]:
    """The alternatives of `typ`, without Annotated and None."""
    if get_origin(typ) is Annotated:
        return _unwrap(get_args(typ)[0])
    if get_origin(typ) in (Union, types.UnionType):
        return [t for arg in get_args(typ) for t in _unwrap(arg) if t is not type(None)]
    return [typ]


def _struct_in(typ: Any, value: Any) -> type[msgspec.Struct] | None:
    if not isinstance(value, dict):
        return None
    structs = [t for t in _unwrap(typ) if isinstance(t, type) and issubclass(t, msgspec.Struct)]
    return structs[0] if len(structs) == 1 else None


def _list_item(typ: Any) -> Any:
    lists = [t for t in _unwrap(typ) if get_origin(t) is list]
    return get_args(lists[0])[0] if len(lists) == 1 else None


def _pruned(raw: Any, keys: Sequence[KeyPath]) -> Any:
    """`raw` without the offending keys (a list item: the key holding the list, so indexes in later
    messages still match the file), for the checks that need values."""
    out = copy.deepcopy(raw)
    for key in keys:
        while key and isinstance(key[-1], int):
            key = key[:-1]
        node = out
        for part in key[:-1]:
            if isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                node = node.get(part) if isinstance(node, dict) else None
        if key and isinstance(node, dict):
            node.pop(key[-1], None)
    return out


def _well_formed_part(raw: Any) -> Config:
    """The config made of the top-level sections that convert on their own (the others left at defaults)."""
    if not isinstance(raw, dict):
        return Config()
    good: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            msgspec.convert({key: value}, Config)
        except msgspec.ValidationError:
            continue
        good[key] = value
    return msgspec.convert(good, Config)
