"""`tetrapipe run --workers 2` as a process: what one process writes, byte for byte; signals; kills and restarts.

- stdout, the dead letter and the run summary of `--workers 2` equal those of
  `--workers 1` on the synthetic corpus with bad lines, oversized lines and CRI
  partial lines mixed in — one group of partial lines straddling a read
  boundary (the chunk cut and redone), one never completed;
- `--follow --workers 2` whose parent is SIGKILLed mid-stream and restarted:
  every event reaches the output, and the checkpoint is never ahead of what
  was written; one of its workers SIGKILLed (mid-stream, or idle): replaced,
  its chunks redone, the output exactly one run's;
- SIGTERM ends the run within `--grace` and the workers with it; SIGHUP's new
  configuration reaches every worker.
Every wait is bounded; children die with the test (`setpriv --pdeathsig KILL`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from tests.support import synth
from tetrapipe.cli.main import EXIT_MARGIN
from tetrapipe.sources.follow.checkpoint import Checkpoint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
READ = 1 << 20  # the file sources' read size: a batch, hence a chunk, ends at most there
CIDRS = ["--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12"]


def tetrapipe(*args: str) -> list[str]:
    prefix = ["setpriv", "--pdeathsig", "KILL"] if shutil.which("setpriv") else []
    return [*prefix, sys.executable, "-m", "tetrapipe.cli.main", "run", *args]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TETRAPIPE_LOG_FORMAT": "json"}


def partial_pair(event: bytes, size: int) -> list[bytes]:
    """A CRI `P` line of exactly `size` bytes (newline excluded) and the `F` line completing `event`."""
    cut = size - len(synth.wrap_cri(b""))
    return [synth.wrap_cri(event[:cut]).replace(b" F ", b" P ", 1), synth.wrap_cri(event[cut:])]


def corpus() -> bytes:
    """~4 MB of events, bad lines spread through, a partial group straddling the first read boundary."""
    events = list(synth.generate(2600, seed=5))
    bad = [line for line in synth.bad_lines(5) if len(line) < (1 << 20)]
    lines: list[bytes] = []
    for i, event in enumerate(events):
        lines.append(event)
        if i % 211 == 7:
            lines.append(bad[(i // 211) % len(bad)])
    head, size = [], 0
    while size + len(lines[0]) + 1 < READ - 4000:  # then a P line that ends exactly at the read boundary
        size += len(lines[0]) + 1
        head.append(lines.pop(0))
    big = next(synth.generate(1, seed=99))[:-1] + b',"pad":"' + b"x" * 8000 + b'"}'  # longer than the P line
    head += partial_pair(big, READ - size - 1)
    orphan = synth.wrap_cri(b'{"process_exec":{"process":{"binary":"/x"}}').replace(b" F ", b" P ", 1)
    data = b"\n".join([*head, *lines[:1000], orphan, *lines[1000:]]) + b"\n"
    last_line_start = data.rfind(b"\n", 0, READ - 1) + 1
    assert data[READ - 1:READ] == b"\n" and b" stdout P {" in data[last_line_start:READ]
    return data


def run_once(tmp_path: Path, workers: int, data: bytes, extra: list[str]) -> tuple[bytes, bytes, dict]:
    source = tmp_path / "in.jsonl"
    source.write_bytes(data)
    dead = tmp_path / f"dead-{workers}.jsonl"
    # --no-peers-learn: learning is on by default in one process only (the workers share no learned addresses)
    done = subprocess.run(tetrapipe("--input", str(source), "--workers", str(workers), "--dead-letter", str(dead),
                                    "--no-peers-learn", *CIDRS, *extra),
                          capture_output=True, env=environment(), cwd=ROOT, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [orjson.loads(line) for line in done.stderr.splitlines() if line.startswith(b"{")]
    summary = next(r for r in records if r["message"] == "run summary")
    for key in ("time", "elapsed_s", "events_per_s"):
        summary.pop(key, None)
    return done.stdout, dead.read_bytes(), summary


@pytest.mark.parametrize("extra", [[], ["--format", "summary"], ["--format", "ecs", "--only", "egress"]],
                         ids=["tetrapipe", "summary", "ecs-only-egress"])
def test_two_workers_write_what_one_writes_byte_for_byte(tmp_path: Path, extra: list[str]) -> None:
    data = corpus()
    one = run_once(tmp_path, 1, data, extra)
    two = run_once(tmp_path, 2, data, extra)
    assert one[0] and one[1]  # output and dead letter both have something to compare
    assert two[0] == one[0]
    assert two[1] == one[1]
    assert two[2] == one[2]
    assert one[2]["bad"].get("incomplete_partial") == 1  # the orphaned group is in the comparison


class Follow:
    """`tetrapipe run --follow` with stdout appended to a file, stderr to a file."""

    def __init__(self, tmp_path: Path, args: list[str], run: int) -> None:
        self.tmp = tmp_path
        self.out = tmp_path / "out.jsonl"
        self.err = tmp_path / f"stderr-{run}.log"
        with self.out.open("ab") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(tetrapipe("--follow", str(tmp_path / "followed.log"), "--checkpoint",
                                                   str(tmp_path / "checkpoint"), *CIDRS, *args),
                                         stdout=out, stderr=err, env=environment(), cwd=ROOT)

    def records(self) -> list[dict]:
        return [orjson.loads(line) for line in self.err.read_bytes().splitlines() if line.startswith(b"{")]

    def worker_pids(self) -> list[int]:
        pids = [r["worker_pids"] for r in self.records() if "worker_pids" in r]
        return pids[0] if pids else []

    def output_lines(self) -> list[bytes]:
        return self.out.read_bytes().splitlines()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextlib.contextmanager
def follow(tmp_path: Path, args: list[str], run: int = 0) -> Iterator[Follow]:
    f = Follow(tmp_path, args, run)
    try:
        yield f
    finally:
        f.close()


def until(check: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def expected_output(tmp_path: Path, data: bytes) -> list[bytes]:
    source = tmp_path / "all.jsonl"
    source.write_bytes(data)
    done = subprocess.run(tetrapipe("--input", str(source), "--quiet", "--no-peers-learn", *CIDRS), capture_output=True,
                          env=environment(), cwd=ROOT, timeout=300, check=True)
    return done.stdout.splitlines()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with contextlib.suppress(OSError):  # a zombie of the fork server's is gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    return True


def followed_in_two_parts(tmp_path: Path) -> tuple[bytes, bytes, list[bytes], Path]:
    """12,000 events in two parts (9,000 then 3,000), the output one run of all of them gives, and the followed
    file holding the first part."""
    events = list(synth.generate(12000, seed=21))
    first, second = b"\n".join(events[:9000]) + b"\n", b"\n".join(events[9000:]) + b"\n"
    followed = tmp_path / "followed.log"
    followed.write_bytes(first)
    return first, second, expected_output(tmp_path, first + second), followed


def test_follow_killed_mid_stream_and_restarted_loses_nothing(tmp_path: Path) -> None:
    first, second, want, followed = followed_in_two_parts(tmp_path)
    with follow(tmp_path, ["--workers", "2"]) as run:
        until(lambda: len(run.worker_pids()) == 2 and len(run.output_lines()) > 0, "the first output")
        run.proc.kill()
        assert run.proc.wait(60) == -signal.SIGKILL
    torn = run.out.read_bytes()
    if torn and not torn.endswith(b"\n"):
        # SIGKILL in the middle of a write leaves a torn last line in the output file: its record was not
        # acknowledged, so the restart writes it again whole (a reader of the file drops the torn tail as well)
        run.out.write_bytes(torn[:torn.rfind(b"\n") + 1])
    written = run.output_lines()
    position = Checkpoint(str(tmp_path / "checkpoint")).load()
    committed = 0 if position is None else first[:position.offset].count(b"\n")
    assert written[:committed] == want[:committed]  # never ahead of what reached the output
    with follow(tmp_path, ["--workers", "2"], run=1) as again:
        with followed.open("ab") as appended:
            appended.write(second)
        until(lambda: len(set(again.output_lines())) >= len(want), "every event after the restart")
        again.proc.send_signal(signal.SIGTERM)
        assert again.proc.wait(60) == 0
    output = again.output_lines()
    assert set(output) == set(want)  # nothing lost, nothing invented (a restart may repeat: at-least-once)
    assert output[len(output) - len(want) + committed:] == want[committed:]  # the rerun is in order


@pytest.mark.parametrize("when", ["mid-stream", "idle"])
def test_follow_worker_killed_is_replaced_nothing_lost_nothing_repeated(tmp_path: Path, when: str) -> None:
    """A worker SIGKILLed with chunks in flight, or while the run waits for more input (which once left the
    parent following forever with a dead worker): replaced, its chunks redone — the output is one run's."""
    first, second, want, followed = followed_in_two_parts(tmp_path)
    with follow(tmp_path, ["--workers", "2"]) as run:
        until(lambda: len(run.worker_pids()) == 2 and len(run.output_lines()) > 0, "the first output")
        if when == "idle":
            until(lambda: len(run.output_lines()) == 9000, "the first part written")
        victim = run.worker_pids()[1]
        os.kill(victim, signal.SIGKILL)
        until(lambda: any(r["message"] == "worker process 1 replaced" for r in run.records()), "the replacement")
        warning = next(r for r in run.records() if r["level"] == "warning" and f"(pid {victim})" in r["message"])
        assert warning["worker"] == 1
        with followed.open("ab") as appended:
            appended.write(second)
        until(lambda: len(run.output_lines()) >= len(want), "every event")
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(60) == 0
    assert run.output_lines() == want  # in order, nothing lost, nothing written twice
    assert not [r for r in run.records() if r["level"] == "error"]


