"""Inputs for the format tests: real and synthetic Tetragon events with the tags tetrapipe gives them.

The categories, groups and egress classification come from the current processor (the shipped
library, pod CIDR 10.244.0.0/16, service CIDR 10.96.0.0/12), as the output formats will get them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from tests.support.synth import SCENARIOS, generate_tagged

DOCS_EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "docs-examples.jsonl"


class Input(NamedTuple):
    """One processed event: what `to_ocsf`/`to_ecs` take, and where it came from."""

    event: dict[str, Any]
    etype: str
    categories: tuple[str, ...]
    groups: tuple[str, ...]
    egress: dict[str, Any] | None
    source: str  # "docs" or the synthetic scenario name


def process(processor: Any, lines: list[bytes], sources: list[str]) -> list[Input]:
    from tests.conftest import process_lines

    out = []
    for env, source in zip(process_lines(processor, lines), sources, strict=True):
        d = env.decoded
        assert d is not None, f"{source}: not decoded: {env.error}"
        egress = msgspec.to_builtins(d.egress) if d.egress is not None else None
        out.append(Input(d.generic_root(), d.etype, tuple(env.tags.categories), tuple(env.tags.groups), egress,
                         source))
    return out


def docs_inputs(processor: Any) -> list[Input]:
    """The 54 real Tetragon events of tests/data/docs-examples.jsonl."""
    lines = DOCS_EXAMPLES.read_bytes().splitlines()
    return process(processor, lines, ["docs"] * len(lines))


def synthetic_inputs(processor: Any, per_scenario: int = 40, default_mix: int = 1500, seed: int = 12) -> list[Input]:
    """`per_scenario` events of every synthetic scenario, then `default_mix` events of the default mix."""
    pairs = list(generate_tagged(per_scenario * len(SCENARIOS), seed, dict.fromkeys(SCENARIOS, 1)))
    pairs += list(generate_tagged(default_mix, seed + 1))
    return process(processor, [line for _, line in pairs], [name for name, _ in pairs])


ODD_VALUES: tuple[Any, ...] = (None, [], {}, "", "x", 7, -1, True, [1, "a"], {"a": [None]})


def _leaf_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [path] + [p for k, v in value.items() for p in _leaf_paths(v, (*path, k))]
    if isinstance(value, list):
        return [path] + [p for n, v in enumerate(value) for p in _leaf_paths(v, (*path, n))]
    return [path]


def odd_variants(inputs: list[Input]) -> Iterator[tuple[Input, tuple[Any, ...], Any, dict[str, Any]]]:
    """For one input of each kind (event type, hook function): copies with one field (any depth) replaced
    by a value of another type — (input, path, odd value, changed event)."""
    one_per_kind = {(i.etype, i.event.get(i.etype, {}).get("function_name")): i for i in inputs}
    n = 0
    for i in one_per_kind.values():
        for path in _leaf_paths(i.event)[1:]:
            for odd in ODD_VALUES[n % 3::3]:
                event = copy.deepcopy(i.event)
                target = event
                for key in path[:-1]:
                    target = target[key]
                target[path[-1]] = odd
                n += 1
                yield i, path, odd, event
