"""Tests of the synthetic Tetragon event generator (tests/support/synth.py)."""
from __future__ import annotations

import collections
import ipaddress
import json
import re
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from . import synth

ROOT = Path(__file__).resolve().parents[2]
DOCS_EXAMPLES = ROOT / "tests" / "data" / "docs-examples.jsonl"
ENVELOPE = {"time", "node_name", "cluster_name", "aggregation_info"}
EVENT_TYPES = {"process_exec", "process_exit", "process_kprobe", "process_loader", "process_tracepoint",
               "process_uprobe", "process_lsm", "process_throttle", "rate_limit_info", "process_future_thing"}
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?Z$")


def event_key(obj: dict[str, Any]) -> str:
    (key,) = [k for k in obj if k not in ENVELOPE]
    return key


@pytest.fixture(scope="module")
def tagged() -> list[tuple[str, dict[str, Any], bytes]]:
    return [(name, json.loads(line), line) for name, line in synth.generate_tagged(20_000, seed=11)]


def test_deterministic() -> None:
    assert list(synth.generate(500, seed=7)) == list(synth.generate(500, seed=7))
    assert list(synth.generate(50, seed=7)) != list(synth.generate(50, seed=8))
    assert list(synth.generate(100, seed=3)) == [line for _, line in synth.generate_tagged(100, seed=3)]


def test_lines_are_single_event_objects(tagged: list[tuple[str, dict[str, Any], bytes]]) -> None:
    for _, obj, line in tagged:
        assert isinstance(obj, dict)
        assert b"\n" not in line and not line.endswith(b" ")
        assert set(obj) - {event_key(obj)} <= ENVELOPE
        assert event_key(obj) in EVENT_TYPES
        assert TIME_RE.match(obj["time"]) and obj["node_name"]
    assert 0.8 < sum("cluster_name" in o for _, o, _ in tagged) / len(tagged) < 0.97


def test_mean_size() -> None:
    sizes = [len(line) for line in synth.generate(5_000, seed=0)]
    assert 1200 <= sum(sizes) / len(sizes) <= 1800


def test_every_scenario_appears(tagged: list[tuple[str, dict[str, Any], bytes]]) -> None:
    counts = collections.Counter(name for name, _, _ in tagged)
    assert set(counts) == set(synth.SCENARIOS)
    assert 0.40 < (counts["exec"] + counts["exit"]) / len(tagged) < 0.50
    assert 0.005 < counts["unknown"] / len(tagged) < 0.02


def _kp(o: dict[str, Any]) -> dict[str, Any]:
    return o.get("process_kprobe", {})


def _binary(o: dict[str, Any]) -> str:
    return o.get("process_exec", {}).get("process", {}).get("binary", "")


def _arg0(o: dict[str, Any], kind: str) -> dict[str, Any]:
    return _kp(o)["args"][0][kind]


TMP = ("/tmp/", "/var/tmp/", "/dev/shm/")
SETID = {"__sys_setuid", "__sys_setgid", "__sys_setreuid", "__sys_setregid", "__sys_setresuid", "__sys_setresgid",
         "__sys_setfsuid", "__sys_setfsgid"}
