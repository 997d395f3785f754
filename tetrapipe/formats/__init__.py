"""Output formats, by name: a processed envelope -> the bytes a sink sends (`base.Format`).

The registry is the only wiring: a sink's `format:` (and `--format`) names an entry; adding a
format is one module and one line here.  Entries are imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from tetrapipe.formats.base import Format

FORMATS: dict[str, str] = {
    "tetrapipe": "tetrapipe.formats.tetrapipe:TetrapipeFormat",  # the output contract (default)
    "summary": "tetrapipe.formats.summary:SummaryFormat",
    "ocsf": "tetrapipe.formats.siem:OcsfFormat",
    "ecs": "tetrapipe.formats.siem:EcsFormat",
}
ALIASES = {"json": "tetrapipe"}  # --format json, as before the format layer
NAMES = (*FORMATS, *ALIASES)


def build_format(name: str, *, only: frozenset[str] = frozenset(), findings: bool = False,
                 category_groups: Mapping[str, str] | None = None) -> Format:
    """The format registered under `name` (ValueError lists the known names), with its options."""
    name = ALIASES.get(name, name)
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; known: {', '.join(NAMES)}")
    module, _, attr = FORMATS[name].partition(":")
    cls: Any = getattr(importlib.import_module(module), attr)
    if name == "summary":
        return cls(only)
    if name == "ocsf":
        return cls(findings=findings, category_groups=category_groups)
    return cls()
