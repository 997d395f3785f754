"""Every example config shipped under config/ validates (so the docs cannot rot)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[2] / "config").glob("example*.yaml"))


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_config_validates(path):
    result = subprocess.run([sys.executable, "-m", "tetrapipe.cli.main", "check-config", str(path)],
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
