"""`tag`: the library categories an event belongs to, with their summary lines.

`Tagger` is compiled once from the library (`tetrapipe.rules.library`): for each
event type, the categories that can match it are compiled together into one
generated function (`tetrapipe.rules.conditions.compile_matcher`) that reads each field
once; bodies that did not fit the typed model use per-category predicates.
Summary templates are compiled too (`tetrapipe.rules.summary`).  `tag()` is pure:
it reads the decoded event (and the `classify` result already attached to it)
and returns a `Tags`; it does no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from tetrapipe.event.decode import Decoded
from tetrapipe.event.tags import NO_TAGS, Tags, tags_head
from tetrapipe.rules.conditions import Predicate, compile_condition, compile_matcher, event_types
from tetrapipe.rules.library import Category
from tetrapipe.rules.summary import Template

_encode = msgspec.json.Encoder().encode


class CompiledCategory:
    __slots__ = ("id", "group", "category", "types", "predicate", "summary", "cases")

    def __init__(self, category: Category, where: str) -> None:
        self.id = category.id
        self.group = category.group
        self.category = category
        self.types = event_types(category.match)
        self.predicate: Predicate = compile_condition(category.match, category.params, f"{where}.match")
        self.summary = Template(category.summary, f"{where}.summary") if category.summary else None
        self.cases = tuple(
            (compile_condition(c.when, category.params, f"{where}.summary_cases[{i}].when"),
             Template(c.text, f"{where}.summary_cases[{i}].text"))
            for i, c in enumerate(category.summary_cases)
        )

    def render_summary(self, decoded: Decoded) -> str | None:
        for when, template in self.cases:
            if when(decoded):
                return template.render(decoded)
        return self.summary.render(decoded) if self.summary is not None else None


class _TypeMatcher:
    """The categories that can match one event type, sorted by id, and their generated matcher."""

    __slots__ = ("categories", "fast", "_shapes")

    def __init__(self, categories: tuple[CompiledCategory, ...]) -> None:
        self.categories = categories
        self.fast: Callable[[Any], list[int]] | None = compile_matcher(
            [(c.category.match, c.category.params, f"category {c.id!r}.match", c.types is not None)
             for c in categories]) if categories else None
        self._shapes: dict[tuple[int, ...], tuple[tuple[CompiledCategory, ...], tuple[str, ...],
                                                  tuple[str, ...], bytes]] = {}

    def shape(self, hits: tuple[int, ...]) -> tuple[tuple[CompiledCategory, ...], tuple[str, ...],
                                                    tuple[str, ...], bytes]:
        """Per distinct set of hits: the categories, ids, groups and JSON head (memoised, bounded by 2^n)."""
        found = self._shapes.get(hits)
        if found is None:
            cats = tuple(self.categories[i] for i in hits)
            ids = tuple(c.id for c in cats)
            groups = tuple(sorted({c.group for c in cats}))
            found = (cats, ids, groups, tags_head(ids, groups))
            self._shapes[hits] = found
        return found


class Tagger:
    """Compiled library. Guarantee: the same event always gets the same tags."""

    def __init__(self, categories: Sequence[Category]) -> None:
        self.categories = tuple(CompiledCategory(c, f"category {c.id!r}") for c in categories)
        self.ids = frozenset(c.id for c in self.categories)
        if len(self.ids) != len(self.categories):
            raise ValueError("category ids must be unique")
        self.groups = {c.id: c.group for c in self.categories}
        ordered = sorted(self.categories, key=lambda c: c.id)
        typed = {t for c in ordered for t in (c.types or ())}
        self._by_type = {t: _TypeMatcher(tuple(c for c in ordered if c.types is None or t in c.types))
                         for t in typed}
        self._other = _TypeMatcher(tuple(c for c in ordered if c.types is None))

    def candidates(self, etype: str) -> tuple[CompiledCategory, ...]:
        return self._by_type.get(etype, self._other).categories

    def tag(self, decoded: Decoded) -> Tags:
        matcher = self._by_type.get(decoded.etype, self._other)
        if matcher.fast is None:
            return NO_TAGS
        if type(decoded.vbody) is not dict:
            hits = matcher.fast(decoded)
        else:  # the body did not fit the typed model: evaluate rule by rule on the generic view
            hits = [i for i, c in enumerate(matcher.categories) if c.predicate(decoded)]
        if not hits:
            return NO_TAGS
        cats, ids, groups, head = matcher.shape(tuple(hits))
        summaries: dict[str, str] = {}
        for c in cats:
            line = c.render_summary(decoded)
            if line is not None:
                summaries[c.id] = line
        return Tags(ids, groups, summaries, head)
