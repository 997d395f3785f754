"""A strict ECS 9.4 validator for tests, reading Elastic's own field list (ecs_flat-9.4.0.yml).

`tests/data/ecs/ecs_flat-9.4.0.yml` is a verbatim copy of the ECS repository's generated flat
field list (Apache-2.0, LICENSE.txt beside it).  Checked for one document:

- every leaf (nested objects flattened to dotted names) is an ECS field, or under one of the
  allowed custom prefixes (`tetragon.`, `tetrapipe.`), or inside an ECS `object`/`flattened`/
  `nested` field (free-form by definition);
- the value has a type the field's Elasticsearch type accepts (keyword-like → string, long →
  integer, float → number, boolean, ip → a valid address, date → RFC 3339 text or epoch ms);
- fields whose ECS definition normalizes to an array are arrays, others are not;
- `allowed_values` hold (`event.kind`, `event.category`, `event.type`, `event.outcome`; `event.kind`
  `signal` is listed but reserved for Elastic's own alerts, so refused), and every
  `event.type` is among the `expected_event_types` of every `event.category` of the document;
- the required fields (`@timestamp`, `ecs.version`) are present.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ECS_FLAT = Path(__file__).resolve().parents[1] / "data" / "ecs" / "ecs_flat-9.4.0.yml"
CUSTOM_PREFIXES = ("tetragon.", "tetrapipe.")
_STRINGS = {"keyword", "wildcard", "match_only_text", "constant_keyword", "text"}
_INTEGERS = {"long", "integer", "short", "byte", "unsigned_long"}
_NUMBERS = {"float", "double", "scaled_float", "half_float"}
_FREE_FORM = {"object", "flattened", "nested"}


@cache
def fields() -> dict[str, dict[str, Any]]:
    with ECS_FLAT.open() as f:
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def flatten(doc: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted name, value) of each leaf; a value inside a free-form ECS field is one leaf."""
    out: list[tuple[str, Any]] = []
    for k, v in doc.items():
        name = prefix + k
        spec = fields().get(name)
        if isinstance(v, dict) and (spec is None or spec["type"] not in _FREE_FORM) and v:
            out.extend(flatten(v, name + "."))
        else:
            out.append((name, v))
    return out


def validate(doc: dict[str, Any]) -> list[str]:
    """All problems of one ECS document (an empty list when it is valid)."""
    errors: list[str] = []
    flat = dict(flatten(doc))
    for name, spec in fields().items():
        if spec.get("required") and name not in flat:
            errors.append(f"{name}: required, missing")
    for name, value in flat.items():
        if name.startswith(CUSTOM_PREFIXES):
            continue
        field = fields().get(name)
        if field is None:
            errors.append(f"{name}: not an ECS 9.4 field")
            continue
        errors.extend(_check(name, field, value))
    errors.extend(_check_categorization(flat))
    return errors


def _check(name: str, spec: dict[str, Any], value: Any) -> list[str]:
    is_array = "array" in (spec.get("normalize") or ())
    if isinstance(value, (list, tuple)):
        if not is_array and spec["type"] != "nested":
            return [f"{name}: an array, but ECS does not normalize {name} to one"]
        items = list(value)
    elif is_array:
        return [f"{name}: ECS normalizes it to an array, got {type(value).__name__}"]
    else:
        items = [value]
    errors = []
    for item in items:
        problem = _type_problem(spec["type"], item)
        if problem:
            errors.append(f"{name}: {problem}")
        allowed = spec.get("allowed_values")
        if allowed and item not in {a["name"] for a in allowed}:
            errors.append(f"{name}: {item!r} not among ECS's allowed values")
        if name == "event.kind" and item == "signal":  # allowed_values lists it, reserved for Kibana's alerts
            errors.append("event.kind: 'signal' is reserved for Elastic's own alerts")
    return errors


def _type_problem(es_type: str, v: Any) -> str | None:
    if es_type in _STRINGS:
        return None if type(v) is str else f"{es_type} needs a string, got {v!r}"
    if es_type in _INTEGERS:
        return None if type(v) is int else f"{es_type} needs an integer, got {v!r}"
    if es_type in _NUMBERS:
        return None if type(v) in (int, float) else f"{es_type} needs a number, got {v!r}"
    if es_type == "boolean":
        return None if type(v) is bool else f"boolean needs true/false, got {v!r}"
    if es_type == "ip":
        try:
            ipaddress.ip_address(v)
        except ValueError:
            return f"ip needs an IP address, got {v!r}"
        return None
    if es_type == "date":
        if type(v) is int:
            return None
        try:
            datetime.fromisoformat(_to_micros(v))
        except (TypeError, ValueError):
            return f"date needs RFC 3339 text or epoch ms, got {v!r}"
        return None
    if es_type in _FREE_FORM:
        return None if isinstance(v, (dict, list)) else f"{es_type} needs an object, got {v!r}"
    return f"type {es_type} not handled by this validator"


def _to_micros(text: str) -> str:
    """Python parses at most 6 fraction digits; Elasticsearch's date type takes 9 (nanoseconds)."""
    head, dot, rest = text.partition(".")
    if not dot:
        return text
    digits = len(rest) - len(rest.lstrip("0123456789"))
    return f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}"


def _check_categorization(flat: dict[str, Any]) -> list[str]:
    categories = flat.get("event.category") or []
    types = flat.get("event.type") or []
    expected = {a["name"]: set(a.get("expected_event_types") or ())
                for a in fields()["event.category"]["allowed_values"]}
    errors = []
    for category in categories:
        for t in types:
            if category in expected and t not in expected[category]:
                errors.append(f"event.type {t!r} is not expected with event.category {category!r}")
    return errors
