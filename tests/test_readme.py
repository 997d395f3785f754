"""The README's `tetrapipe ...` commands parse with the current flags, and the files they name exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tetrapipe.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
_STOP = {"|", "<", ">", ">>", "&&", ";", "2>&1", "&"}


def readme_commands() -> list[str]:
    """Each `tetrapipe` invocation in the README's sh blocks, continuation lines joined, env prefixes dropped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"\|", line.split(" #", 1)[0]):
                match = re.match(r"\s*(?:[A-Z_]+=\S+\s+)*(?:\.venv/bin/)?tetrapipe (\w.*)", part)
                if match:
                    out.append(match.group(1))
    return out


COMMANDS = readme_commands()


def test_the_readme_has_commands_to_check() -> None:
    assert len(COMMANDS) > 10 and any(c.startswith("run --kafka-bootstrap") for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_each_readme_command_parses(command: str) -> None:
    argv = []
    for word in shlex.split(command):
        if word in _STOP or word.startswith(("<", ">")):
            break
        argv.append(word)
    args = build_parser().parse_args(argv)  # an unknown flag or a bad choice exits 2: the test fails
    for option in ("config", "input", "file"):
        value = getattr(args, option, None)
        if isinstance(value, str) and "/" in value and not value.startswith(("/", "$")) and value != "my.yaml":
            assert (ROOT / value).exists(), f"{command}: {value} does not exist"
