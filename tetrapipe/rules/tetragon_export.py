"""What Tetragon's Helm chart defaults hide from the category library, and the Helm values that fix it.

Tetragon's chart (install/kubernetes/tetragon/values.yaml) exports JSON with
- `tetragon.exportAllowList` = `{"event_set":["PROCESS_EXEC", "PROCESS_EXIT", "PROCESS_KPROBE",
  "PROCESS_UPROBE", "PROCESS_TRACEPOINT", "PROCESS_LSM"]}`: no `PROCESS_LOADER`, so a category
  needing `process_loader` events (`library`) can never fire;
- `tetragon.exportDenyList` = `{"health_check":true}` and `{"namespace":["", "cilium", "kube-system"]}`:
  namespace `""` is the host, so what runs on the node itself (sudo, set-user-ID binaries, setuid to
  root, sshd, module and BPF loads by host tools) never reaches `tetragon.log`.

The allow-list part is computed from the categories' rules (the event types a rule can match), so
a user's category is covered too; the host part names the shipped categories that are mostly host
activity.  `docs.categories_markdown`, `tetrapipe policies render` (stderr) and the run's hints
(`tetrapipe.pipeline.hints`) all say it with the text from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tetrapipe.rules.library import Category, Condition

DEFAULT_ALLOWED_TYPES = frozenset({"process_exec", "process_exit", "process_kprobe", "process_uprobe",
                                   "process_tracepoint", "process_lsm"})
# Shipped categories whose events come mostly from processes on the node itself (namespace "").
HOST_CATEGORIES = ("sudo", "suid", "setuid", "ssh", "kernel-module", "ebpf")
ALLOW_VALUE = ('{"event_set":["PROCESS_EXEC","PROCESS_EXIT","PROCESS_KPROBE","PROCESS_UPROBE",'
               '"PROCESS_TRACEPOINT","PROCESS_LSM","PROCESS_LOADER"]}')
DENY_VALUE = '{"health_check":true}\n{"namespace":["cilium","kube-system"]}'
ALLOW_SETTING = "tetragon.exportAllowList"
DENY_SETTING = "tetragon.exportDenyList"


def _json_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


# `--set-json` (Helm >= 3.10) takes the value as one JSON string: no escaping of commas or braces as `--set` needs.
SET_LINES = (f"--set-json '{ALLOW_SETTING}={_json_string(ALLOW_VALUE)}'",
             f"--set-json '{DENY_SETTING}={_json_string(DENY_VALUE)}'")


def required_event_types(cond: Condition) -> frozenset[str] | None:
    """The event types `cond` can match; None when it does not constrain the type."""
    sets: list[frozenset[str]] = []
    if cond.event is not None:
        sets.append(frozenset(cond.event if isinstance(cond.event, list) else [cond.event]))
    for child in cond.all or []:
        if (found := required_event_types(child)) is not None:
            sets.append(found)
    if cond.any:
        branches = [required_event_types(child) for child in cond.any]
        if all(b is not None for b in branches):
            sets.append(frozenset().union(*(b for b in branches if b is not None)))
    if not sets:
        return None
    out = sets[0]
    for other in sets[1:]:
        out &= other
    return out


def needs_types(categories: Iterable[Category]) -> dict[str, frozenset[str]]:
    """Category id → the event types it can fire on (categories that take any type are left out)."""
    return {c.id: found for c in categories if (found := required_event_types(c.match)) is not None}


def hidden_by_allowlist(categories: Iterable[Category]) -> dict[str, frozenset[str]]:
    """Category id → its event types, for categories the default allow list keeps from ever firing."""
    return {cid: types for cid, types in needs_types(categories).items() if not types & DEFAULT_ALLOWED_TYPES}


def host_categories(categories: Iterable[Category]) -> list[str]:
    ids = {c.id for c in categories}
    return [cid for cid in HOST_CATEGORIES if cid in ids]


def hint_lines(categories: Sequence[Category]) -> list[str]:
    """Plain text for a terminal: which categories each default hides, and the `helm` flags that fix it."""
    lines = ["tetrapipe: Tetragon's Helm defaults hide some categories' events:"]
    hidden = hidden_by_allowlist(categories)
    if hidden:
        types = sorted({t.upper() for ts in hidden.values() for t in ts})
        lines.append(f"  {ALLOW_SETTING} (default) has no {', '.join(types)}: {', '.join(hidden)} can never fire")
    host = host_categories(categories)
    if host:
        lines.append(f'  {DENY_SETTING} (default) drops namespace "" (the host): host events of '
                     f"{', '.join(host)} never arrive")
    lines += ["  fix: helm upgrade tetragon cilium/tetragon -n kube-system --reuse-values \\",
              f"    {SET_LINES[0]} \\", f"    {SET_LINES[1]}"]
    return lines


def markdown_section(categories: Sequence[Category]) -> list[str]:
    """The library page's section on Tetragon's export defaults (Markdown lines)."""
    out = ["## Tetragon's export defaults", "",
           "Tetragon's Helm chart filters its JSON export; two defaults hide categories:", ""]
    hidden = hidden_by_allowlist(categories)
    if hidden:
        out.append(f"- `{ALLOW_SETTING}` lists no "
                   + ", ".join(f"`{t.upper()}`" for t in sorted({t for ts in hidden.values() for t in ts}))
                   + ": " + ", ".join(f"`{cid}`" for cid in hidden) + " can never fire.")
    host = host_categories(categories)
    if host:
        out.append(f'- `{DENY_SETTING}` drops namespace `""`, the host itself: host events of '
                   + ", ".join(f"`{cid}`" for cid in host) + " (sudo on a node, sshd, ...) never arrive.")
    out += ["", "Fix (keeps the health-check filter and the cilium and kube-system namespaces out):", "",
            "```sh", "helm upgrade tetragon cilium/tetragon -n kube-system --reuse-values \\",
            f"  {SET_LINES[0]} \\", f"  {SET_LINES[1]}", "```", ""]
    return out