def test_sigterm_ends_the_run_and_its_workers_within_grace(tmp_path: Path) -> None:
    grace = 2.0
    (tmp_path / "followed.log").write_bytes(b"\n".join(synth.generate(3000, seed=4)) + b"\n")
    with follow(tmp_path, ["--workers", "2", "--grace", str(grace)]) as run:
        until(lambda: len(run.output_lines()) == 3000 and len(run.worker_pids()) == 2, "the whole file out")
        pids = run.worker_pids()
        sent = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(grace + EXIT_MARGIN + 5) == 0
        assert time.monotonic() - sent < grace + EXIT_MARGIN + 5
        until(lambda: all(gone(pid) for pid in pids), "the workers to end", timeout=10)


def test_sighup_reload_reaches_every_worker(tmp_path: Path) -> None:
    config = tmp_path / "tetrapipe.yaml"
    config.write_text("egress: {}\n")
    followed = tmp_path / "followed.log"
    followed.write_bytes(b"")
    events = list(synth.generate(400, seed=8, mix={"egress": 1}))
    with follow(tmp_path, ["--workers", "2", "--config", str(config)]) as run:
        until(lambda: len(run.worker_pids()) == 2, "the workers")
        with followed.open("ab") as out:
            out.write(b"\n".join(events[:100]) + b"\n")
        until(lambda: len(run.output_lines()) == 100, "the first events")
        config.write_text('egress:\n  zones: [{name: everything, cidrs: [0.0.0.0/0, "::/0"]}]\n')
        run.proc.send_signal(signal.SIGHUP)
        until(lambda: any(r["message"].startswith("reloaded configuration") for r in run.records()), "the reload")
        for i in range(100, 400, 50):  # one chunk each: the workers take turns
            with followed.open("ab") as out:
                out.write(b"\n".join(events[i:i + 50]) + b"\n")
            until(lambda n=i + 50: len(run.output_lines()) == n, "a chunk of events")  # type: ignore[misc]
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(60) == 0
    zones = [orjson.loads(line)["tetrapipe"]["egress"]["zone"] for line in run.output_lines()]
    assert "public" in zones[:100] and "everything" not in zones[:100]
    assert "everything" in zones[100:] and "public" not in zones[100:]


