"""`sinks:` in the config file, as a user runs it: the registries are the wiring.

Adding a sink = one module + one registry line: a sink type defined outside tetrapipe
(tests/support/registered_sink.py) is registered and run from a config file, next to built-in ones;
the `file` sink writes exactly the bytes stdout writes for the same format.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).parents[1] / "data"
DOCS = (DATA / "docs-examples.jsonl").read_bytes()
ROOT = Path(__file__).parents[2]


def run(args: list[str], stdin: bytes = DOCS, module: str = "tetrapipe.cli.main") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TETRAPIPE_LOG_FORMAT": "json"}
    return subprocess.run([sys.executable, "-m", module, *args], input=stdin, capture_output=True, timeout=60,
                          env=env, cwd=ROOT)


def test_a_registered_sink_type_runs_from_the_config_file(tmp_path: Path) -> None:
    recorded, copied = tmp_path / "recorded.txt", tmp_path / "copy.jsonl"
    config = tmp_path / "tetrapipe.yaml"
    config.write_text(f"sinks:\n  - {{type: recorder, path: '{recorded}', label: seen}}\n"
                      f"  - {{type: file, path: '{copied}'}}\n")
    result = run(["run", "--config", str(config), "--quiet"], module="tests.support.registered_sink")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""  # sinks given: no default stdout
    lines = recorded.read_bytes().splitlines()
    assert lines and all(line.startswith(b"seen ") for line in lines)
    assert [line.removeprefix(b"seen ") for line in lines] == copied.read_bytes().splitlines()
    assert len(lines) == len([line for line in DOCS.splitlines() if line.strip()])


def test_an_unregistered_type_is_a_configuration_error_naming_its_path(tmp_path: Path) -> None:
    config = tmp_path / "tetrapipe.yaml"
    config.write_text(f"sinks:\n  - {{type: file, path: '{tmp_path / 'x'}'}}\n  - {{type: recorder, path: x}}\n")
    result = run(["run", "--config", str(config)])
    assert result.returncode == 2
    assert b"sinks[1].type: sink type 'recorder' unknown; known: stdout, file, kafka, otlp" in result.stderr


@pytest.mark.parametrize("fmt", ["tetrapipe", "summary"])  # (ecs, ocsf stamp events without a time with now)
def test_the_file_sink_writes_what_stdout_writes(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "events.out"
    out.write_bytes(b"already there\n")  # appended to, never truncated
    config = tmp_path / "tetrapipe.yaml"
    config.write_text(f"sinks: [{{type: file, path: '{out}', format: {fmt}}}]\n")
    to_file = run(["run", "--config", str(config), "--quiet"])
    to_stdout = run(["run", "--format", fmt, "--quiet"])
    assert to_file.returncode == 0 and to_stdout.returncode == 0, to_file.stderr + to_stdout.stderr
    assert to_stdout.stdout and out.read_bytes() == b"already there\n" + to_stdout.stdout


def test_format_flag_sets_the_config_files_stdout_sink(tmp_path: Path) -> None:
    config = tmp_path / "tetrapipe.yaml"
    config.write_text("sinks: [{type: stdout, format: summary}]\n")
    from_file = run(["run", "--config", str(config), "--quiet"])
    flagged = run(["run", "--config", str(config), "--format", "tetrapipe", "--quiet"])
    assert from_file.stdout == run(["run", "--format", "summary", "--quiet"]).stdout
    assert flagged.stdout == run(["run", "--quiet"]).stdout != from_file.stdout
