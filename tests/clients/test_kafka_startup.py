"""An unreachable Kafka at startup (a closed port): retried for --kafka-startup-timeout with one line per
attempt, then the same exit code (4) whether Kafka is the input or an output."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tetrapipe.pipeline.runner import EXIT_UNREACHABLE

ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again on return: nothing listens there


@pytest.mark.parametrize("role", [["--kafka-topic", "raw"], ["--kafka-out-template", "out.{category}"],
                                  ["--kafka-dlq", "bad"]])
def test_input_and_outputs_retry_then_exit_with_one_code(role: list[str]) -> None:
    bootstrap = f"127.0.0.1:{closed_port()}"
    result = subprocess.run([sys.executable, "-m", "tetrapipe.cli.main", "run", "--kafka-bootstrap", bootstrap,
                             *role, "--kafka-startup-timeout", "1.2", "--log-format", "text", "--quiet",
                             "--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12"],
                            input=b"", capture_output=True, cwd=ROOT, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    err = result.stderr.decode()
    assert result.returncode == EXIT_UNREACHABLE, err
    attempts = re.findall(rf"Kafka at {bootstrap} not reachable \(attempt (\d+): ", err)
    assert attempts and attempts == [str(i) for i in range(1, len(attempts) + 1)], err  # one line per attempt
    final = [line for line in err.splitlines() if "did not answer in 1.2 s" in line]
    assert len(final) == 1 and f"({len(attempts) + 1} attempts;" in final[0], err
    assert "--kafka-startup-timeout" in final[0] and "--kafka-bootstrap" in final[0]
    assert "aiokafka" not in err  # the client's own connect errors would double each attempt's line


def test_zero_means_one_attempt() -> None:
    result = subprocess.run([sys.executable, "-m", "tetrapipe.cli.main", "run", "--kafka-bootstrap",
                             f"127.0.0.1:{closed_port()}", "--kafka-topic", "raw", "--kafka-startup-timeout", "0",
                             "--log-format", "text", "--quiet"], input=b"", capture_output=True, cwd=ROOT,
                            timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == EXIT_UNREACHABLE and b"(1 attempt;" in result.stderr, result.stderr
    assert b"not reachable (attempt" not in result.stderr


def test_a_negative_timeout_is_a_usage_error() -> None:
    result = subprocess.run([sys.executable, "-m", "tetrapipe.cli.main", "run", "--kafka-topic", "raw",
                             "--kafka-startup-timeout", "-1"], input=b"", capture_output=True, cwd=ROOT, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2 and b"--kafka-startup-timeout" in result.stderr
