"""`tetrapipe run` as a process: after SIGTERM/SIGINT it exits within `--grace` + EXIT_MARGIN, whatever the outputs do.

Outputs that cannot make progress: stdout piped to a reader that never reads
(the stdout writer blocks in write(2) on a full pipe), and an OTLP endpoint
that accepts TCP connections and never answers (gRPC and HTTP).  The exit
code is EXIT_DRAIN_INCOMPLETE and the run summary is on stderr exactly once;
a second signal exits at once, still with one summary.

Every wait is bounded; children die with the test process (`setpriv
--pdeathsig KILL`) and are killed in `finally`.  No external server is
needed: the silent endpoint is a socket this test listens on.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from tests.support import synth
from tetrapipe.cli.main import EXIT_MARGIN
from tetrapipe.pipeline.runner import EXIT_DRAIN_INCOMPLETE

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
GRACE = 2.0
SLACK = 1.0  # process start-up of signal handling, interpreter exit, a loaded CI machine
F_GETPIPE_SZ = 1032  # Linux fcntl
INPUT = b"\n".join(synth.generate(3000, seed=11)) + b"\n"  # ~5 MB: far more than the pipes and queues hold


class Child:
    """`tetrapipe run ARGS` with stdin fed from a thread (and left open: a live stream), stderr to a file."""

    def __init__(self, tmp_path: Path, args: list[str], *, stdout: int, log_format: str = "json",
                 data: bytes = INPUT) -> None:
        self.data = data
        self.stderr_path = tmp_path / "stderr.log"
        read_end, self._stdin = os.pipe()
        prefix = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [*prefix, sys.executable, "-m", "tetrapipe.cli.main", "run", *args],
                stdin=read_end, stdout=stdout, stderr=err, cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT), "TETRAPIPE_LOG_FORMAT": log_format})
        os.close(read_end)
        threading.Thread(target=self._feed, daemon=True).start()

    def _feed(self) -> None:
        view = memoryview(self.data)
        with contextlib.suppress(OSError):  # EPIPE once the child is gone, EBADF once closed
            while view:
                view = view[os.write(self._stdin, view[:65536]):]

    def signal(self, sig: int) -> float:
        self.proc.send_signal(sig)
        return time.monotonic()

    def exit_code_within(self, since: float, limit: float) -> tuple[int, float]:
        """The exit code and the seconds from `since`; fails if the child is still running after `limit` s."""
        try:
            code = self.proc.wait(timeout=max(0.0, since + limit - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {time.monotonic() - since:.1f}s after the signal; "
                                 f"stderr: {self.stderr()[-2000:]!r}") from None
        return code, time.monotonic() - since

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def records(self) -> list[dict]:
        return [orjson.loads(line) for line in self.stderr().splitlines() if line.startswith("{")]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self._stdin)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextlib.contextmanager
def child(tmp_path: Path, args: list[str], **kw: object) -> Iterator[Child]:
    c = Child(tmp_path, args, **kw)  # type: ignore[arg-type]
    try:
        yield c
    finally:
        c.close()


def until(check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if check():
            return
        assert proc.poll() is None, f"tetrapipe exited ({proc.returncode}) while waiting for {what}"
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def pipe_full(fd: int) -> bool:
    """True when the pipe holds about as many unread bytes as it can (a writer of more then blocks).

    Within PIPE_BUF of its size: a write of up to PIPE_BUF bytes is atomic, so it can block on less room.
    """
    unread = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    return unread > fcntl.fcntl(fd, F_GETPIPE_SZ) - select.PIPE_BUF


def summaries(c: Child) -> list[dict]:
    return [r for r in c.records() if r["message"] == "run summary"]


class SilentEndpoint:
    """A TCP server on 127.0.0.1 that accepts connections and never reads or answers (a hung collector)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent_endpoint() -> Iterator[SilentEndpoint]:
    server = SilentEndpoint()
    try:
        yield server
    finally:
        server.close()


def assert_incomplete_drain_with_one_summary(c: Child, code: int) -> None:
    assert code == EXIT_DRAIN_INCOMPLETE, c.stderr()[-2000:]
    found = summaries(c)
    assert len(found) == 1, c.stderr()[-2000:]
    assert found[0]["exit_code"] == EXIT_DRAIN_INCOMPLETE
    assert found[0]["records_read"] > 0
    assert c.records()[-1]["message"] == "run summary", "the summary is the last line"


