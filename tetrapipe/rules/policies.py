"""The TracingPolicies tetrapipe ships (`config/policies/*.yaml`): load, list, render.

Each file holds one `cilium.io/v1alpha1` TracingPolicy whose `metadata.name`
is what a category's `policy:` names.  A policy is a *template* when a list
item is a `${NAME}` placeholder (the egress policy's `${PODCIDR}` and
`${SERVICECIDR}`): `render()` replaces it with the cluster's CIDRs, taken from
the same sources `tetrapipe run` classifies with (`tetrapipe.config.root.resolve_cidrs`),
and refuses to produce output with a placeholder left in.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tetrapipe.rules.library import Category, Condition, Scalar, shipped_config_dir

API_VERSION = "cilium.io/v1alpha1"
KIND = "TracingPolicy"
# A Kubernetes object name: an RFC 1123 subdomain of at most 253 characters.
_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CIDR_SOURCES = {  # placeholder → what the user sets, for the error message when it is missing
    "PODCIDR": ("pod", "--pod-cidr", "POD_CIDR", "egress.pod_cidrs"),
    "SERVICECIDR": ("service", "--service-cidr", "SERVICE_CIDR", "egress.service_cidrs"),
}


class PolicyError(ValueError):
    """A user error about policies (unknown name, bad or missing CIDR, invalid file)."""


@dataclass(frozen=True)
class Policy:
    """One shipped TracingPolicy: its file, raw text (comments kept) and parsed document."""

    name: str
    path: Path
    text: str
    document: dict[str, Any]

    @property
    def placeholders(self) -> frozenset[str]:
        """The `${NAME}` placeholders in the document; empty unless it is a template."""
        return frozenset(m for s in _strings(self.document) for m in _PLACEHOLDER.findall(s))

    @property
    def kprobe_calls(self) -> list[str]:
        """The kernel functions the policy hooks (`spec.kprobes[].call`), in file order."""
        return [k["call"] for k in self.document.get("spec", {}).get("kprobes") or []]


def _strings(node: Any) -> Iterable[str]:
    """Every string value in a parsed YAML tree (keys excluded)."""
    if isinstance(node, str):
        yield node
    for child in node.values() if isinstance(node, dict) else node if isinstance(node, list) else ():
        yield from _strings(child)


def policies_dir() -> Path:
    """`config/policies/` next to the shipped library (package data in a wheel)."""
    return shipped_config_dir() / "policies"


def load_policies(directory: Path | None = None) -> dict[str, Policy]:
    """Every `*.yaml` in `directory`, by metadata.name, in file-name order.

    Raises PolicyError naming the file when one is not a single TracingPolicy
    with a valid Kubernetes name, or when two files use the same name.
    """
    directory = directory or policies_dir()
    policies: dict[str, Policy] = {}
    for path in sorted(directory.glob("*.yaml")):
        policy = _read_policy(path)
        if policy.name in policies:
            raise PolicyError(f"{path}: policy name {policy.name!r} is also used by {policies[policy.name].path}")
        policies[policy.name] = policy
    return policies


def _read_policy(path: Path) -> Policy:
    text = path.read_text(encoding="utf-8")
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: {exc}") from None
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise PolicyError(f"{path}: expected exactly one TracingPolicy document")
    doc = docs[0]
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        raise PolicyError(f"{path}: expected apiVersion {API_VERSION} and kind {KIND}")
    name = (doc.get("metadata") or {}).get("name")
    if not isinstance(name, str) or len(name) > 253 or not _K8S_NAME.fullmatch(name):
        raise PolicyError(f"{path}: metadata.name {name!r} is not a valid Kubernetes object name")
    return Policy(name, path, text, doc)


def condition_values(cond: Condition, field: str, params: Mapping[str, Any]) -> list[Scalar]:
    """The `equals`/`in` values that `cond` (anywhere in its tree) tests `field` against.

    `$name` values are resolved from `params`, as the rule compiler does.
    """
    found: list[Scalar] = []
    if cond.field == field:
        for raw in (cond.equals, cond.in_):
            value = params.get(raw[1:], raw) if isinstance(raw, str) and raw.startswith("$") else raw
            if value is not None:
                found += value if isinstance(value, list) else [value]
    for child in [*(cond.all or []), *(cond.any or []), *([cond.not_] if cond.not_ else [])]:
        found += condition_values(child, field, params)
    return found


def policy_categories(categories: Sequence[Category]) -> dict[str, list[str]]:
    """Policy name → ids of the categories naming it in `policy:` or in a `policy_name` test."""
    named: dict[str, list[str]] = {}
    for cat in categories:
        names = [cat.policy] if cat.policy else []
        names += [str(v) for v in condition_values(cat.match, "policy_name", cat.params)]
        for name in dict.fromkeys(names):
            named.setdefault(name, []).append(cat.id)
    return named


def canonical_cidrs(cidrs: Iterable[str]) -> list[str]:
    """Each CIDR (or address) in canonical form; PolicyError naming the first invalid one."""
    out = []
    for cidr in cidrs:
        try:  # strict=False: host bits are tolerated, as the classifier does
            out.append(str(ipaddress.ip_network(cidr.strip(), strict=False)))
        except ValueError:
            raise PolicyError(f"invalid CIDR {cidr!r}") from None
    return out


def render(names: Sequence[str], pod_cidrs: Sequence[str], service_cidrs: Sequence[str],
           policies: Mapping[str, Policy] | None = None) -> dict[str, str]:
    """Policy name → YAML ready for `kubectl apply`, for `names` (all when empty).

    A name is a policy's metadata.name or its file's stem (`egress` for egress.yaml).
    Non-templates are their file, unchanged.  Templates get their placeholders
    replaced by the validated CIDRs, plus `::1` after `127.0.0.1` when any CIDR
    is IPv6.  Raises PolicyError for an unknown name, an invalid CIDR, or CIDRs
    a selected template needs but that were not given.
    """
    policies = load_policies() if policies is None else policies
    by_file = {p.path.stem: name for name, p in policies.items()}
    names = [by_file.get(n, n) if n not in policies else n for n in names]  # `egress` names egress.yaml
    unknown = [n for n in names if n not in policies]
    if unknown:
        raise PolicyError(f"unknown policy {', '.join(map(repr, unknown))}; known: {', '.join(policies)}")
    values = {"PODCIDR": canonical_cidrs(pod_cidrs), "SERVICECIDR": canonical_cidrs(service_cidrs)}
    selected = [policies[n] for n in dict.fromkeys(names or policies)]
    return {p.name: _render_template(p, values) if p.placeholders else p.text for p in selected}


def _render_template(policy: Policy, values: Mapping[str, list[str]]) -> str:
    for placeholder in sorted(policy.placeholders):
        if placeholder not in values:
            raise PolicyError(f"{policy.path}: unknown placeholder ${{{placeholder}}}")
        if not values[placeholder]:
            kind, flag, env, key = _CIDR_SOURCES[placeholder]
            raise PolicyError(f"policy {policy.name} needs the cluster's {kind} CIDRs: pass {flag} CIDR, "
                              f"set {env} (comma-separated), or set {key} in the --config file "
                              "(or name only the other policies to render)")
    ipv6 = any(":" in cidr for cidrs in values.values() for cidr in cidrs)  # canonical IPv6 always has ":"
    document = _substitute(policy.document, values, ipv6)
    # The file's leading comments say what the policy feeds; keep them, and record the inputs.
    header = _leading_comments(policy.text)
    header.append(f"# Rendered by `tetrapipe policies render` from {policy.path.name}: pod CIDRs "
                  f"{', '.join(values['PODCIDR'])}; service CIDRs {', '.join(values['SERVICECIDR'])}.")
    return "\n".join(header) + "\n" + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def _leading_comments(text: str) -> list[str]:
    """The file's leading comment block, without its template instructions (`# TEMPLATE` on)."""
    lines = list(itertools.takewhile(lambda line: line.startswith("#"), text.splitlines()))
    end = next((i for i, line in enumerate(lines) if line.startswith("# TEMPLATE")), len(lines))
    lines = lines[:end]
    while lines and lines[-1].strip() == "#":
        lines.pop()
    return lines