def test_a_top_level_rate_limit_is_refused_at_start_and_on_reload(tmp_path: Path) -> None:
    """Its token buckets are per process: N workers would let N times the rate through (and send no
    rate_limit_info), so it is refused at start (exit 2) and a reload that adds one is rejected."""
    limited = tmp_path / "limited.yaml"
    limited.write_text("rate_limit: {rate: 1, burst: 5, keys: [node_name]}\n")
    done = subprocess.run(tetrapipe("--workers", "2", "--config", str(limited)), input=b"", capture_output=True,
                          env=environment(), cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 2 and b"top-level rate_limit or dedup" in done.stderr, done.stderr[-1000:]
    config = tmp_path / "tetrapipe.yaml"
    config.write_text("egress: {}\n")
    followed = tmp_path / "followed.log"
    followed.write_bytes(b"")
    events = list(synth.generate(200, seed=9))
    with follow(tmp_path, ["--workers", "2", "--config", str(config)]) as run:
        until(lambda: len(run.worker_pids()) == 2, "the workers")
        config.write_text("dedup: {window: 60, keys: [node_name]}\n")
        run.proc.send_signal(signal.SIGHUP)
        until(lambda: any("top-level rate_limit or dedup" in r["message"] for r in run.records()), "the rejection")
        with followed.open("ab") as out:
            out.write(b"\n".join(events) + b"\n")
        until(lambda: len(run.output_lines()) == len(events), "every event (the running configuration)")
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(60) == 0


def test_sigterm_on_stdin_delivers_every_line_read_in_order(tmp_path: Path) -> None:
    """A stop while chunks are with the workers: what was read is finished and written (stdin is not read again)."""
    events = list(synth.generate(15000, seed=6))
    want = expected_output(tmp_path, b"\n".join(events) + b"\n")
    out = tmp_path / "out.jsonl"
    with out.open("wb") as stdout:
        proc = subprocess.Popen(tetrapipe("--workers", "2", *CIDRS), stdin=subprocess.PIPE, stdout=stdout,
                                stderr=subprocess.PIPE, env=environment(), cwd=ROOT)
    assert proc.stdin is not None and proc.stderr is not None
    try:
        with contextlib.suppress(BrokenPipeError):
            for start in range(0, len(events), 3000):  # then stays open: a live stream
                proc.stdin.write(b"\n".join(events[start:start + 3000]) + b"\n")
                proc.stdin.flush()
                if start == 6000:
                    until(lambda: len(out.read_bytes().splitlines()) > 0, "the first output")
                    proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == 0, err[-2000:]
    summary = next(orjson.loads(line) for line in err.splitlines() if b'"run summary"' in line)
    written = out.read_bytes().splitlines()
    assert summary["records_read"] == summary["events"] == len(written) >= 1  # every line read was written
    assert written == want[:len(written)]  # in order, without a gap


def test_unsupported_outputs_and_bad_counts_are_refused(tmp_path: Path) -> None:
    for args, message in [(["--otlp-endpoint", "http://127.0.0.1:9"], b"stdout output"),
                          (["--peers-learn"], b"peer naming"), (["--workers", "0"], b"between 1 and 256")]:
        done = subprocess.run(tetrapipe("--workers", "2", *args), input=b"", capture_output=True,
                              env=environment(), cwd=ROOT, timeout=60, check=False)
        assert done.returncode == 2 and message in done.stderr, done.stderr[-1000:]


def test_auto_is_the_cpus_this_process_may_use() -> None:
    from tetrapipe.cli.workers import workers_count

    assert workers_count("auto") == len(os.sched_getaffinity(0))
    assert workers_count("3") == 3
