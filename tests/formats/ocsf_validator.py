"""A strict OCSF 1.7.0 validator for tests, independent of the mapping code.

Schema source: the compiled schema pydantic-ocsf ships (`ocsf/schemas/v1_7_0.json`: events,
objects, dictionary, categories) plus the profile definitions of the OCSF schema repository at
tag v1.7.0 (copied to tests/data/ocsf/profiles/, Apache-2.0; the shipped JSON names profiles but
does not define their attributes).  Inheritance (`extends`) is resolved the way the OCSF compiler
does: a child's attribute spec overrides its parent's keys, and enums are merged (so
`process_activity.activity_id` has 0, 1-5 and 99, and `device.type_id` inherits endpoint's).

Checked for every event and every nested object: each attribute exists in its class/object (or
in a profile the class includes and `metadata.profiles` lists), required attributes are present,
`at_least_one`/`just_one` constraints hold, values have the attribute's type (objects recursively,
arrays, integers, booleans, timestamps as integers, ports in range, IPs and hashes by the schema's
regular expressions), enum ids are defined, an id's caption sibling (e.g. `activity_name`) matches
the enum's caption unless the id is 99 (Other), and the classification is consistent:
`class_uid` = category_uid × 1000 + class number, `type_uid` = class_uid × 100 + activity_id.

pydantic-ocsf's own models are used as a second opinion in the tests (`pydantic_errors`).
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

PROFILES_DIR = Path(__file__).resolve().parents[1] / "data" / "ocsf" / "profiles"
_INT_TYPES = {"integer_t", "long_t", "timestamp_t", "port_t"}
_CLASSIFICATION = frozenset({"class_uid", "category_uid"})  # base_event's enums ({0}) are replaced per class


@cache
def schema() -> dict[str, Any]:
    return json.loads(resources.files("ocsf").joinpath("schemas/v1_7_0.json").read_text())


@cache
def profile_attributes(name: str) -> dict[str, Any]:
    return json.loads((PROFILES_DIR / f"{name}.json").read_text())["attributes"]


def _merge(base: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    merged = {**base, **spec}
    if "enum" in base and "enum" in spec:
        merged["enum"] = {**base["enum"], **spec["enum"]}
    return merged


@cache
def resolved(table: str, name: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any], frozenset[str]]:
    """(attributes by name, constraints, profile names) of an event class or object, inheritance resolved."""
    specs, n = [], name
    while n:
        spec = schema()[table][n]
        specs.append(spec)
        n = spec.get("extends")
    dictionary = schema()["dictionary"]["attributes"]
    attrs: dict[str, dict[str, Any]] = {}
    constraints: dict[str, Any] = {}
    profiles: set[str] = set()
    for spec in reversed(specs):
        constraints.update(spec.get("constraints") or {})
        for attr, a in spec.get("attributes", {}).items():
            if attr == "$include":
                profiles.update(Path(p).stem for p in a)
                continue
            attrs[attr] = _merge(attrs.get(attr) or dict(dictionary.get(attr, {})), a)
        profiles.update(spec.get("profiles") or ())
    own = set(attrs)
    for profile in sorted(profiles):
        for attr, a in profile_attributes(profile).items():
            if attr not in own:  # an attribute the class defines itself does not need the profile
                attrs[attr] = {**_merge(attrs.get(attr) or dict(dictionary.get(attr, {})), a), "_profile": profile}
    return attrs, constraints, frozenset(profiles)


def class_name_of(event: dict[str, Any]) -> str:
    """The schema name of an event's class from its class_uid."""
    uid = event.get("class_uid")
    if uid == 0:
        return "base_event"
    if type(uid) is not int:
        raise AssertionError(f"class_uid {uid!r} is not an integer")
    categories = {v["uid"]: k for k, v in schema()["categories_meta"]["attributes"].items()}
    for name, spec in schema()["events"].items():
        cat = _category_of(name)
        if spec.get("uid") is not None and cat is not None and categories.get(uid // 1000) == cat \
                and spec["uid"] == uid % 1000:
            return name
    raise AssertionError(f"no OCSF 1.7.0 class has class_uid {uid}")


def _category_of(name: str) -> str | None:
    spec = schema()["events"][name]
    while spec is not None:
        if spec.get("category"):
            return spec["category"]
        spec = schema()["events"].get(spec.get("extends"))
    return None


def validate(event: dict[str, Any]) -> list[str]:
    """All problems of one OCSF event (an empty list when it is valid)."""
    errors: list[str] = []
    try:
        name = class_name_of(event)
    except AssertionError as e:
        return [str(e)]
    categories = schema()["categories_meta"]["attributes"]
    cat = _category_of(name)
    expected_cat = categories[cat]["uid"] if cat in categories else 0
    if event.get("category_uid") != expected_cat:
        errors.append(f"category_uid {event.get('category_uid')} != {expected_cat} for {name}")
    if event.get("type_uid") != event.get("class_uid", 0) * 100 + event.get("activity_id", -1):
        errors.append(f"type_uid {event.get('type_uid')} != class_uid * 100 + activity_id")
    meta = event.get("metadata") or {}
    if meta.get("version") != "1.7.0":
        errors.append(f"metadata.version {meta.get('version')!r}")
    used_profiles = frozenset(meta.get("profiles") or ())
    _check_object(event, "events", name, "", used_profiles, errors)
    return errors


def _check_object(value: dict[str, Any], table: str, name: str, path: str, used_profiles: frozenset[str],
                  errors: list[str]) -> None:
    attrs, constraints, _ = resolved(table, name)
    for attr, spec in attrs.items():
        profile = spec.get("_profile")
        if spec.get("requirement") == "required" and attr not in value and (not profile or profile in used_profiles):
            errors.append(f"{path}{attr}: required by {name}, missing")
    group = constraints.get("at_least_one")
    if group and not any(a in value for a in group):
        errors.append(f"{path or name}: needs at least one of {group}")
    group = constraints.get("just_one")
    if group and sum(a in value for a in group) != 1:
        errors.append(f"{path or name}: needs exactly one of {group}")
    for attr, v in value.items():
        found = attrs.get(attr)
        where = f"{path}{attr}"
        if found is None:
            errors.append(f"{where}: not an attribute of {name}")
            continue
        profile = found.get("_profile")
        if profile and profile not in used_profiles:
            errors.append(f"{where}: from profile {profile!r}, not listed in metadata.profiles")
        _check_value(v, found, attr, attrs, value, where, used_profiles, errors)


def _check_value(v: Any, spec: dict[str, Any], attr: str, attrs: dict[str, Any], owner: dict[str, Any], where: str,
                 used_profiles: frozenset[str], errors: list[str]) -> None:
    if spec.get("is_array"):
        if not isinstance(v, (list, tuple)):
            errors.append(f"{where}: expected an array, got {type(v).__name__}")
            return
        for i, item in enumerate(v):
            _check_scalar(item, spec, attr, attrs, owner, f"{where}[{i}]", used_profiles, errors)
        return
    if isinstance(v, (list, tuple)):
        errors.append(f"{where}: an array where {spec.get('type')} is expected")
        return
    _check_scalar(v, spec, attr, attrs, owner, where, used_profiles, errors)


def _check_scalar(v: Any, spec: dict[str, Any], attr: str, attrs: dict[str, Any], owner: dict[str, Any],
                  where: str, used_profiles: frozenset[str], errors: list[str]) -> None:
    t = spec.get("type", "string_t")
    objects = schema()["objects"]
    if t == "object" or t == "json_t":
        if t == "object" and not isinstance(v, dict):
            errors.append(f"{where}: expected an object")
        return
    if t in objects:
        if not isinstance(v, dict):
            errors.append(f"{where}: expected object {t}, got {type(v).__name__}")
        else:
            _check_object(v, "objects", t, where + ".", used_profiles, errors)
        return
    types = schema()["dictionary"]["types"]["attributes"]
    base = types.get(t, {}).get("type", t)
    if t in _INT_TYPES or base in _INT_TYPES:
        if type(v) is not int:
            errors.append(f"{where}: expected {t} (integer), got {v!r}")
            return
        lo_hi = types.get(t, {}).get("range")
        if lo_hi and not lo_hi[0] <= v <= lo_hi[1]:
            errors.append(f"{where}: {v} outside {lo_hi}")
    elif t == "boolean_t":
        if type(v) is not bool:
            errors.append(f"{where}: expected a boolean, got {v!r}")
    elif t == "float_t":
        if type(v) not in (int, float):
            errors.append(f"{where}: expected a number, got {v!r}")
    else:
        if type(v) is not str:
            errors.append(f"{where}: expected {t} (string), got {v!r}")
            return
        regex = types.get(t, {}).get("regex")
        if regex and not re.search(regex, v):
            errors.append(f"{where}: {v!r} does not match {t}")
        max_len = types.get(t, {}).get("max_len")
        if max_len and len(v) > max_len:
            errors.append(f"{where}: longer than {max_len}")
    enum = spec.get("enum")
    if enum is not None and attr not in _CLASSIFICATION:  # those are checked against the class itself
        if str(v) not in enum:
            errors.append(f"{where}: {v!r} not in enum {sorted(enum, key=int)}")
        elif attr.endswith("_id") and v != 99:
            sibling = spec.get("sibling") or attr[:-3]
            label = owner.get(sibling)
            if label is not None and label != enum[str(v)]["caption"]:
                errors.append(f"{where}: {v} is {enum[str(v)]['caption']!r}, sibling {sibling!r} says {label!r}")


_MODEL_CLASSES = ("base_event", "file_activity", "kernel_extension_activity", "kernel_activity", "module_activity",
                  "process_activity", "event_log_actvity", "network_activity", "detection_finding")


@cache
def _models() -> dict[str, Any]:
    """pydantic-ocsf's models of the classes the mapping uses, forward references resolved.

    Its models are created lazily and resolve references to models created later only on a
    rebuild: create them all first, then rebuild once.
    """
    import importlib

    version = importlib.import_module("ocsf.v1_7_0")
    models = {n: getattr(version.events, "".join(p.capitalize() for p in n.split("_"))) for n in _MODEL_CLASSES}
    version.rebuild_all()
    return models


def pydantic_errors(event: dict[str, Any]) -> list[dict[str, Any]]:
    """pydantic-ocsf's model validation of one event: its error dicts (empty when valid)."""
    from pydantic import ValidationError

    try:
        _models()[class_name_of(event)].model_validate(json.loads(json.dumps(event)))
    except ValidationError as e:
        return e.errors()  # type: ignore[return-value]
    return []