def _substitute(node: Any, values: Mapping[str, list[str]], ipv6: bool) -> Any:
    """A copy of `node` with whole-item placeholders in lists expanded to their values."""
    if isinstance(node, dict):
        return {k: _substitute(v, values, ipv6) for k, v in node.items()}
    if not isinstance(node, list):
        if isinstance(node, str) and _PLACEHOLDER.search(node):
            raise PolicyError(f"placeholder in {node!r}: a placeholder must be a whole list item")
        return node
    out: list[Any] = []
    for item in node:
        match = _PLACEHOLDER.fullmatch(item) if isinstance(item, str) else None
        if match:
            out += values[match.group(1)]
            continue
        out.append(_substitute(item, values, ipv6))
        if ipv6 and item == "127.0.0.1" and "::1" not in node:  # IPv6 loopback is local too
            out.append("::1")
    return out


def policies_table(policies: Mapping[str, Policy], categories: Sequence[Category]) -> str:
    """NAME / FILE / RENDER / CATEGORIES rows, then any policy a category names that is not shipped."""
    used = policy_categories(categories)
    rows = [("NAME", "FILE", "RENDER", "CATEGORIES")]
    rows += [(p.name, p.path.name, "needs CIDRs" if p.placeholders else "as is", ", ".join(used.get(name, ["-"])))
             for name, p in policies.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
             for row in rows]
    missing = {name: ids for name, ids in used.items() if name not in policies}
    lines += [f"# not shipped: {name} (named by {', '.join(ids)})" for name, ids in missing.items()]
    return "\n".join(lines) + "\n"


def write_rendered(rendered: Mapping[str, str], directory: Path) -> list[Path]:
    """Write each policy to `directory/NAME.yaml` (creating the directory); the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in rendered.items():
        path = directory / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
