"""The shipped TracingPolicies: valid against Tetragon's CRD schema, as files and rendered; CIDR sources; CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tetrapipe.cli.policies import add_policies_parser, cmd_policies
from tetrapipe.rules.policies import PolicyError, load_policies, policies_dir, render

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "data" / "tracingpolicy-cilium.io.json"
EGRESS = "monitor-network-activity-outside-cluster-cidr-range"
POD, SERVICE = "10.244.0.0/16", "10.96.0.0/12"
SHIPPED_FILES = sorted(p.name for p in policies_dir().glob("*.yaml"))


def _openapi_schema(raw: dict[str, Any]) -> dict[str, Any]:
    """The policy schema, whether the file is a whole CRD or (as shipped by Tetragon) the schema itself."""
    if raw.get("kind") == "CustomResourceDefinition":
        return next(v["schema"]["openAPIV3Schema"] for v in raw["spec"]["versions"] if v["name"] == "v1alpha1")
    return raw


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = _openapi_schema(json.loads(SCHEMA_FILE.read_text()))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def assert_valid_policy(validator: jsonschema.protocols.Validator, doc: Any) -> None:
    """Valid against the CRD schema, plus what the schema leaves open (apiVersion, kind, name)."""
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    assert not errors, errors
    assert doc["apiVersion"] == "cilium.io/v1alpha1" and doc["kind"] == "TracingPolicy"
    assert "${" not in json.dumps(doc), "a placeholder was left in"


def egress_values(text: str) -> list[str]:
    doc = yaml.safe_load(text)
    (selector,) = doc["spec"]["kprobes"][0]["selectors"]
    (arg,) = selector["matchArgs"]
    assert arg["operator"] == "NotDAddr"
    return arg["values"]


# --- the schema is a real check ----------------------------------------------------------------------------

def test_schema_rejects_a_broken_policy(validator):
    doc = yaml.safe_load((policies_dir() / "modules.yaml").read_text())
    doc["spec"]["kprobes"][1]["selectors"][0]["matchArgs"][0]["operator"] = "Equals"  # not an operator
    doc["spec"]["kprobes"][0]["retrunArg"] = {"index": 0}
    messages = [e.message for e in validator.iter_errors(doc)]
    assert any("'Equals' is not one of" in m for m in messages)
    assert any("retrunArg" in m for m in messages)


# --- shipped files -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("file", SHIPPED_FILES)
def test_shipped_policy_file_is_valid(validator, file):
    doc = yaml.safe_load((policies_dir() / file).read_text())
    errors = [e.message for e in validator.iter_errors(doc)]
    assert not errors, errors
    assert doc["apiVersion"] == "cilium.io/v1alpha1" and doc["kind"] == "TracingPolicy"


def test_the_seven_library_policies_are_shipped():
    assert sorted(load_policies()) == sorted([
        "bpf-library-policy", "monitor-kernel-modules", "loader", "privileges-setuid-root", "privileges-raise",
        "accept", EGRESS])
    assert [n for n, p in load_policies().items() if p.placeholders] == [EGRESS]


@pytest.mark.parametrize("name", ["Bad_Name", "-x", "x-", "a" * 254, "two..dots"])
def test_invalid_kubernetes_name_is_rejected(tmp_path, name):
    (tmp_path / "p.yaml").write_text(f"apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n"
                                     f"  name: '{name}'\nspec: {{}}\n")
    with pytest.raises(PolicyError, match="not a valid Kubernetes object name"):
        load_policies(tmp_path)


def test_duplicate_name_and_wrong_kind_are_rejected(tmp_path):
    text = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: x}\nspec: {}\n"
    (tmp_path / "a.yaml").write_text(text)
    (tmp_path / "b.yaml").write_text(text)
    with pytest.raises(PolicyError, match="also used by"):
        load_policies(tmp_path)
    (tmp_path / "b.yaml").write_text(text.replace("TracingPolicy", "TracingPolicyNamespaced"))
    with pytest.raises(PolicyError, match="expected apiVersion"):
        load_policies(tmp_path)


# --- render ------------------------------------------------------------------------------------------------

def test_render_all_is_valid_and_keeps_plain_policies_verbatim(validator):
    rendered = render([], [POD], [SERVICE])
    assert list(rendered) == list(load_policies())
    for name, text in rendered.items():
        assert_valid_policy(validator, yaml.safe_load(text))
        if name != EGRESS:
            assert text == load_policies()[name].path.read_text()


@pytest.mark.parametrize(("pods", "services", "expected"), [
    ([POD], [SERVICE], ["127.0.0.1", POD, SERVICE]),
    (["fd00:10:244::/56"], ["fd00:10:96::/112"], ["127.0.0.1", "::1", "fd00:10:244::/56", "fd00:10:96::/112"]),
    (["10.244.0.0/16", "fd00:10:244::/56"], ["10.96.0.0/12", "fd00:10:96::/112"],
     ["127.0.0.1", "::1", "10.244.0.0/16", "fd00:10:244::/56", "10.96.0.0/12", "fd00:10:96::/112"]),
    (["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"], ["10.96.0.0/12"],
     ["127.0.0.1", "10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24", "10.96.0.0/12"]),
    ([" 10.244.1.7/16"], ["10.96.0.10"], ["127.0.0.1", "10.244.0.0/16", "10.96.0.10/32"]),  # canonical forms
])
def test_render_egress(validator, pods, services, expected):
    text = render([EGRESS], pods, services)[EGRESS]
    assert_valid_policy(validator, yaml.safe_load(text))
    assert egress_values(text) == expected
    assert text.startswith("# Feeds tetrapipe category `egress`")
    assert "TEMPLATE" not in text


@pytest.mark.parametrize(("pods", "services", "missing"), [
    ([], [SERVICE], ("--pod-cidr", "POD_CIDR", "egress.pod_cidrs")),
    ([POD], [], ("--service-cidr", "SERVICE_CIDR", "egress.service_cidrs")),
    ([], [], ("--pod-cidr", "POD_CIDR", "egress.pod_cidrs")),
])
def test_render_egress_without_cidrs_is_an_error(pods, services, missing):
    for names in ([EGRESS], []):  # named, or implied by "all"
        with pytest.raises(PolicyError) as info:
            render(names, pods, services)
        assert all(word in str(info.value) for word in (EGRESS, *missing))


def test_other_policies_render_without_cidrs():
    assert list(render(["loader", "accept"], [], [])) == ["loader", "accept"]


def test_bad_cidr_and_unknown_name_are_errors_that_name_them():
    with pytest.raises(PolicyError, match=r"invalid CIDR '10\.244\.0\.0/33'"):
        render([EGRESS], ["10.244.0.0/33"], [SERVICE])
    with pytest.raises(PolicyError, match="invalid CIDR 'not-a-cidr'"):
        render([EGRESS], [POD], ["not-a-cidr"])
    with pytest.raises(PolicyError) as info:
        render(["no-such-policy", "loader"], [], [])
    assert "'no-such-policy'" in str(info.value) and "known: " in str(info.value) and "accept" in str(info.value)


def test_a_policy_can_be_named_by_its_file():
    assert list(render(["sshd"], [], [])) == ["accept"]
    assert list(render(["egress"], [POD], [SERVICE])) == [EGRESS]


# --- the command -------------------------------------------------------------------------------------------

def run_cli(argv: list[str]) -> int:
    """`tetrapipe policies ...` through the module's own parser wiring (as tetrapipe.cli.main adds it)."""
    parser = argparse.ArgumentParser(prog="tetrapipe")
    add_policies_parser(parser.add_subparsers(dest="command", required=True))
    return cmd_policies(parser.parse_args(["policies", *argv]))


