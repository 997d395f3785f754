"""The command's side of issue 10: oversized lines reach a file dead letter whole, the nesting
limit is configurable, a one-shot input stopped by SIGTERM dead-letters its pending CRI partial
lines, and two dead-letter targets are refused at startup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson

from tests.support.events import exec_event
from tests.support.hostile import deep_object

ROOT = Path(__file__).parents[2]
TETRAPIPE = [sys.executable, "-m", "tetrapipe.cli.main", "run", "--log-format", "json"]
GOOD = [orjson.dumps(exec_event("/bin/true", f"seq-{i}")) for i in range(3)]


def run(args: list[str], data: bytes, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*TETRAPIPE, *args], input=data, capture_output=True, timeout=120, cwd=ROOT)


def test_a_line_over_the_event_limit_reaches_the_file_dead_letter_whole(tmp_path: Path) -> None:
    huge = b'{"process_exec":{"process":{"binary":"/x","arguments":"' + b"A" * (17 << 20) + b'"}}}'
    dead = tmp_path / "dead.jsonl"
    proc = run(["--quiet", "--dead-letter", str(dead)], b"\n".join([GOOD[0], huge, GOOD[1]]) + b"\n", tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert len(proc.stdout.splitlines()) == 2
    assert dead.read_bytes() == huge + b"\n"  # 17 MiB, unchanged — not a 16 MiB head
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tetrapipe-spool")]


def test_max_depth_from_the_flag_and_from_the_config_file(tmp_path: Path) -> None:
    event = orjson.loads(GOOD[0])
    event["process_exec"]["extra"] = orjson.loads(deep_object(20))
    line = orjson.dumps(event)
    assert run(["--quiet"], line + b"\n", tmp_path).stdout.count(b"\n") == 1  # 22 levels: under the default
    dead = tmp_path / "dead.jsonl"
    proc = run(["--quiet", "--max-depth", "16", "--dead-letter", str(dead)], line + b"\n", tmp_path)
    assert proc.returncode == 0 and proc.stdout == b"" and dead.read_bytes() == line + b"\n"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("input:\n  max_depth: 16\n")
    assert run(["--quiet", "--config", str(cfg)], line + b"\n", tmp_path).stdout == b""
    cfg.write_text("input:\n  max_depth: 100000\n")
    proc = run(["--quiet", "--config", str(cfg)], line + b"\n", tmp_path)
    assert proc.returncode == 2 and b"input.max_depth" in proc.stderr


def test_file_and_kafka_dead_letters_together_are_refused(tmp_path: Path) -> None:
    proc = run(["--dead-letter", str(tmp_path / "d"), "--kafka-bootstrap", "127.0.0.1:1", "--kafka-dlq", "dlq"],
               b"", tmp_path)
    assert proc.returncode == 2 and b"exclude each other" in proc.stderr


def test_sigterm_on_stdin_dead_letters_pending_partial_lines(tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    partial = b"2024-05-14T09:00:00.1Z stdout P " + GOOD[2][:30]
    proc = subprocess.Popen([*TETRAPIPE, "--dead-letter", str(dead)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(GOOD[0] + b"\n" + partial + b"\n")
        proc.stdin.flush()
        # The good line came out, so the partial line (read in the same chunk) is in the decoder.
        assert proc.stdout.readline().startswith(GOOD[0][:-1])
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert dead.read_bytes() == partial + b"\n"
    summary = next(json.loads(line) for line in err.splitlines() if b'"run summary"' in line)
    assert summary["dead_lettered"] == 1
