"""Tetragon-style filters wired into a run: the top level in the processor, each sink's in delivery."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import msgspec
import orjson
import pytest

from tests.support.events import exec_event, kprobe_event, process, sock
from tests.support.fakes import ListSource, ScriptedSink
from tetrapipe.config.root import Config, build_classifier, build_filters
from tetrapipe.event.decode import LineDecoder
from tetrapipe.formats import build_format
from tetrapipe.pipeline.filtering import ALL_SINKS
from tetrapipe.pipeline.processor import Processor
from tetrapipe.pipeline.runner import EXIT_OK, Pipeline, RetryPolicy
from tetrapipe.transforms.filter_stage import compile_stage
from tetrapipe.transforms.redact_view import RedactionLeanEvent
from tetrapipe.transforms.tag import Tagger

SECRET = "hunter2"
REDACT = [{"redact": [r"(?:--password|-p)[\s=]+(\S+)"]}]


def _processor(tagger: Tagger) -> Processor:
    return Processor(tagger, build_classifier(Config().egress, ["10.244.0.0/16"], ["10.96.0.0/12"]), LineDecoder())


def _lines() -> list[bytes]:
    return [
        orjson.dumps(exec_event("/usr/bin/sudo", f"mysql --password={SECRET}")),  # sudo: security
        orjson.dumps(kprobe_event("tcp_connect", [sock("8.8.8.8")])),  # egress: network
        orjson.dumps(exec_event("/bin/ls", "-l", pod={"namespace": "kube-system", "name": "x"})),  # untagged
        orjson.dumps({"process_exit": {"process": process("/bin/ls")}, "node_name": "node-1",
                      "time": "2024-05-14T09:00:00Z"}),  # untagged
    ]


async def _run(tagger: Tagger, config: dict, sinks: list[ScriptedSink]) -> tuple[Pipeline, ListSource]:  # type: ignore[type-arg]
    filters = build_filters(msgspec.convert(config, Config))
    processor = _processor(tagger)
    processor.stage = filters.top
    source = ListSource(_lines(), batch_size=3)
    dlq = ScriptedSink("dlq")
    p = Pipeline(source, processor, sinks, dead_letter=dlq, retry=RetryPolicy(initial=0.001, maximum=0.01),
                 log=io.StringIO())
    names = {f"otlp[{i}]": s.name for i, s in enumerate(sinks)}
    p.delivery.stages = {names[path]: stage for path, stage in filters.sinks.items()}
    assert await p.run() == EXIT_OK
    assert not dlq.delivered  # nothing filtered is ever dead-lettered
    return p, source


async def test_top_level_deny_drops_for_every_sink_and_still_commits(tagger: Tagger) -> None:
    a, b = ScriptedSink("a"), ScriptedSink("b")
    p, source = await _run(tagger, {"filters": {"deny": [{"namespace": ["kube-system"]},
                                                         {"event_set": ["PROCESS_EXIT"]}]}}, [a, b])
    for sink in (a, b):
        assert [e.position for e in sink.delivered] == [1, 2]
        assert all(e.out.startswith(e.raw[:-1]) for e in sink.delivered)  # their own bytes
    assert p.stats.filtered_out[ALL_SINKS] == {"filtered": 2}
    assert p.stats.summary_fields()["filtered_out"] == {"*": {"filtered": 2}}
    assert source.commits[-1] == 4  # the position of the dropped events is committed


async def test_per_sink_allow_routes_only_matching_events(tagger: Tagger) -> None:
    everything, execs = ScriptedSink("everything"), ScriptedSink("execs")
    p, source = await _run(tagger, {"otlp": [{}, {"filters": {"allow": '{"event_set":["PROCESS_EXEC"]}\n'
                                                                       '{"binary_regex":["curl$"]}'}}]},
                           [everything, execs])
    assert [e.position for e in everything.delivered] == [1, 2, 3, 4]
    assert [e.position for e in execs.delivered] == [1, 2, 3]  # execs, and the kprobe of curl
    assert execs.delivered[0] is everything.delivered[0]  # unchanged events share their rendering
    assert dict(p.stats.filtered_out["execs"]) == {"filtered": 1}
    assert "everything" not in p.stats.filtered_out
    assert source.commits[-1] == 4


async def test_top_level_redaction_no_sink_sees_the_secret(tagger: Tagger) -> None:
    a, b = ScriptedSink("a"), ScriptedSink("b")
    await _run(tagger, {"redaction": REDACT}, [a, b])
    for sink in (a, b):
        assert len(sink.delivered) == 4
        sudo = sink.delivered[0]
        assert SECRET.encode() not in sudo.out
        out = json.loads(sudo.out)
        assert out["process_exec"]["process"]["arguments"] == "mysql --password=*****"
        assert out["tetrapipe"]["redacted"] is True
        assert out["tetrapipe"]["categories"] == ["sudo"]
        assert SECRET not in out["tetrapipe"]["summaries"]["sudo"] and "*****" in out["tetrapipe"]["summaries"]["sudo"]
        for name in ("summary", "ocsf", "ecs"):
            rendered = build_format(name, category_groups=dict(tagger.groups)).lines([sudo])
            assert SECRET.encode() not in rendered, name
        for other in sink.delivered[1:]:  # unchanged: their own bytes, no marker
            assert b'"redacted"' not in other.out and other.out.startswith(other.raw[:-1])


async def test_per_sink_redaction_renders_its_own_copy(tagger: Tagger) -> None:
    plain, redacted = ScriptedSink("plain"), ScriptedSink("redacted")
    await _run(tagger, {"otlp": [{}, {"redaction": REDACT, "field_filters": [
        {"event_set": ["PROCESS_EXEC"], "fields": "parent", "action": "EXCLUDE"}]}]}, [plain, redacted])
    assert SECRET.encode() in plain.delivered[0].out  # the other sink keeps the event as it came
    copy = json.loads(redacted.delivered[0].out)
    assert copy["tetrapipe"]["redacted"] is True and "parent" not in copy["process_exec"]
    assert SECRET.encode() not in redacted.delivered[0].out
    ls = json.loads(redacted.delivered[2].out)  # field-filtered, not redacted: re-encoded without the marker
    assert "parent" not in ls["process_exec"] and "redacted" not in ls["tetrapipe"]
    assert redacted.delivered[1] is plain.delivered[1]  # the kprobe is untouched: shared


async def test_per_sink_rate_limit_and_dedup_count_drops(tagger: Tagger) -> None:
    a, b = ScriptedSink("limited"), ScriptedSink("dedup")
    p, _ = await _run(tagger, {"otlp": [{"rate_limit": {"rate": 0.001, "burst": 1, "keys": ["node_name"]}},
                                        {"dedup": {"window": 60, "keys": ["event_type"]}}]}, [a, b])
    assert dict(p.stats.filtered_out["limited"]) == {"rate_limited": 3}
    assert dict(p.stats.filtered_out["dedup"]) == {"deduplicated": 1}
    # each sink: its events, then (at the end of the input) the summary of its own drops, and nothing else
    limited = [json.loads(e.out) for e in a.delivered]
    assert len(limited) == 2 and limited[1]["rate_limit_info"] == {"number_of_dropped_process_events": "3"}
    assert limited[1]["tetrapipe_rate_limit"]["scope"] == "limited"
    deduped = [json.loads(e.out) for e in b.delivered]
    assert len(deduped) == 4 and deduped[3]["tetrapipe_dedup"]["repeats"] == 1
    assert deduped[3]["tetrapipe_dedup"]["key"] == {"event_type": "process_exec"}


def test_field_filter_that_cannot_apply_fails_closed(tagger: Tagger) -> None:
    from tetrapipe.event.envelope import Batch, Envelope

    processor = _processor(tagger)
    processor.stage = compile_stage("", field_filters=[{"fields": "process.pid", "action": "EXCLUDE"}])
    batch = Batch([Envelope(b'{"process_exec":"not an object","node_name":"n"}', 1)], 1)
    processor.process(batch)
    assert not batch.good and not batch.bad and processor.dropped == {"field_filter": 1}


def test_no_filters_configured_means_no_stage() -> None:
    filters = build_filters(Config())
    assert filters.top is None and filters.sinks == {}
    assert build_filters(msgspec.convert({"filters": {"allow": [], "deny": ""}, "otlp": [{}]}, Config)).top is None


HELM_VALUES = """\
filters:
  # exportAllowList / exportDenyList from Tetragon's Helm values, pasted as they are
  allow: |-
    {"event_set":["PROCESS_EXEC", "PROCESS_EXIT", "PROCESS_KPROBE", "PROCESS_UPROBE", "PROCESS_LSM"]}
  deny: |-
    {"health_check":true}
    {"namespace":["", "cilium", "kube-system"]}
