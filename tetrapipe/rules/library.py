"""The category library: its schema, loading, user overrides, and the shipped file.

`load_library(overrides)` returns validated `Category` structs: the shipped
`config/library.yaml` (or a replacement file), then the user's additions and
overrides by id, minus disabled ids.  Every error names the key path and the
file it came from; nothing is compiled here (see `tetrapipe.rules.conditions`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path as FsPath
from typing import Any

import msgspec
import yaml

ParamValue = list[str | int] | str | int | bool
Scalar = str | int | bool


# libyaml's safe loader when PyYAML was built with it (10x faster than the pure-Python one:
# the library is read at every start), else the pure-Python safe loader.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Condition(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One node of a match expression; several keys in one node must all hold."""

    event: str | list[str] | None = None
    field: str | None = None
    equals: Scalar | None = None
    in_: list[Scalar] | str | None = msgspec.field(default=None, name="in")
    prefix: list[str] | str | None = None
    suffix: list[str] | str | None = None
    basename_in: list[str] | str | None = None
    contains: list[str] | str | None = None
    regex: str | None = None
    present: bool | None = None
    all: list[Condition] | None = None
    any: list[Condition] | None = None
    not_: Condition | None = msgspec.field(default=None, name="not")


class SummaryCase(msgspec.Struct, forbid_unknown_fields=True):
    when: Condition
    text: str


class Category(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    id: str
    group: str
    match: Condition
    title: str = ""
    description: str = ""
    use_case: str = ""
    policy: str | None = None
    requirement: str | None = None
    params: dict[str, ParamValue] = {}
    summary: str | None = None
    summary_cases: list[SummaryCase] = []
    example: str | None = None


class CategoryOverride(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A user's entry: an existing id with the fields to replace, or a new category."""

    id: str
    group: str | None = None
    match: Condition | None = None
    title: str | None = None
    description: str | None = None
    use_case: str | None = None
    policy: str | None = None
    requirement: str | None = None
    params: dict[str, ParamValue] | None = None
    summary: str | None = None
    summary_cases: list[SummaryCase] | None = None
    example: str | None = None


class LibraryFile(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    categories: list[Category]


class LibraryConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The `library:` section of a tetrapipe config file."""

    path: str | None = None  # replaces the shipped library file
    categories: list[CategoryOverride] = []
    disable: list[str] = []


class LibraryError(ValueError):
    """An invalid library; the message names the file and key path."""


def shipped_config_dir() -> FsPath:
    """The shipped `config/` directory: package data in a wheel, the repo's in a checkout."""
    packaged = resources.files("tetrapipe") / "shipped_config"
    if packaged.is_dir():
        return FsPath(str(packaged))
    return FsPath(__file__).resolve().parents[2] / "config"


def read_library_file(path: FsPath) -> list[Category]:
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        raise LibraryError(f"{path}: {exc}") from None
    try:
        return msgspec.convert(raw, LibraryFile).categories
    except msgspec.ValidationError as exc:
        raise LibraryError(f"{path}: {exc}") from None


def load_library(config: LibraryConfig | None = None) -> list[Category]:
    """Shipped (or replaced) library + overrides − disabled, in library order."""
    config = config or LibraryConfig()
    path = FsPath(config.path) if config.path else shipped_config_dir() / "library.yaml"
    by_id: dict[str, Category] = {}
    for cat in read_library_file(path):
        if cat.id in by_id:
            raise LibraryError(f"{path}: category id {cat.id!r} is defined twice")
        by_id[cat.id] = cat
    for index, override in enumerate(config.categories):
        where = f"library.categories[{index}] (id {override.id!r})"
        by_id[override.id] = _apply_override(by_id.get(override.id), override, where)
    for cid in config.disable:
        if cid not in by_id:
            raise LibraryError(f"library.disable: unknown category {cid!r}; known: {', '.join(by_id)}")
        del by_id[cid]
    return list(by_id.values())


def _apply_override(base: Category | None, override: CategoryOverride, where: str) -> Category:
    changes: dict[str, Any] = {
        f: getattr(override, f) for f in override.__struct_fields__ if getattr(override, f) is not None
    }
    if base is None:
        missing = [f for f in ("group", "match") if f not in changes]
        if missing:
            raise LibraryError(f"{where}: a new category needs {' and '.join(missing)}")
        return Category(**changes)
    if "params" in changes:
        changes["params"] = {**base.params, **changes["params"]}
    return msgspec.structs.replace(base, **changes)
