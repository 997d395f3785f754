"""`tag`: the library categories an event belongs to, with their summary lines.

`Tagger` is compiled once from the library (`transforms.library`): each
category's match becomes one predicate (`transforms.rules`), indexed by the
event types it can match, and its summary templates are compiled.  `tag()` is
pure: it reads the decoded event (and the `classify` result already attached
to it) and returns a `Tags`; it does no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.codec import Decoded
from transforms.library import Category
from transforms.rules import Predicate, compile_condition, event_types
from transforms.summary import Template


class CompiledCategory:
    __slots__ = ("id", "group", "category", "predicate", "summary", "cases")

    def __init__(self, category: Category, where: str) -> None:
        self.id = category.id
        self.group = category.group
        self.category = category
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


class Tags:
    """The categories of one event (sorted ids), their groups and summaries."""

    __slots__ = ("categories", "groups", "summaries")

    def __init__(self, categories: tuple[str, ...], groups: tuple[str, ...], summaries: dict[str, str]) -> None:
        self.categories = categories
        self.groups = groups
        self.summaries = summaries


NO_TAGS = Tags((), (), {})


class Tagger:
    """Compiled library. Guarantee: the same event always gets the same tags."""

    def __init__(self, categories: Sequence[Category]) -> None:
        self.categories = tuple(CompiledCategory(c, f"category {c.id!r}") for c in categories)
        self.ids = frozenset(c.id for c in self.categories)
        self.groups = {c.id: c.group for c in self.categories}
        self._any_type = tuple(c for c in self.categories if event_types(c.category.match) is None)
        self._by_type: dict[str, tuple[CompiledCategory, ...]] = {}
        for compiled in self.categories:
            for etype in event_types(compiled.category.match) or ():
                self._by_type.setdefault(etype, ())
        for etype in self._by_type:
            self._by_type[etype] = tuple(
                c for c in self.categories
                if (types := event_types(c.category.match)) is None or etype in types
            )

    def candidates(self, etype: str) -> tuple[CompiledCategory, ...]:
        return self._by_type.get(etype, self._any_type)

    def tag(self, decoded: Decoded) -> Tags:
        hits = [c for c in self.candidates(decoded.etype) if c.predicate(decoded)]
        if not hits:
            return NO_TAGS
        hits.sort(key=lambda c: c.id)
        summaries: dict[str, str] = {}
        for c in hits:
            line = c.render_summary(decoded)
            if line is not None:
                summaries[c.id] = line
        groups = tuple(sorted({c.group for c in hits}))
        return Tags(tuple(c.id for c in hits), groups, summaries)