redaction: |-
  {"redact": ["(?:--password|-p)[\\\\s=]+(\\\\S+)"]}
"""


def test_run_with_pasted_helm_filters_end_to_end(tmp_path: Path) -> None:
    cfg = tmp_path / "tetrapipe.yaml"
    cfg.write_text(HELM_VALUES)
    pod = {"namespace": "default", "name": "db"}
    events = [exec_event("/usr/bin/mysql", f"-u root --password={SECRET}", pod=pod),  # kept, redacted
              exec_event("/bin/ls", "-l", pod={"namespace": "kube-system", "name": "x"}),  # denied
              exec_event("/bin/ls", "-l"),  # no pod: namespace "" denied
              kprobe_event("tcp_connect", [sock("8.8.8.8")]) | {"process_kprobe": {
                  "process": process("/usr/bin/curl", pod=pod), "function_name": "tcp_connect",
                  "args": [sock("8.8.8.8")]}},  # kept
              {"process_dns": {"process": process(pod=pod)}, "node_name": "n", "time": "t"}]  # not allowed
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    done = subprocess.run([sys.executable, "-m", "tetrapipe", "run", "--config", str(cfg), "--input", str(inp),
                           "--log-format", "json", "--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12"],
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [next(iter(e)) for e in out] == ["process_exec", "process_kprobe"]
    assert SECRET.encode() not in done.stdout
    assert out[0]["tetrapipe"]["redacted"] is True and "redacted" not in out[1]["tetrapipe"]
    summary = next(json.loads(line) for line in done.stderr.splitlines() if b"run summary" in line)
    assert summary["filtered_out"] == {"*": {"filtered": 3}}


@pytest.mark.expect_errors
@pytest.mark.parametrize(("config", "message"), [
    ("otlp:\n  - {}\n  - filters: {allow: [{binary_regex: ['(abc']}]}\n",
     "otlp[1].filters.allow[0].binary_regex[0]: missing ): (abc"),
    ("filters:\n  deny: |-\n    {\"event_set\":[\"PROCESS_EXEC\"]}\n"
     "    {\"cel_expression\":[\"process_exec.process.\"]}\n",
     "filters.deny[1].cel_expression[0]"),
    ("filters: {allow: [{binary: [x]}]}\n", "filters.allow[0].binary: unknown field"),
    ("field_filters: [{fields: 'process.nonexistent', action: EXCLUDE}]\n", "field_filters[0].fields: "),
    ("kafka:\n  sink:\n    redaction: [{redact: ['(']}]\n", "kafka.sink.redaction[0].redact[0]: "),
    ("otlp: [{rate_limit: {rate: 0, burst: 1}}]\n", "otlp[0].rate_limit.rate: expected a positive number"),
    ("otlp: [{dedup: {window: 1, keys: [x], extra: 1}}]\n", "Object contains unknown field `extra`"),
    ("redaction: {filters: [{redact: ['(a']}], replacement: x}\n", "redaction.filters[0].redact[0]: missing )"),
    ("redaction: {replace: x}\n", "Object contains unknown field `replace` - at `$.redaction`"),
    ("otlp: [{redaction: {string_args: 'yes'}}]\n",
     "Expected `bool`, got `str` - at `$.otlp[0].redaction.string_args`"),
    ("filters: {allow: [{pid_set: [1]}]}\n", "filters.allow[0].pid_set: pid_set filters use a best-effort"),
    ("filters: {enable_pid_set: true, allow: [{pid_set: [-1]}]}\n", "filters.allow[0].pid_set"),
    ("rate_limit: {rate: 1, burst: 0}\n", "rate_limit.burst: expected a positive number"),
    ("dedup: {window: 1, keys: []}\n", "dedup.keys: expected at least one field path"),
])
def test_check_config_names_the_key_path(tmp_path: Path, config: str, message: str) -> None:
    from tetrapipe.cli.main import main

    path = tmp_path / "bad.yaml"
    path.write_text(config)
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stderr", err)
        assert main(["check-config", str(path)]) == 2
    assert message in err.getvalue(), err.getvalue()


async def test_reload_swaps_the_top_level_and_sink_stages(tagger: Tagger) -> None:
    from tetrapipe.service.reload import Loaded, Reloader

    classifier = build_classifier(Config().egress, [], [])
    processor = _processor(tagger)
    first = Loaded(Config(), tagger, classifier, build_filters(Config()))
    config = msgspec.convert({"redaction": REDACT, "otlp": [{"filters": {"deny": [{"event_set": ["PROCESS_EXIT"]}]}}]},
                             Config)
    applied = []
    reloader = Reloader(lambda: Loaded(config, tagger, classifier, build_filters(config)), first, processor,
                        log=lambda level, message: None)
    reloader.on_filters = applied.append
    assert processor.stage is None
    assert await reloader.reload()
    assert processor.stage is not None and processor.stage.redact is not None
    assert list(applied[0].sinks) == ["otlp[0]"]
    # events are now decoded with what redaction reads (tetrapipe.transforms.redact_view)
    decoded = processor.decoder.decode(_lines()[0])
    assert decoded is not None and type(decoded.view) is RedactionLeanEvent
