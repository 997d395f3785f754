"""Human-readable views of the category library, generated from it so they cannot drift.

`categories_markdown()` is the source of `docs/library.md` (a test keeps the
committed file equal to it): per category its description, use case, the
TracingPolicy that produces its events, the rule tetrapipe applies (the match
condition as bullets, `$params` resolved), the summary template and an example;
before them, which categories Tetragon's Helm export defaults hide and the fix
(`tetrapipe.rules.tetragon_export`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tetrapipe.rules.library import Category, Condition
from tetrapipe.rules.tetragon_export import markdown_section as tetragon_defaults_section

POLICIES_LINK = "../config/policies"  # relative to docs/library.md
NO_POLICY = "None: base process execution events suffice."
_FIELD_OPS = {  # operator → (phrase for one value, phrase for several)
    "equals": ("equals", "equals"),
    "in_": ("is", "is one of"),
    "prefix": ("starts with", "starts with one of"),
    "suffix": ("ends with", "ends with one of"),
    "basename_in": ("has the base name", "has one of the base names"),
    "contains": ("contains", "contains one of"),
    "regex": ("matches the regular expression", "matches the regular expression"),
}


def categories_table(categories: Sequence[Category]) -> str:
    width = max((len(c.id) for c in categories), default=2)
    gwidth = max((len(c.group) for c in categories), default=5)
    rows = [f"{'ID':<{width}}  {'GROUP':<{gwidth}}  DESCRIPTION"]
    rows += [f"{c.id:<{width}}  {c.group:<{gwidth}}  {c.description}" for c in categories]
    return "\n".join(rows) + "\n"


def categories_markdown(categories: Sequence[Category], policy_files: Mapping[str, str] | None = None) -> str:
    """The library page, deterministic for given inputs.

    `policy_files` maps a TracingPolicy name to its file name under
    `config/policies/`; by default, the shipped policies.  A category naming a
    policy that is not shipped says so instead of linking.
    """
    if policy_files is None:
        from tetrapipe.rules.policies import load_policies  # lazy: pipeline imports transforms, not the reverse

        policy_files = {name: p.path.name for name, p in load_policies().items()}
    out = ["# tetrapipe category library", "",
           "Generated from `config/library.yaml` by `tetrapipe categories --markdown`; do not edit by hand.", "",
           "Field paths in rules are relative to the event's type object (`process_kprobe`, `process_exec`, ...);",
           "`tetrapipe.egress.*` is tetrapipe's CIDR classification of the destination. `(params.NAME)` marks",
           "a value a config file can change without touching the rule.", "",
           "`tetrapipe policies render NAME` prints a policy ready for `kubectl apply -f -` (the egress policy",
           "needs the cluster's CIDRs: `--pod-cidr`, `--service-cidr`); `tetrapipe policies list` lists them.", "",
           "| id | group | title | policy |", "|---|---|---|---|"]
    out += [f"| [`{c.id}`](#{c.id}) | {c.group} | {c.title} | {f'`{c.policy}`' if c.policy else 'none'} |"
            for c in categories]
    out.append("")
    out += tetragon_defaults_section(categories)
    for c in categories:
        out += _category_section(c, policy_files)
    return "\n".join(out).rstrip("\n") + "\n"


def _category_section(c: Category, policy_files: Mapping[str, str]) -> list[str]:
    out = [f'<a id="{c.id}"></a>', "", f"## {c.title or c.id} (`{c.id}`)", "", f"**Group:** {c.group}", "",
           "### Description", "", c.description, ""]
    if c.use_case:
        out += ["### Use case", "", c.use_case, ""]
    out += ["### Policy", "", _policy_text(c.policy, policy_files), ""]
    if c.requirement:
        out += ["### Requirement", "", c.requirement, ""]
    out += ["### Rule", "", f"An event is tagged `{c.id}` when all of these hold:", "",
            *(condition_bullets(c.match, c.params) or ["- (no condition: every event)"]), ""]
    if c.summary:
        out += ["### Summary line", "", "jq string-interpolation syntax, paths from the event's root.", "",
                "```", c.summary, "```", ""]
    for case in c.summary_cases:
        out += [*_when(case.when, c.params), "", "```", case.text, "```", ""]
    if c.example:
        out += ["### Example output", "", "```", c.example, "```", ""]
    return out


def _when(cond: Condition, params: Mapping[str, Any]) -> list[str]:
    """ "When X, instead:" for a one-test condition; else a lead-in and bullets."""
    bullets = condition_bullets(cond, params)
    if len(bullets) == 1:
        return [f"When {bullets[0][2:]}, instead:"]
    return ["When all of these hold, instead:", "", *bullets]


def _policy_text(policy: str | None, policy_files: Mapping[str, str]) -> str:
    if policy is None:
        return NO_POLICY
    if policy not in policy_files:
        return f"TracingPolicy `{policy}` (not shipped with tetrapipe)."
    file = policy_files[policy]
    return f"[`config/policies/{file}`]({POLICIES_LINK}/{file}), TracingPolicy `{policy}`."


def condition_bullets(cond: Condition, params: Mapping[str, Any], indent: str = "") -> list[str]:
    """Markdown bullets for a condition: one per key, all of which must hold; nested combinators indent."""
    lines: list[str] = []
    if cond.event is not None:
        events = cond.event if isinstance(cond.event, list) else [cond.event]
        lines.append(f"{indent}- the event type is {_one_or_many(events, 'one of ')}")
    if cond.field is not None:
        lines += [f"{indent}- {text}" for text in _field_tests(cond, params)]
    for child in cond.all or []:  # "all of" inside a list that must all hold: flatten
        lines += condition_bullets(child, params, indent)
    if cond.any:
        lines.append(f"{indent}- any of:")
        lines += [line for child in cond.any for line in _child_bullets(child, params, indent + "  ")]
    if cond.not_ is not None:
        lines.append(f"{indent}- not:")
        lines += _child_bullets(cond.not_, params, indent + "  ")
    return lines


def _child_bullets(cond: Condition, params: Mapping[str, Any], indent: str) -> list[str]:
    """One bullet for a child; a child with several keys becomes an explicit "all of:" group."""
    lines = condition_bullets(cond, params, indent + "  ")
    if sum(1 for line in lines if line.startswith(indent + "  - ")) == 1:
        return [line[2:] for line in lines]  # a single top-level bullet: no need to group
    return [f"{indent}- all of:", *lines]


def _field_tests(cond: Condition, params: Mapping[str, Any]) -> list[str]:
    field = f"`{cond.field}`"
    texts = []
    for op, (single, several) in _FIELD_OPS.items():
        raw = getattr(cond, op)
        if raw is None:
            continue
        value, source = _resolve(raw, params)
        values = value if isinstance(value, list) else [value]
        phrase = single if len(values) == 1 else several
        texts.append(f"{field} {phrase} {', '.join(_code(v) for v in values)}{source}")
    if cond.present is not None:
        texts.append(f"{field} is {'present' if cond.present else 'absent'}")
    return texts


def _resolve(raw: Any, params: Mapping[str, Any]) -> tuple[Any, str]:
    """A `$name` value's param value and a "(params.name)" note; other values as is."""
    if isinstance(raw, str) and raw.startswith("$") and raw[1:] in params:
        return params[raw[1:]], f" (params.{raw[1:]})"
    return raw, ""


def _one_or_many(values: list[str], many_prefix: str) -> str:
    return (many_prefix if len(values) > 1 else "") + ", ".join(_code(v) for v in values)


def _code(value: Any) -> str:
    """A value as inline code, in YAML spelling for booleans."""
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return f"`{text}`"
