"""config/library.yaml and config/policies/ agree: a renamed function or policy on one side fails here.

The checks are one function, `consistency_problems`, run on the shipped files
and on deliberately broken copies (to show each rename would be caught).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec
import pytest

from tetrapipe.rules.conditions import event_types
from tetrapipe.rules.library import Category, Condition, load_library
from tetrapipe.rules.policies import Policy, condition_values, load_policies, policies_dir, policy_categories


def consistency_problems(categories: Sequence[Category], policies: Mapping[str, Policy]) -> list[str]:
    """Every disagreement between the categories' rules and the policies that feed them."""
    problems: list[str] = []
    for cat in categories:
        functions = {str(v) for v in condition_values(cat.match, "function_name", cat.params)}
        named = [str(v) for v in condition_values(cat.match, "policy_name", cat.params)]
        if cat.policy is None:
            if functions or named:
                problems.append(f"{cat.id}: the rule tests kprobe fields but the category names no policy")
            continue
        policy = policies.get(cat.policy)
        if policy is None:
            problems.append(f"{cat.id}: policy {cat.policy!r} is not in config/policies/")
            continue
        if sorted(policy.kprobe_calls) != sorted(functions):
            problems.append(f"{cat.id}: {policy.path.name} hooks {sorted(policy.kprobe_calls)}, "
                            f"the rule lists {sorted(functions)}")
        loader_events = event_types(cat.match) == frozenset({"process_loader"})
        if loader_events != bool(policy.document["spec"].get("loader")):
            problems.append(f"{cat.id}: process_loader rule and `spec.loader: true` must go together")
        if named and cat.policy not in named:
            problems.append(f"{cat.id}: the policy_name test leaves out the category's own policy {cat.policy}")
        for name in named:
            if name not in policies:
                problems.append(f"{cat.id}: the rule names policy {name!r}, which is not in config/policies/")
            elif not functions <= set(policies[name].kprobe_calls):
                problems.append(f"{cat.id}: policy {name} does not hook "
                                f"{sorted(functions - set(policies[name].kprobe_calls))}")
        problems += _summary_case_problems(cat, policy)
    return problems


def _summary_case_problems(cat: Category, policy: Policy) -> list[str]:
    """A summary case for a function the policy does not hook would never be used."""
    return [f"{cat.id}: summary case for {fn}, which {policy.path.name} does not hook"
            for case in cat.summary_cases
            for fn in condition_values(case.when, "function_name", cat.params) if fn not in policy.kprobe_calls]


@pytest.fixture(scope="module")
def categories() -> list[Category]:
    return load_library()


@pytest.fixture(scope="module")
def policies() -> dict[str, Policy]:
    return load_policies()


def test_shipped_library_and_policies_agree(categories, policies):
    assert consistency_problems(categories, policies) == []


def test_every_category_with_a_policy_has_that_file(categories, policies):
    with_policy = {c.id: c.policy for c in categories if c.policy}
    assert with_policy == {"ebpf": "bpf-library-policy", "kernel-module": "monitor-kernel-modules",
                           "library": "loader", "setuid": "privileges-setuid-root", "ssh": "accept",
                           "egress": "monitor-network-activity-outside-cluster-cidr-range"}
    for name in with_policy.values():
        assert policies[name].document["metadata"]["name"] == name


def test_every_shipped_policy_feeds_a_category_its_header_names(categories, policies):
    used = policy_categories(categories)
    for name, policy in policies.items():
        assert used.get(name), f"{policy.path.name} feeds no category"
        header = policy.text.split("apiVersion:")[0]
        for cid in used[name]:
            assert f"category `{cid}`" in header, f"{policy.path.name}: header should say it feeds `{cid}`"


def test_condition_values_resolves_params_through_the_tree():
    cond = msgspec.convert({"event": "process_kprobe", "any": [
        {"field": "function_name", "in": "$fns"},
        {"not": {"all": [{"field": "function_name", "equals": "c"}, {"field": "policy_name", "equals": "$p"}]}},
        {"field": "function_name", "prefix": "ignored"}]}, Condition)
    params = {"fns": ["a", "b"], "p": "pol"}
    assert condition_values(cond, "function_name", params) == ["a", "b", "c"]
    assert condition_values(cond, "policy_name", params) == ["pol"]


# --- each kind of rename is caught -------------------------------------------------------------------------

def _with_params(categories: list[Category], cid: str, **params: object) -> list[Category]:
    return [msgspec.structs.replace(c, params={**c.params, **params}) if c.id == cid else c for c in categories]


def _edited_policies(tmp_path: Path, file: str, old: str, new: str) -> dict[str, Policy]:
    directory = tmp_path / "policies"
    shutil.copytree(policies_dir(), directory)
    path = directory / file
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    return load_policies(directory)


def test_a_function_renamed_in_the_library_is_caught(categories, policies):
    broken = _with_params(categories, "ssh", functions=["tcp_close", "tcp_set_state", "sk_alloc",
                                                        "inet_csk_accept", "sk_free"])
    assert any(p.startswith("ssh: sshd.yaml hooks") for p in consistency_problems(broken, policies))


def test_a_function_renamed_in_a_policy_is_caught(categories, tmp_path):
    broken = _edited_policies(tmp_path, "modules.yaml", '"security_kernel_read_file"', '"security_kernel_load_data"')
    assert any(p.startswith("kernel-module: modules.yaml hooks") for p in consistency_problems(categories, broken))


def test_a_hook_added_to_a_policy_is_caught(categories, tmp_path):
    broken = _edited_policies(tmp_path, "egress.yaml", "  kprobes:\n",
                              '  kprobes:\n  - call: "tcp_sendmsg"\n    syscall: false\n')
    assert any(p.startswith("egress: egress.yaml hooks") for p in consistency_problems(categories, broken))


def test_a_policy_renamed_in_its_file_is_caught(categories, tmp_path):
    broken = _edited_policies(tmp_path, "privileges-raise.yaml", '"privileges-raise"', '"privileges-raised"')
    problems = consistency_problems(categories, broken)
    assert "setuid: the rule names policy 'privileges-raise', which is not in config/policies/" in problems


def test_a_policy_renamed_in_the_library_is_caught(categories, policies):
    broken = [msgspec.structs.replace(c, policy="bpf-policy") if c.id == "ebpf" else c for c in categories]
    assert "ebpf: policy 'bpf-policy' is not in config/policies/" in consistency_problems(broken, policies)
    broken = _with_params(categories, "setuid", policies=["privileges-setuid-root", "privilege-raise"])
    assert any("'privilege-raise'" in p for p in consistency_problems(broken, policies))


def test_a_setuid_function_missing_from_privileges_raise_is_caught(categories, tmp_path):
    broken = _edited_policies(tmp_path, "privileges-raise.yaml", '"__sys_setfsgid"', '"__sys_setfsgid16"')
    assert "setuid: policy privileges-raise does not hook ['__sys_setfsgid']" in consistency_problems(categories,
                                                                                                      broken)
