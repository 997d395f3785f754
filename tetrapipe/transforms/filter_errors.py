"""Errors of the filter engines.

``FilterConfigError`` is raised at construction for anything wrong in a filter configuration: its
message starts with the path of the offending value, e.g.
``filters.allow[2].binary_regex[0]: missing ): (abc``.  Nothing is raised per event for a
configuration problem: a configuration either compiles whole or not at all.
"""

from __future__ import annotations


class FilterConfigError(ValueError):
    """A filter configuration that cannot be compiled; ``path`` names the offending value."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class FieldFilterError(ValueError):
    """An event a field filter cannot be applied to (its event object is not a JSON object)."""
