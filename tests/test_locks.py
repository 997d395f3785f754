"""The locks are one resolution: the runtime lock is the test lock's runtime part, pin for pin.

scripts/lock writes both (the runtime lock resolved with the test lock as constraints); the
image installs requirements.lock and CI requirements-test.lock, so a version that differed
between them would ship something CI never ran.  Also: every dependency pyproject.toml names
is pinned, with hashes, so `pip --require-hashes` can install each lock.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lock: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / lock).read_text().splitlines():
        m = _PIN.match(line)
        if m:
            pins[_norm(m[1])] = m[2]
    return pins


def _declared(requirements: list[str]) -> set[str]:
    return {_norm(re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0]) for r in requirements}


def test_runtime_lock_is_the_test_locks_runtime_part():
    runtime, test = _pins("requirements.lock"), _pins("requirements-test.lock")
    assert runtime, "requirements.lock has no pins"
    differing = {n: (v, test.get(n)) for n, v in runtime.items() if test.get(n) != v}
    assert not differing, f"runtime pins not equal to the test lock's (run scripts/lock): {differing}"


def test_every_declared_dependency_is_locked():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime, test = _pins("requirements.lock"), _pins("requirements-test.lock")
    assert _declared(project["dependencies"]) <= runtime.keys()
    missing = _declared(project["optional-dependencies"]["test"]) - test.keys()
    assert not missing, f"not in requirements-test.lock (run scripts/lock): {sorted(missing)}"


def test_every_pin_has_hashes():
    for lock in ("requirements.lock", "requirements-test.lock"):
        text = (ROOT / lock).read_text()
        blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
        for block in blocks:
            if _PIN.match(block):
                assert "--hash=sha256:" in block, f"{lock}: no hash for {block.splitlines()[0]}"