def test_sigterm_with_stdout_never_read_exits_within_grace(tmp_path: Path) -> None:
    with child(tmp_path, ["--grace", str(GRACE)], stdout=subprocess.PIPE) as c:
        assert c.proc.stdout is not None
        out = c.proc.stdout.fileno()
        until(lambda: pipe_full(out), "the stdout pipe to fill", c.proc)
        time.sleep(0.2)  # the sink's writer is now blocked in write(2)
        code, took = c.exit_code_within(c.signal(signal.SIGTERM), GRACE + EXIT_MARGIN + SLACK)
        print(f"\nstdout never read: exit {code} {took:.2f}s after SIGTERM (--grace {GRACE})")
        assert_incomplete_drain_with_one_summary(c, code)
        assert took >= GRACE - 0.1, "the drain is given its grace period"
        assert any("grace period exceeded" in r["message"] for r in c.records())


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf", "http/json"])
def test_sigterm_with_a_collector_that_never_answers_exits_within_grace(
        tmp_path: Path, silent_endpoint: SilentEndpoint, protocol: str) -> None:
    args = ["--grace", str(GRACE), "--otlp-endpoint", f"http://127.0.0.1:{silent_endpoint.port}",
            "--otlp-protocol", protocol]
    with child(tmp_path, args, stdout=subprocess.DEVNULL) as c:
        until(lambda: bool(silent_endpoint.accepted), "a connection to the silent collector", c.proc)
        time.sleep(0.3)  # the export request is out, its answer never comes
        code, took = c.exit_code_within(c.signal(signal.SIGTERM), GRACE + EXIT_MARGIN + SLACK)
        print(f"\nOTLP {protocol}, silent collector: exit {code} {took:.2f}s after SIGTERM (--grace {GRACE})")
        assert_incomplete_drain_with_one_summary(c, code)
        assert not any(summaries(c)[0]["sent"].values()), "the collector never acknowledged anything"


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_second_signal_exits_at_once_with_one_summary(tmp_path: Path, log_format: str) -> None:
    with child(tmp_path, ["--grace", "30"], stdout=subprocess.PIPE, log_format=log_format) as c:
        assert c.proc.stdout is not None
        out = c.proc.stdout.fileno()
        until(lambda: pipe_full(out), "the stdout pipe to fill", c.proc)
        c.signal(signal.SIGTERM)
        time.sleep(0.5)
        assert c.proc.poll() is None, "the first signal starts a drain of up to 30 s"
        code, took = c.exit_code_within(c.signal(signal.SIGINT), 1.5)
        print(f"\nsecond signal ({log_format} logs): exit {code} {took:.2f}s after it")
        if log_format == "json":
            assert_incomplete_drain_with_one_summary(c, code)
            assert any(r["message"].startswith("second signal") for r in c.records())
        else:
            assert code == EXIT_DRAIN_INCOMPLETE
            text = c.stderr()
            assert text.count(" records read, ") == 1, text[-2000:]
            assert "tetrapipe: second signal" in text


def test_a_thread_blocked_in_a_write_does_not_hold_the_exit(tmp_path: Path) -> None:
    """The dead-letter file is a FIFO whose reader never reads: its write blocks in a worker thread.

    The interpreter would join that thread at exit forever; the process leaves without it, after the summary.
    """
    fifo = tmp_path / "dead-letter.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # present (so opening it for writing succeeds), never reads
    garbage = b"".join(b"not json %d " % i + b"x" * 1000 + b"\n" for i in range(2000))  # far more than a pipe holds
    try:
        with child(tmp_path, ["--grace", str(GRACE), "--dead-letter", str(fifo)], stdout=subprocess.DEVNULL,
                   data=garbage) as c:
            until(lambda: pipe_full(reader), "the dead-letter FIFO to fill", c.proc)
            time.sleep(0.2)
            code, took = c.exit_code_within(c.signal(signal.SIGTERM), GRACE + EXIT_MARGIN + SLACK)
            print(f"\ndead-letter FIFO never read: exit {code} {took:.2f}s after SIGTERM (--grace {GRACE})")
            assert_incomplete_drain_with_one_summary(c, code)
            assert any(r["message"].startswith("threads still busy at exit") for r in c.records())
    finally:
        os.close(reader)
