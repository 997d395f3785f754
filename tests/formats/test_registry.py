"""The format layer: the registry, and every format through the real command and sinks.

`tetrapipe run --format ocsf|ecs` output is validated line by line against the same independent
schema checks as the mapping tests (OCSF 1.7.0, ECS 9.4), over the real and synthetic events.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.formats import ecs_validator, ocsf_validator
from tests.support.synth import generate
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.formats import FORMATS, NAMES, build_format
from tetrapipe.pipeline.processor import Processor
from tetrapipe.sinks.otlp.mapping import LogMapper

ROOT = Path(__file__).parents[2]
DOCS = (ROOT / "tests" / "data" / "docs-examples.jsonl").read_bytes()


def run(*args: str, data: bytes) -> bytes:
    proc = subprocess.run([sys.executable, "-m", "tetrapipe", "run", "--quiet", *args], input=data,
                          capture_output=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return proc.stdout


def corpus() -> bytes:
    return DOCS + b"\n".join(generate(1500, seed=12)) + b"\n"


def test_the_registry_builds_every_format_and_names_the_known_ones_on_a_typo() -> None:
    assert {build_format(name).name for name in FORMATS} == set(FORMATS)
    assert build_format("json").name == "tetrapipe"  # the old --format json
    with pytest.raises(ValueError, match="known: " + ", ".join(NAMES)):
        build_format("ocfs")


def test_default_and_json_outputs_are_identical() -> None:
    assert run(data=DOCS) == run("--format", "json", data=DOCS) == run("--format", "tetrapipe", data=DOCS)


def test_format_ocsf_validates_against_ocsf_1_7_0() -> None:
    lines = run("--format", "ocsf", "--ocsf-findings", data=corpus()).splitlines()
    assert len(lines) > 1554  # one per event, plus the findings
    problems = [(i, p) for i, line in enumerate(lines) for p in ocsf_validator.validate(orjson.loads(line))]
    assert not problems, problems[:10]
    findings = [e for e in map(orjson.loads, lines) if e["class_uid"] == 2004]
    assert findings and all("security" in str(f) for f in findings[:20])


def test_format_ecs_validates_against_ecs_9_4() -> None:
    lines = run("--format", "ecs", data=corpus()).splitlines()
    assert len(lines) == 1554
    problems = [(i, p) for i, line in enumerate(lines) for p in ecs_validator.validate(orjson.loads(line))]
    assert not problems, problems[:10]
    docs = list(map(orjson.loads, lines))
    assert any(d.get("tetrapipe", {}).get("categories") for d in docs)  # the categories travel


def test_summary_format_keeps_only_categories_lines() -> None:
    out = run("--format", "summary", "--only", "egress", data=corpus()).decode().splitlines()
    assert out and all(" -> " in line for line in out)


def test_an_otlp_sink_sends_another_formats_record_as_its_string_body(processor: Processor) -> None:
    batch = Batch([Envelope(line, i) for i, line in enumerate(DOCS.splitlines()[:5])])
    processor.process(batch)
    mapper = LogMapper(fmt=build_format("ecs"))
    for env in batch.good:
        body = mapper.record(env).body
        assert isinstance(body, bytes) and orjson.loads(body)["ecs"] == {"version": "9.4.0"}
