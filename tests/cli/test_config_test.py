"""`tetrapipe test`: the shipped library's own tests pass, a wrong expectation fails with exit 1
and names what differs, a bad test file is exit 2, and a user's category is testable."""

from __future__ import annotations

from pathlib import Path

import pytest

from tetrapipe.cli.main import main

ROOT = Path(__file__).parents[2]
CIDRS = ["--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12"]
SUDO = '{process_exec: {process: {binary: /usr/bin/sudo, pid: 1}}, node_name: n, time: "2024-01-01T00:00:00Z"}'


def test_the_shipped_library_passes_its_tests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", *CIDRS, str(ROOT / "config" / "library.tests.yaml")]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and out.rstrip().endswith("19 passed, 0 failed")


def test_a_wrong_expectation_fails_and_says_what_differs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = tmp_path / "t.yaml"
    case.write_text(f"tests:\n  - name: sudo\n    event: {SUDO}\n    expect: {{categories: [suid], zone: public}}\n")
    assert main(["test", str(case)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "categories ['sudo'], expected ['suid']" in out and "zone None, expected public" in out


@pytest.mark.expect_errors
def test_a_bad_test_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = tmp_path / "t.yaml"
    case.write_text("tests:\n  - name: x\n    expect: {categories: []}\n    surprise: 1\n")
    assert main(["test", str(case)]) == 2
    assert "surprise" in capsys.readouterr().err


def test_a_users_category_from_the_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "my.yaml").write_text(
        "library:\n  categories:\n    - id: shells\n      group: security\n      description: shells\n"
        "      match: {event: process_exec, field: process.binary, basename_in: [bash, sh]}\n")
    case = tmp_path / "my.tests.yaml"
    bash = SUDO.replace("/usr/bin/sudo", "/bin/bash")
    case.write_text(f"config: my.yaml\ntests:\n  - name: bash is a shell\n    event: {bash}\n"
                    "    expect: {categories: [shells], groups: [security]}\n")
    assert main(["test", str(case)]) == 0, capsys.readouterr().out