BPF_FUNCS = {"bpf_check", "security_bpf_map_alloc", "security_bpf_map_create", "security_perf_event_alloc"}
CHECKS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "exec": lambda o: "process_exec" in o and "parent" in o["process_exec"],
    "exit": lambda o: "process_exit" in o and "parent" in o["process_exit"],
    "ebpf": lambda o: _kp(o)["policy_name"] == "bpf-library-policy" and (
        _kp(o)["function_name"] in BPF_FUNCS or _arg0(o, "file_arg")["path"].startswith("/sys/fs/bpf/")),
    "ebpf_near": lambda o: _kp(o)["function_name"] in ("security_file_permission", "security_mmap_file")
    and not _arg0(o, "file_arg")["path"].startswith("/sys/fs/bpf/"),
    "kmod": lambda o: _kp(o)["policy_name"] == "monitor-kernel-modules" and (
        _kp(o)["function_name"] == "security_kernel_module_request" or _kp(o)["args"][1] == {"int_arg": 2}),
    "kmod_near": lambda o: _kp(o)["function_name"] == "security_kernel_read_file"
    and _kp(o)["args"][1]["int_arg"] != 2 and _arg0(o, "file_arg")["path"].endswith(".ko"),
    "library": lambda o: o["process_loader"]["path"].startswith(("/usr/lib/", "/lib/", "/usr/local/lib/"))
    and "binary" in o["process_loader"]["process"] and o["process_loader"]["buildid"],
    "tmp_exec": lambda o: _binary(o).startswith(TMP),
    "tmp_near": lambda o: not _binary(o).startswith(TMP) and ("tmp" in _binary(o) or "temp" in _binary(o)),
    "sudo": lambda o: _binary(o) in ("/usr/bin/sudo", "/usr/bin/sudoedit"),
    "sudo_near": lambda o: _binary(o) in ("/home/u/pseudo-tool", "/usr/bin/sudoers-check"),
    "suid": lambda o: bool({"setuid", "setgid"} & set(o["process_exec"]["process"]["binary_properties"]))
    and "euid" in o["process_exec"]["process"]["process_credentials"],
    "suid_near": lambda o: set(o["process_exec"]["process"]["binary_properties"]) == {"file"},
    "setuid": lambda o: _kp(o)["function_name"] in SETID
    and _kp(o)["policy_name"] in ("privileges-setuid-root", "privileges-raise"),
    "setuid_near": lambda o: _kp(o)["function_name"] in ("security_capset", "create_user_ns")
    and _kp(o)["policy_name"] == "privileges-raise",
    "ssh": lambda o: _kp(o)["policy_name"] == "accept" and _kp(o)["process"]["binary"] == "/usr/sbin/sshd",
    "ssh_near": lambda o: _kp(o)["function_name"] == "tcp_close" and _kp(o)["process"]["binary"] == "/usr/bin/curl",
    "egress": lambda o: _kp(o)["function_name"] == "tcp_connect" and "daddr" in _arg0(o, "sock_arg"),
    "egress_sockaddr": lambda o: _kp(o)["function_name"] == "security_socket_connect"
    and set(_arg0(o, "sockaddr_arg")) == {"family", "addr", "port"},
    "tracepoint": lambda o: {"subsys", "event", "args"} <= set(o["process_tracepoint"]),
    "uprobe": lambda o: {"path", "symbol"} <= set(o["process_uprobe"]),
    "lsm": lambda o: o["process_lsm"]["function_name"] == "bprm_check_security",
    "throttle": lambda o: o["process_throttle"]["type"] in ("THROTTLE_START", "THROTTLE_STOP"),
    "rate_limit": lambda o: int(o["rate_limit_info"]["number_of_dropped_process_events"]) > 0,
    "unknown": lambda o: "process_future_thing" in o,
}


def test_scenarios_have_expected_shape(tagged: list[tuple[str, dict[str, Any], bytes]]) -> None:
    assert set(CHECKS) == set(synth.SCENARIOS)
    for name, obj, line in tagged:
        assert CHECKS[name](obj), (name, line[:400])


def test_protojson_conventions(tagged: list[tuple[str, dict[str, Any], bytes]]) -> None:
    pods = 0
    for name, obj, _ in tagged:
        body = obj[event_key(obj)]
        for proc in (body.get("process"), body.get("parent")):
            if proc:
                assert {"exec_id", "pid", "uid", "binary", "flags", "start_time", "auid", "tid"} <= set(proc)
                assert proc.get("refcnt", 1) != 0 and proc.get("arguments", "x") != ""
                pods += "pod" in proc
        if name == "suid" and "setuid" in body["process"]["binary_properties"]:
            assert body["process"]["binary_properties"]["setuid"] == 0  # UInt32Value 0 is kept
        for arg in body.get("args", []) if isinstance(body, dict) else []:
            if "sock_arg" in arg:
                assert isinstance(arg["sock_arg"]["cookie"], str) and arg["sock_arg"].get("mark", 1) != 0
    assert 0.4 < pods / (2 * len(tagged)) < 0.8


def test_real_examples_shape_is_mimicked(tagged: list[tuple[str, dict[str, Any], bytes]]) -> None:
    """Process/pod keys used by the generator are those seen in real events (plus newer proto fields)."""
    proc_keys: set[str] = set()
    pod_keys: set[str] = set()
    for line in DOCS_EXAMPLES.read_bytes().splitlines():
        body = json.loads(line)
        body = body[event_key(body)]
        for proc in (body["process"], body.get("parent")):
            proc_keys |= set(proc or {})
            pod_keys |= set((proc or {}).get("pod", {}))
    newer = {"process_credentials", "binary_properties", "in_init_tree", "workload_kind"}
    for _, obj, _ in tagged[:3000]:
        proc = obj[event_key(obj)].get("process")
        if proc:
            assert set(proc) <= proc_keys | newer
            assert set(proc.get("pod", {})) <= pod_keys | newer


