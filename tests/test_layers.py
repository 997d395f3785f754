"""The layers of the `tetrapipe` package import downwards only (README, Architecture).

Every import in every module — at the top, in a function, or for type checking only — is parsed;
a module may import its own subpackage and the layers below its own. Two subpackages on the
same level (sources and sinks) may not import each other. So a new upward dependency (a sink
reaching into the run loop, the event model pulling in the rule compiler) fails here, named.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tetrapipe"

# Bottom to top; one tuple is one level.
LAYERS: list[tuple[str, ...]] = [
    ("logs", "registry"), ("event",), ("rules",), ("transforms",), ("formats",), ("clients",),
    ("sources", "sinks"), ("pipeline",), ("config",), ("service",), ("cli",), ("__main__",),
]
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}


def _part(module: str) -> str | None:
    """The top-level part of `tetrapipe` a dotted module name lies in (None: outside the package)."""
    parts = module.split(".")
    if parts[0] != "tetrapipe":
        return None
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            if node.module == "tetrapipe":  # from tetrapipe import x: x is a part (or the version)
                found += [(node.lineno, f"tetrapipe.{alias.name}") for alias in node.names if alias.name in LEVEL]
    return found


def test_every_top_level_part_has_a_layer() -> None:
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").exists()) and p.name != "__init__.py"}
    parts.discard("shipped_config")
    assert parts <= LEVEL.keys(), f"give these a layer in LAYERS: {sorted(parts - LEVEL.keys())}"


def test_imports_run_downwards_only() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent)
        own = rel.parts[1] if len(rel.parts) > 2 else Path(rel.parts[1]).stem
        if own == "__init__":
            continue  # tetrapipe/__init__.py: the version only
        for line, module in _imports(path):
            part = _part(module)
            if part is None or part == "" or part == own:
                continue
            if LEVEL[part] >= LEVEL[own]:
                upward.append(f"{rel}:{line} imports {module} ({own} may import only layers below it)")
    assert not upward, "\n".join(upward)