@pytest.fixture
def no_cidr_env(monkeypatch):
    monkeypatch.delenv("POD_CIDR", raising=False)
    monkeypatch.delenv("SERVICE_CIDR", raising=False)
    return monkeypatch


def test_cli_render_all_is_one_multi_document_stream(no_cidr_env, capsys, validator):
    assert run_cli(["render", "--pod-cidr", POD, "--service-cidr", SERVICE]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["metadata"]["name"] for d in docs] == list(load_policies())
    for doc in docs:
        assert_valid_policy(validator, doc)


def test_cli_cidrs_from_env(no_cidr_env, capsys):
    no_cidr_env.setenv("POD_CIDR", "10.1.0.0/16, 10.2.0.0/16")
    no_cidr_env.setenv("SERVICE_CIDR", "10.3.0.0/16")
    assert run_cli(["render", EGRESS]) == 0
    assert egress_values(capsys.readouterr().out) == ["127.0.0.1", "10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16"]


def test_cli_cidrs_from_config_file(no_cidr_env, capsys, tmp_path):
    config = tmp_path / "tetrapipe.yaml"
    config.write_text("egress:\n  pod_cidrs: [10.4.0.0/16]\n  service_cidrs: ['fd00::/108']\n")
    assert run_cli(["render", EGRESS, "--config", str(config)]) == 0
    assert egress_values(capsys.readouterr().out) == ["127.0.0.1", "::1", "10.4.0.0/16", "fd00::/108"]


