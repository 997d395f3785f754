"""Human-readable views of the category library, generated from it so they cannot drift."""

from __future__ import annotations

from collections.abc import Sequence

from transforms.library import Category


def categories_table(categories: Sequence[Category]) -> str:
    width = max((len(c.id) for c in categories), default=2)
    gwidth = max((len(c.group) for c in categories), default=5)
    rows = [f"{'ID':<{width}}  {'GROUP':<{gwidth}}  DESCRIPTION"]
    rows += [f"{c.id:<{width}}  {c.group:<{gwidth}}  {c.description}" for c in categories]
    return "\n".join(rows) + "\n"


def categories_markdown(categories: Sequence[Category]) -> str:
    """The library page: per category, the seed's structure, from the library data."""
    out = ["# tetrapipe category library", "",
           "Generated from `config/library.yaml` by `tetrapipe categories --markdown`; do not edit by hand.", "",
           "| id | group | title | policy |", "|---|---|---|---|"]
    out += [f"| `{c.id}` | {c.group} | {c.title} | {c.policy or 'none (process events)'} |" for c in categories]
    for c in categories:
        out += ["", f"## {c.title or c.id} (`{c.id}`)", "", f"**Group:** {c.group}", "",
                "### Description", "", c.description, ""]
        if c.use_case:
            out += ["### Use case", "", c.use_case, ""]
        out += ["### Policy", "",
                f"TracingPolicy `{c.policy}`." if c.policy else
                "None: standard process execution events suffice.", ""]
        if c.requirement:
            out += ["### Requirement", "", c.requirement, ""]
        if c.params:
            out += ["### Parameters", ""] + [f"- `{k}`: `{v}`" for k, v in c.params.items()] + [""]
        if c.summary:
            out += ["### Summary line (jq interpolation syntax)", "", "```", c.summary, "```", ""]
        if c.example:
            out += ["### Example output", "", "```", c.example, "```", ""]
    return "\n".join(out).rstrip("\n") + "\n"
