"""The `tetrapipe` command as a user runs it: a real subprocess, stdin to stdout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.support import synth

DATA = Path(__file__).parents[1] / "data"
DOCS = (DATA / "docs-examples.jsonl").read_bytes()
TETRAPIPE = [sys.executable, "-m", "tetrapipe.cli.main"]


def run(args: list[str], stdin: bytes = b"", env: dict[str, str] | None = None, timeout: float = 60):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([*TETRAPIPE, *args], input=stdin, capture_output=True, timeout=timeout, env=full_env)


def log_records(stderr: bytes) -> list[dict]:
    """stderr of a run whose stderr is not a terminal: JSON log lines, every one an object."""
    records = [orjson.loads(line) for line in stderr.splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records), records
    return records


def summary(stderr: bytes) -> dict:
    return next(r for r in log_records(stderr) if r["message"] == "run summary")


def test_run_with_no_arguments_tags_stdin_to_stdout():
    result = run(["run"], DOCS)
    assert result.returncode == 0, result.stderr
    inputs = DOCS.splitlines()
    outputs = result.stdout.splitlines()
    assert len(outputs) == len(inputs)
    for line_in, line_out in zip(inputs, outputs, strict=True):
        event_out = orjson.loads(line_out)
        tp = event_out.pop("tetrapipe")
        assert event_out == orjson.loads(line_in)  # the event itself, unchanged
        assert line_out.startswith(line_in[:-1])  # ... byte for byte, with one key appended
        assert set(tp) <= {"categories", "groups", "summaries", "egress"}
        assert tp["categories"] == sorted(tp["categories"]) and set(tp["summaries"]) == set(tp["categories"])
    counts = summary(result.stderr)
    assert (counts["records_read"], counts["events"], counts["sent"]) == (54, 54, {"stdout": 54})


def test_logs_are_text_on_request_and_json_otherwise():
    text = run(["run", "--log-format", "text"], DOCS[:2000].rsplit(b"\n", 1)[0] + b"\n{broken\n")
    assert b"tetrapipe: bad input at stdin line" in text.stderr
    assert b"records read" in text.stderr and not text.stderr.startswith(b"{")
    as_env = run(["run"], b"{broken\n", env={"TETRAPIPE_LOG_FORMAT": "json", "TETRAPIPE_LOG_LEVEL": "error"})
    assert log_records(as_env.stderr) == []  # the warning and the summary (info) are below the threshold
    bad_env = run(["run"], b"", env={"TETRAPIPE_LOG_FORMAT": "yaml"})
    assert bad_env.returncode == 2 and b"log format must be auto, json or text" in bad_env.stderr


def test_output_contract_on_synthetic_stream():
    lines = list(synth.generate(3000, seed=11))
    result = run(["run", "--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12"], b"\n".join(lines) + b"\n")
    assert result.returncode == 0
    outputs = [orjson.loads(x) for x in result.stdout.splitlines()]
    assert len(outputs) == 3000
    with_egress = [o for o in outputs if "egress" in o["tetrapipe"]]
    assert with_egress
    for o in with_egress:
        eg = o["tetrapipe"]["egress"]
        assert set(eg) == {"zone", "external", "daddr", "dport", "cidr"}
        assert eg["external"] == (eg["zone"] not in ("pod", "service", "loopback", "unspecified"))
        if "egress" in o["tetrapipe"]["categories"]:
            assert eg["external"]
    zones = {o["tetrapipe"]["egress"]["zone"] for o in with_egress}
    assert {"pod", "service", "public", "private", "loopback", "metadata"} <= zones


def test_cidrs_from_environment_variables():
    event = orjson.dumps({"process_kprobe": {"function_name": "tcp_connect", "process": {"binary": "/c"},
                                             "args": [{"sock_arg": {"daddr": "10.50.0.1", "dport": 80}}]},
                          "time": "t"})
    out = run(["run"], event + b"\n", env={"POD_CIDR": "10.40.0.0/16,10.50.0.0/16", "SERVICE_CIDR": "10.96.0.0/12"})
    assert orjson.loads(out.stdout)["tetrapipe"]["egress"]["zone"] == "pod"
    out = run(["run", "--pod-cidr", "10.40.0.0/16"], event + b"\n", env={"POD_CIDR": "10.50.0.0/16"})
    assert orjson.loads(out.stdout)["tetrapipe"]["egress"]["zone"] == "private"  # the flag wins


def test_bad_input_is_counted_reported_dead_lettered_and_not_fatal(tmp_path):
    good = DOCS.splitlines()[:10]
    bad = [line for line in synth.bad_lines(seed=2) if len(line) < 1_000_000 and line.strip()]
    mixed = [x for pair in zip(good, bad, strict=False) for x in pair] + good[len(bad):]
    dead = tmp_path / "dead.jsonl"
    result = run(["run", "--dead-letter", str(dead)], b"\n".join(mixed) + b"\n")
    assert result.returncode == 0
    out = result.stdout.splitlines()
    dead_lines = dead.read_bytes().split(b"\n")[:-1]
    assert len(out) + len(dead_lines) == len(mixed)
    assert len(out) >= len(good)
    assert all(d in bad for d in dead_lines)  # unchanged
    reports = [r for r in log_records(result.stderr) if r["message"].startswith("bad input")]
    assert reports[0]["level"] == "warning" and reports[0]["position"] == "stdin line 2" and reports[0]["reason"]
    assert all(str(r.get("message")).count("\n") == 0 for r in reports)
    counts = summary(result.stderr)
    assert sum(counts["bad"].values()) == counts["dead_lettered"] == len(dead_lines)


def test_ten_megabyte_line_and_binary_garbage(tmp_path):
    big = b'{"process_exec": {"process": {"binary": "/x", "arguments": "' + b"A" * 10_000_000 + b'"'  # truncated
    garbage = bytes(range(256)) * 100
    stream = b"\n".join([DOCS.splitlines()[0], big, garbage.replace(b"\n", b""), DOCS.splitlines()[1]]) + b"\n"
    dead = tmp_path / "dead"
    result = run(["run", "--dead-letter", str(dead)], stream)
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 2
    assert dead.read_bytes().split(b"\n")[0] == big


def test_summary_format_and_only():
    result = run(["run", "--format", "summary", "--only", "kernel-module"], DOCS)
    lines = result.stdout.decode().splitlines()
    assert lines == [
        "2023-08-30T11:01:22.847554295Z /usr/sbin/insmod contrib/tester-progs/kernel_module_hello.ko "
        "file:/home/tixxdz/tetragon/contrib/tester-progs/kernel_module_hello.ko",
        "2023-09-09T23:27:42.751151233Z /bin/mount -o loop -t xfs loop.xfs /mnt/xfs.volume/ module:fs-xfs",
        "2023-09-09T23:27:42.752425825Z /sbin/modprobe -q -- fs-xfs "
        "file:/usr/lib/modules/6.2.0-32-generic/kernel/fs/xfs/xfs.ko",
    ]
    json_only = run(["run", "--only", "tmp-execs"], DOCS).stdout.splitlines()
    assert len(json_only) == 1 and orjson.loads(json_only[0])["tetrapipe"]["categories"] == ["tmp-execs"]


def test_unknown_only_category_is_an_error():
    result = run(["run", "--only", "nope"], b"")
    assert result.returncode == 2
    assert b"unknown category nope" in result.stderr


def test_input_file_and_unreadable_input(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(DOCS)
    assert len(run(["run", "--input", str(path)]).stdout.splitlines()) == 54
    missing = run(["run", "--input", str(tmp_path / "missing.jsonl")])
    assert missing.returncode == 2
    assert b"cannot open" in missing.stderr


def test_categories_and_check_config(tmp_path):
    listing = run(["categories"]).stdout.decode()
    for cid in ("ebpf", "kernel-module", "library", "tmp-execs", "sudo", "suid", "setuid", "ssh", "egress"):
        assert f"\n{cid} " in listing
    good = tmp_path / "good.yaml"
    good.write_text("egress:\n  pod_cidrs: [10.244.0.0/16]\n  zones:\n    - {name: vpn, cidrs: [10.8.0.0/16], "
                    "internal: true}\n")
    assert run(["check-config", str(good)]).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("egress:\n  zones:\n    - {name: vpn, cidr: [10.8.0.0/16]}\n")
    result = run(["check-config", str(bad)])
    assert result.returncode == 2
    assert b"$.egress.zones[0]" in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["categories", "--help"], ["check-config", "--help"]])
def test_help_everywhere(args):
    result = run(args)
    assert result.returncode == 0 and b"usage: tetrapipe" in result.stdout
    if args[0] == "run":
        assert b"examples:" in result.stdout


def test_sigterm_mid_stream_loses_nothing_and_exits_0(tmp_path):
    out_path = tmp_path / "out.jsonl"
    with out_path.open("wb") as out_file:  # a file, so a full stdout pipe cannot stall the writer below
        proc = subprocess.Popen([*TETRAPIPE, "run"], stdin=subprocess.PIPE, stdout=out_file, stderr=subprocess.PIPE)
    sent = 0
    lines = list(synth.generate(4000, seed=5))
    assert proc.stdin is not None
    for i in range(0, 2000, 100):  # a stream that is still open when the signal comes
        proc.stdin.write(b"\n".join(lines[i:i + 100]) + b"\n")
        proc.stdin.flush()
        sent += 100
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    read = summary(err)["records_read"]
    assert read == sent
    assert len(out_path.read_bytes().splitlines()) == read


def test_memory_is_flat_in_stream_length():
    """Peak RSS after 20k and after 80k events stays the same (no whole-input buffering)."""
    proc = subprocess.Popen([*TETRAPIPE, "run", "--quiet"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert proc.stdin is not None
    peaks = []
    for block in range(4):
        proc.stdin.write(b"\n".join(synth.generate(20000, seed=block)) + b"\n")
        proc.stdin.flush()
        time.sleep(0.3)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        peaks.append(int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1]))
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    assert peaks[-1] - peaks[0] < 20_000, peaks  # kB


def test_reprocessing_output_is_idempotent():
    first = run(["run"], DOCS + b"\n".join(synth.generate(500, seed=9)) + b"\n").stdout
    second = run(["run"], first).stdout
    assert second == first  # the old `tetrapipe` key is replaced, not duplicated