def test_cli_flags_win_over_env_and_env_over_file(no_cidr_env, capsys, tmp_path):
    config = tmp_path / "tetrapipe.yaml"
    config.write_text("egress:\n  pod_cidrs: [10.4.0.0/16]\n  service_cidrs: [10.5.0.0/16]\n")
    no_cidr_env.setenv("POD_CIDR", "10.1.0.0/16")
    no_cidr_env.setenv("SERVICE_CIDR", "10.3.0.0/16")
    assert run_cli(["render", EGRESS, "--config", str(config), "--pod-cidr", "10.6.0.0/16"]) == 0
    assert egress_values(capsys.readouterr().out) == ["127.0.0.1", "10.6.0.0/16", "10.3.0.0/16"]
    no_cidr_env.delenv("SERVICE_CIDR")
    assert run_cli(["render", EGRESS, "--config", str(config)]) == 0
    assert egress_values(capsys.readouterr().out) == ["127.0.0.1", "10.1.0.0/16", "10.5.0.0/16"]


def test_cli_output_dir_writes_one_file_per_policy(no_cidr_env, capsys, tmp_path, validator):
    out = tmp_path / "rendered"
    assert run_cli(["render", "loader", EGRESS, "--pod-cidr", POD, "--service-cidr", SERVICE,
                    "--output", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(["loader.yaml", f"{EGRESS}.yaml"])
    for path in out.iterdir():
        assert_valid_policy(validator, yaml.safe_load(path.read_text()))
    assert capsys.readouterr().out.count("wrote ") == 2


@pytest.mark.parametrize(("argv", "message"), [
    (["render", EGRESS], "needs the cluster's pod CIDRs"),
    (["render", "nope"], "unknown policy 'nope'; known: "),
    (["render", EGRESS, "--pod-cidr", "10.0.0.0/8", "--service-cidr", "300.1.0.0/16"], "invalid CIDR '300.1.0.0/16'"),
    (["list", "--config", "/nonexistent/tetrapipe.yaml"], "/nonexistent/tetrapipe.yaml"),
])
def test_cli_user_errors_exit_2_with_a_message(no_cidr_env, capsys, argv, message):
    assert run_cli(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("tetrapipe: ") and message in captured.err


def test_cli_list_shows_files_and_categories(capsys):
    assert run_cli(["list"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["accept"][1] == "sshd.yaml" and rows["accept"][-1] == "ssh"
    assert rows["privileges-raise"][-1] == "setuid" and rows["privileges-setuid-root"][-1] == "setuid"
    assert rows[EGRESS][1:4] == ["egress.yaml", "needs", "CIDRs"]


def test_cli_list_includes_config_overrides(capsys, tmp_path):
    config = tmp_path / "tetrapipe.yaml"
    config.write_text("library:\n  disable: [ssh]\n  categories:\n"
                      "    - {id: my-loads, group: mine, policy: loader, match: {event: process_loader}}\n"
                      "    - {id: my-own, group: mine, policy: my-policy, match: {event: process_kprobe}}\n")
    assert run_cli(["list", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()}
    assert rows["loader"].endswith("library, my-loads")
    assert rows["accept"].endswith(" -")
    assert "# not shipped: my-policy (named by my-own)" in out
