"""CEL filter: Tetragon's typed semantics, the Kubernetes ip/cidr functions, and the conversion shortcuts."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from google.protobuf import json_format

from tests.support import synth
from tetrapipe.transforms import tetragon_schema as schema
from tetrapipe.transforms.cel_filter import CelExpressions, runtime
from tetrapipe.transforms.cel_select import WHOLE
from tetrapipe.transforms.filter import compile_filters, event_type_of

DOCS = [orjson.loads(line) for line in (Path(__file__).resolve().parents[1] / "data" / "docs-examples.jsonl")
        .read_bytes().splitlines() if line.strip()]
CORPUS = [orjson.loads(line) for line in synth.generate(1500, seed=7)] + DOCS


def cel(expr: str, event: dict) -> bool:
    return compile_filters([{"cel_expression": [expr]}], [])(event, event_type_of(event))


def test_typed_defaults_enums_times_and_wrappers() -> None:
    host = {"process_exec": {"process": {"binary": "/bin/sh", "pid": 5, "start_time": "2024-05-14T09:00:00.5Z"}}}
    assert cel("process_exec.process.pod.namespace == ''", host)
    assert cel("!has(process_exec.process.pod) && process_exec.process.pid == uint(5)", host)
    assert cel("process_exec.process.start_time == timestamp('2024-05-14T09:00:00.500Z')", host)
    kp = {"process_kprobe": {"action": "KPROBE_ACTION_POST", "args": [{"long_arg": "-3"}, {"size_arg": "9"}]}}
    assert cel("process_kprobe.action == KprobeAction.KPROBE_ACTION_POST && process_kprobe.action == 1", kp)
    assert cel("process_kprobe.args[0].long_arg == -3 && process_kprobe.args[1].size_arg == uint(9)", kp)


def test_only_events_of_named_types_are_evaluated() -> None:
    assert not cel("true", {"process_exec": {}})
    assert not cel("process_exec.process.pid > uint(0) || true", {"process_exit": {"process": {"pid": 3}}})
    # a variable of another type named in the expression reads as an empty message
    assert cel("process_exit.process.pid == uint(3) || process_exec.process.binary == ''",
               {"process_exit": {"process": {"pid": 4}}})


@pytest.mark.parametrize("expr, want", [
    ("ip('10.0.2.21').family() == 4 && ip('2001:db8::1').family() == 6", True),
    ("isIP('127.0.0.256') || isIP('::ffff:1.2.3.4') || isIP('fe80::1%eth0') || isIP('010.0.0.1')", False),
    ("ip.isCanonical('2001:db8::abcd') && !ip.isCanonical('2001:DB8::ABCD')", True),
    ("ip('127.0.0.1').isLoopback() && ip('0.0.0.0').isUnspecified() && ip('169.254.1.1').isLinkLocalUnicast()", True),
    ("ip('224.0.0.1').isLinkLocalMulticast() && ip('ff02::1').isLinkLocalMulticast()", True),
    ("ip('192.168.0.1').isGlobalUnicast() && !ip('255.255.255.255').isGlobalUnicast()", True),
    ("cidr('192.168.0.0/24').containsIP(ip('192.168.0.1')) && !cidr('192.168.0.0/24').containsIP('192.168.1.1')", True),
    ("cidr('192.168.0.0/16').containsCIDR('192.168.10.0/24') && "
     "!cidr('192.168.1.0/24').containsCIDR('10.0.0.0/8')", True),
    ("cidr('192.168.0.1/24').masked() == cidr('192.168.0.0/24') && cidr('::1/128').prefixLength() == 128", True),
    ("cidr('192.168.0.1/24').ip() == ip('192.168.0.1') && isCIDR('10.0.0.0/8') && !isCIDR('10.0.0.0/33')", True),
])
def test_kubernetes_ip_and_cidr_library(expr: str, want: bool) -> None:
    assert cel(f"({expr}) && process_exec.process.binary == ''", {"process_exec": {}}) is want


def test_evaluation_errors_are_no_match_and_counted() -> None:
    f = compile_filters([{"cel_expression": ["ip(process_kprobe.args[0].sock_arg.saddr).family() == 4"]}], [])
    assert not f({"process_kprobe": {"args": [{"sock_arg": {"saddr": "not-an-ip"}}]}}, "process_kprobe")
    assert not f({"process_kprobe": {}}, "process_kprobe")  # args[0] out of range
    assert f.cel_filters[0].errors == 2


def test_wrong_json_types_do_not_raise() -> None:
    f = compile_filters([{"cel_expression": ["process_exec.process.pid > uint(1)"]}], [])
    assert not f({"process_exec": {"process": {"pid": "many"}}}, "process_exec")
    assert f.cel_filters[0].errors == 1


def test_converter_matches_protobuf_json_format_on_real_and_synthetic_events() -> None:
    rt = runtime()
    for event in CORPUS:
        etype = event_type_of(event)
        if etype not in schema.EVENT_TYPES:
            continue
        ours = rt.converter.convert(schema.EVENT_TYPES[etype][2], event[etype])
        reference = json_format.ParseDict(event[etype], type(ours)(), ignore_unknown_fields=True)
        assert ours == reference, etype


EXPRESSIONS = [
    "process_exec.process.pod.namespace == 'kube-system' || process_exec.parent.binary.endsWith('sh')",
    "has(process_exec.process.pod) && process_exec.process.pod.pod_labels['app.kubernetes.io/name'] == 'coredns'",
    "process_kprobe.args.exists(a, has(a.sock_arg) && cidr('10.0.0.0/8').containsIP(a.sock_arg.daddr))",
    "process_kprobe.process == process_kprobe.parent || size(process_kprobe.args) > 1",
    "process_exit.process.pid > uint(20100) && process_exit.parent.pod.container.name != ''",
    "process_kprobe.process.pod.container.image.name.startsWith('quay.io') && process_kprobe.function_name != ''",
]


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_pruned_conversion_gives_the_verdicts_of_the_full_one(expr: str) -> None:
    pruned = CelExpressions([expr], "e")
    full = CelExpressions([expr], "e")
    full._nodes = dict.fromkeys(full._nodes, WHOLE)
    verdicts = []
    for event in CORPUS:
        etype = event_type_of(event)
        body = event.get(etype, {})
        verdicts.append(pruned(body, etype))
        assert verdicts[-1] is full(body, etype), (expr, event)
    assert pruned.errors == full.errors
    assert any(verdicts), expr  # the corpus exercises both verdicts