def test_egress_destinations_cover_ranges(tagged: list[tuple[str, dict[str, Any], bytes]]) -> None:
    dests = {_arg0(o, "sock_arg")["daddr"] for n, o, _ in tagged if n == "egress"}
    nets = ["10.244.0.0/16", "10.96.0.0/12", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16",
            "fc00::/7"]
    for net in nets:
        assert any(ipaddress.ip_address(d) in ipaddress.ip_network(net) for d in dests), net
    assert {"169.254.169.254", "127.0.0.1", "::1", "::ffff:104.198.14.52", "fd00:ec2::254", "104.198.14.52"} <= dests
    assert any(ipaddress.ip_address(d).is_global and ":" in d for d in dests)
    sockaddrs = {_arg0(o, "sockaddr_arg")["family"] for n, o, _ in tagged if n == "egress_sockaddr"}
    assert sockaddrs == {"AF_INET", "AF_INET6"}


def test_tricky_strings_occur(tagged: list[tuple[str, dict[str, Any], bytes]]) -> None:
    args = [o[event_key(o)]["process"].get("arguments", "") for _, o, _ in tagged if "process" in o[event_key(o)]]
    weird = [a for a in args if any(c in a for c in '"\\\t\x1b') or not a.isascii()]
    assert 0.005 < len(weird) / len(args) < 0.06
    assert any(not a.isascii() for a in weird) and any("\\" in a for a in weird) and any("\t" in a for a in weird)


def test_mix_and_errors() -> None:
    lines = [json.loads(line) for line in synth.generate(200, seed=1, mix={"sudo": 1.0, "sudo_near": 0.0})]
    assert all(CHECKS["sudo"](o) for o in lines)
    with pytest.raises(ValueError):
        list(synth.generate(1, mix={"nope": 1.0}))
    with pytest.raises(ValueError):
        list(synth.generate(1, mix={"exec": 0.0}))


def test_memory_flat() -> None:
    gen = synth.generate(10, seed=0)
    assert isinstance(gen, Iterator) and not isinstance(gen, (list, tuple))

    def peak(n: int) -> int:
        tracemalloc.start()
        try:
            for _ in synth.generate(n, seed=5):
                pass
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, big = peak(1_000), peak(10_000)
    assert big < small * 1.5 + 256 * 1024, (small, big)


def test_write_file_and_cli(tmp_path: Path) -> None:
    expected = b"".join(line + b"\n" for line in synth.generate(40, seed=3))
    synth.write_file(tmp_path / "a.jsonl", 40, 3)
    assert (tmp_path / "a.jsonl").read_bytes() == expected
    cmd = [sys.executable, "-m", "tests.support.synth", "--count", "40", "--seed", "3"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True).stdout
    assert out == expected
    subprocess.run([*cmd, "--out", str(tmp_path / "b.jsonl")], cwd=ROOT, check=True)
    assert (tmp_path / "b.jsonl").read_bytes() == expected


def test_wrappers_round_trip(tagged: list[tuple[str, dict[str, Any], bytes]]) -> None:
    samples = [line for _, _, line in tagged[:300]] + [line for _, _, line in tagged if b"\\t" in line][:20]
    for line in samples:
        obj = json.loads(line)
        ts, stream, tag, payload = synth.wrap_cri(line).split(b" ", 3)
        assert (stream, tag, payload) == (b"stdout", b"F", line) and TIME_RE.match(ts.decode())
        assert json.loads(synth.wrap_fluentbit(line))["log"].encode() == line
        assert json.loads(synth.wrap_vector(line))["message"].encode() == line
        assert json.loads(synth.wrap_object(line))["log"] == obj
        assert json.loads(synth.wrap_object(line, "event"))["event"] == obj


def test_bad_lines() -> None:
    bad = synth.bad_lines(1)
    assert bad == synth.bad_lines(1)
    assert any(len(b) >= 10 * 1024 * 1024 for b in bad)
    assert any(b"\x00" in b for b in bad) and any(b"\xff" in b for b in bad)
    events = 0
    for b in bad:
        try:
            obj = json.loads(b)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(obj, dict) and "process" in obj.get("process_exec", {}) and len(b) < 1 << 20:
            events += 1
    assert events == 0  # nothing in the list is a sane, normal-size event


def test_docs_examples_copy() -> None:
    lines = DOCS_EXAMPLES.read_bytes().splitlines()
    assert len(lines) == 54
    assert all(isinstance(json.loads(line), dict) for line in lines)
