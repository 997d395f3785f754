"""The `follow` source on real files: appends, rotation, truncation, restarts from the checkpoint.

Every test runs the real Pipeline (or the source alone) against files in
tmp_path; every wait is bounded (`until`), so a regression fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.events import exec_event
from tests.support.fakes import ScriptedSink
from tetrapipe.event.decode import LineDecoder
from tetrapipe.event.oversized import Oversized
from tetrapipe.pipeline.commit import Committer
from tetrapipe.pipeline.processor import Processor
from tetrapipe.pipeline.report import BadInputReporter
from tetrapipe.pipeline.runner import EXIT_DRAIN_INCOMPLETE, EXIT_FAILED, EXIT_OK, Pipeline, RetryPolicy
from tetrapipe.sinks.file import FileDeadLetter
from tetrapipe.sources import source_config
from tetrapipe.sources.base import SourceError
from tetrapipe.sources.follow.checkpoint import FilePosition, write_atomically
from tetrapipe.sources.follow.followed import LinePosition, last_line_boundary
from tetrapipe.sources.follow.source import FollowSource

POLL = 0.02
WAIT = 10.0  # upper bound for any wait; a passing run takes a fraction of it


def line(seq: int) -> bytes:
    return orjson.dumps(exec_event("/bin/ls", f"seq-{seq}")) + b"\n"


def lines(first: int, count: int) -> bytes:
    return b"".join(line(i) for i in range(first, first + count))


def seqs(sink: ScriptedSink) -> list[int]:
    return [int(orjson.loads(e.raw)["process_exec"]["process"]["arguments"][4:]) for e in sink.delivered]


async def until(condition: Callable[[], bool], timeout: float = WAIT, what: Callable[[], str] = str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached in time {what()}")
        await asyncio.sleep(0.01)


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def checkpoint(path: Path) -> dict[str, int | str]:
    return json.loads(path.read_text())


class Run:
    """One tetrapipe run in the background: FollowSource → real Pipeline → recording sink."""

    def __init__(self, processor, log_path: Path, ckpt: Path, sink: ScriptedSink | None = None,
                 grace: float = 5.0, **source_kw) -> None:
        self.log = io.StringIO()
        self.source = FollowSource(str(log_path), str(ckpt), poll_interval=POLL, log=self.log, **source_kw)
        self.sink = sink or ScriptedSink()
        self.pipeline = Pipeline(self.source, processor, [self.sink], log=self.log, grace=grace,
                                 committer=Committer(self.source.commit, interval=0.01),
                                 retry=RetryPolicy(initial=0.001, maximum=0.01))
        self.task: asyncio.Task[int] | None = None

    def __enter__(self) -> Run:
        self.task = asyncio.ensure_future(self.pipeline.run())
        return self

    async def stop(self) -> int:
        assert self.task is not None
        self.pipeline.request_stop()
        return await asyncio.wait_for(self.task, WAIT)

    def __exit__(self, *exc: object) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def delivered(self, n: int) -> list[int]:
        await until(lambda: len(self.sink.delivered) >= n, what=lambda: f"delivered: {seqs(self.sink)}")
        return seqs(self.sink)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "tetragon.log", tmp_path / "tetragon.log.tetrapipe-checkpoint"


async def test_appends_are_picked_up_and_checkpointed(processor, files):
    log, ckpt = files
    log.write_bytes(lines(0, 3))
    with Run(processor, log, ckpt) as run:
        assert await run.delivered(3) == [0, 1, 2]
        append(log, lines(3, 2))
        append(log, lines(5, 3))
        assert await run.delivered(8) == list(range(8))
        assert await run.stop() == EXIT_OK
    saved = checkpoint(ckpt)
    st = log.stat()
    assert (saved["dev"], saved["inode"], saved["offset"]) == (st.st_dev, st.st_ino, st.st_size)
    assert saved["path"] == str(log)


async def test_envelopes_carry_the_line_offset_for_reports(processor, files):
    log, ckpt = files
    data = lines(0, 4)
    log.write_bytes(data)
    with Run(processor, log, ckpt) as run:
        await run.delivered(4)
        await run.stop()
    positions = [e.position for e in run.sink.delivered]
    assert all(isinstance(p, LinePosition) and p.file == "tetragon.log" for p in positions)
    assert [data[p.offset:].split(b"\n", 1)[0] for p in positions] == [e.raw for e in run.sink.delivered]
    assert run.source.describe(positions[1]) == f"tetragon.log offset {positions[1].offset}"


async def test_rotation_by_rename_while_running_loses_and_repeats_nothing(processor, files):
    log, ckpt = files
    total, per_file = 600, 100
    with Run(processor, log, ckpt) as run:
        fh = open(log, "ab")  # noqa: SIM115 - the writer keeps its file open, as Tetragon does
        try:
            for i in range(total):
                if i and i % per_file == 0:
                    # Tetragon's export (lumberjack): close, rename to a backup name, create a new file.
                    fh.close()
                    os.rename(log, log.with_name(f"tetragon-{i:04d}.log"))
                    fh = open(log, "ab")  # noqa: SIM115
                fh.write(line(i))
                fh.flush()
                if i % 7 == 0:
                    await asyncio.sleep(0.002)  # let the source catch up at random points, mid-file too
        finally:
            fh.close()
        assert await run.delivered(total) == list(range(total))
        await asyncio.sleep(5 * POLL)  # nothing more comes: no line read twice after the last rotation
        assert len(run.sink.delivered) == total
        assert await run.stop() == EXIT_OK
    assert checkpoint(ckpt)["inode"] == log.stat().st_ino
    assert checkpoint(ckpt)["offset"] == log.stat().st_size


async def test_rotation_drains_lines_written_to_the_old_file_after_the_rename(processor, files):
    log, ckpt = files
    log.write_bytes(lines(0, 2))
    with Run(processor, log, ckpt) as run:
        await run.delivered(2)
        with open(log, "ab") as old:
            os.rename(log, log.with_name("tetragon.log.1"))
            log.write_bytes(lines(10, 2))  # the new file exists ...
            old.write(lines(2, 3))  # ... while the writer still flushes into the old one (logrotate `create`)
        assert await run.delivered(7) == [0, 1, 2, 3, 4, 10, 11]
        await run.stop()


async def test_unterminated_last_line_of_a_rotated_file_is_handed_over(processor, files):
    log, ckpt = files
    log.write_bytes(lines(0, 2) + line(2).rstrip(b"\n"))
    with Run(processor, log, ckpt) as run:
        await run.delivered(2)
        os.rename(log, log.with_name("tetragon.log.1"))
        log.write_bytes(lines(3, 1))
        assert await run.delivered(4) == [0, 1, 2, 3]
        await run.stop()


async def test_truncation_in_place_restarts_at_zero(processor, files):
    log, ckpt = files
    log.write_bytes(lines(0, 10))
    with Run(processor, log, ckpt) as run:
        await run.delivered(10)
        # copytruncate: the content was copied away, the file emptied in place, the writer goes on.
        os.truncate(log, 0)
        await asyncio.sleep(3 * POLL)
        append(log, lines(100, 2))
        assert await run.delivered(12) == [*range(10), 100, 101]
        assert await run.stop() == EXIT_OK
    assert "truncated" in run.log.getvalue()
    assert checkpoint(ckpt)["offset"] == log.stat().st_size


async def test_a_partial_last_line_waits_for_its_newline(processor, files):
    log, ckpt = files
    third = line(2)
    log.write_bytes(lines(0, 2) + third[:25])
    with Run(processor, log, ckpt) as run:
        await run.delivered(2)
        await asyncio.sleep(10 * POLL)
        assert len(run.sink.delivered) == 2
        await until(lambda: run.source.checkpointed is not None)
        assert run.source.checkpointed.offset == len(lines(0, 2))  # not into the unfinished line
        append(log, third[25:])
        assert await run.delivered(3) == [0, 1, 2]
        await run.stop()
    assert checkpoint(ckpt)["offset"] == log.stat().st_size


@pytest.mark.expect_errors
async def test_restart_continues_exactly_after_the_last_acknowledged_line(processor, files):
    log, ckpt = files
    log.write_bytes(lines(0, 20))
    with Run(processor, log, ckpt) as run:
        await run.delivered(20)
        assert await run.stop() == EXIT_OK
    acked = len(lines(0, 20))
    assert checkpoint(ckpt)["offset"] == acked

    # A run whose sink never acknowledges: what it read is not checkpointed.
    append(log, lines(20, 10))
    stuck = ScriptedSink()
    stuck.release = asyncio.Event()  # never set: every write hangs
    with Run(processor, log, ckpt, sink=stuck, grace=0.2) as run:
        await until(lambda: stuck.attempts >= 1)
        assert await run.stop() == EXIT_DRAIN_INCOMPLETE
    assert checkpoint(ckpt)["offset"] == acked

    # A run whose sink fails for good: same.
    broken = ScriptedSink()
    broken.fail_fatal = True
    with Run(processor, log, ckpt, sink=broken) as run:
        assert await asyncio.wait_for(run.task, WAIT) == EXIT_FAILED
    assert checkpoint(ckpt)["offset"] == acked

    append(log, lines(30, 5))
    with Run(processor, log, ckpt) as run:
        assert await run.delivered(15) == list(range(20, 35))
        await asyncio.sleep(5 * POLL)
        assert len(run.sink.delivered) == 15
        assert await run.stop() == EXIT_OK
    assert checkpoint(ckpt)["offset"] == log.stat().st_size


async def test_restart_after_rotation_while_down_reads_the_rest_then_the_new_file(processor, files):
    log, ckpt = files
    log.write_bytes(lines(0, 10))
    with Run(processor, log, ckpt) as run:
        await run.delivered(10)
        await run.stop()
    append(log, lines(10, 5))  # written after the stop ...
    os.rename(log, log.with_name("tetragon-2024-05-14T09-00-00.000.log"))  # ... then rotated away
    log.write_bytes(lines(15, 7))
    with Run(processor, log, ckpt) as run:
        assert await run.delivered(12) == list(range(10, 22))
        await asyncio.sleep(5 * POLL)
        assert len(run.sink.delivered) == 12
        assert await run.stop() == EXIT_OK
    assert "rotated while tetrapipe was down" in run.log.getvalue()
    assert checkpoint(ckpt)["inode"] == log.stat().st_ino


async def test_restart_after_several_rotations_while_down_reads_every_file_in_order(processor, files):
    log, ckpt = files
    log.write_bytes(lines(0, 4))
    with Run(processor, log, ckpt) as run:
        await run.delivered(4)
        await run.stop()
    append(log, lines(4, 2))
    os.rename(log, log.with_name("tetragon.log.2"))
    log.write_bytes(lines(6, 3))
    os.rename(log, log.with_name("tetragon.log.1"))
    log.write_bytes(lines(9, 2))
    with Run(processor, log, ckpt) as run:
        assert await run.delivered(7) == list(range(4, 11))
        await asyncio.sleep(5 * POLL)
        assert len(run.sink.delivered) == 7
        await run.stop()


async def test_restart_when_the_checkpointed_file_is_gone_warns_and_reads_the_new_file(processor, files):
    log, ckpt = files
    log.write_bytes(lines(0, 3))
    with Run(processor, log, ckpt) as run:
        await run.delivered(3)
        await run.stop()
    new = log.with_name("new")
    new.write_bytes(lines(3, 2))  # created while the old inode is alive: a different number
    log.unlink()
    new.rename(log)
    with Run(processor, log, ckpt) as run:
        assert await run.delivered(2) == [3, 4]
        await run.stop()
    assert "may be lost" in run.log.getvalue()


async def test_restart_after_truncation_while_down_reads_from_zero(processor, files):
    log, ckpt = files
    log.write_bytes(lines(0, 5))
    with Run(processor, log, ckpt) as run:
        await run.delivered(5)
        await run.stop()
    os.truncate(log, 0)
    append(log, lines(5, 1))
    with Run(processor, log, ckpt) as run:
        assert await run.delivered(1) == [5]
        await run.stop()
    assert "truncated while tetrapipe was down" in run.log.getvalue()


async def test_first_run_from_the_end_skips_what_is_there(processor, files):
    log, ckpt = files
    log.write_bytes(lines(0, 5) + line(5)[:10])  # the writer is in the middle of line 5
    with Run(processor, log, ckpt, start_at="end") as run:
        await asyncio.sleep(5 * POLL)
        append(log, line(5)[10:] + lines(6, 2))
        assert await run.delivered(3) == [5, 6, 7]  # line 5 whole, not its tail alone
        await run.stop()


async def test_missing_file_is_waited_for_and_stop_is_prompt(processor, files):
    log, ckpt = files
    with Run(processor, log, ckpt) as run:
        await asyncio.sleep(5 * POLL)
        log.write_bytes(lines(0, 2))
        assert await run.delivered(2) == [0, 1]
        assert await asyncio.wait_for(run.stop(), 2.0) == EXIT_OK
    assert "waiting for" in run.log.getvalue()


async def test_file_removed_and_recreated_while_running(processor, files):
    log, ckpt = files
    log.write_bytes(lines(0, 2))
    with Run(processor, log, ckpt) as run:
        await run.delivered(2)
        log.unlink()
        await asyncio.sleep(5 * POLL)
        log.write_bytes(lines(2, 2))
        assert await run.delivered(4) == [0, 1, 2, 3]
        await run.stop()


async def take(batches: Any, n: int, got: list[tuple[bytes, int]], commits: list[FilePosition]) -> None:
    """Pull batches until `got` holds `n` (raw, offset) pairs; their commit positions into `commits`."""
    while len(got) < n:
        batch = await asyncio.wait_for(anext(batches), WAIT)
        got.extend((e.raw, e.position.offset) for e in batch)
        commits.append(batch.commit_position)


async def test_positions_stay_exact_around_oversized_lines(files):
    """Offsets of lines and of the commit position, whatever the chunking, with lines over `max_line`;
    an oversized line comes whole (spilled) once its newline is written, never before."""
    log, ckpt = files
    records = [b"a" * 5, b"b" * 40, b"c" * 3, b"d" * 25, b"e"]  # max_line 20: b and d are oversized
    data = b"".join(r + b"\n" for r in records)
    starts = [data.index(r) for r in records]
    for chunk_size in (1, 3, 7, 16, 64, 1000):
        log.write_bytes(data + b"f" * 30)  # an unfinished oversized line at the end
        ckpt.unlink(missing_ok=True)
        source = FollowSource(str(log), str(ckpt), poll_interval=POLL, chunk_size=chunk_size, max_line=20,
                              log=io.StringIO(), spill=io.BytesIO)
        await source.start()
        got: list[tuple[bytes, int]] = []
        commits: list[FilePosition] = []
        batches = source.batches()
        await take(batches, len(records), got, commits)
        assert commits[-1].offset == len(data)  # never past the unfinished line
        pending = asyncio.ensure_future(take(batches, len(records) + 1, got, commits))
        await asyncio.sleep(5 * POLL)
        assert not pending.done()  # the unfinished oversized line waits for its newline
        append(log, b"f" * 10 + b"\n")
        await asyncio.wait_for(pending, WAIT)
        source.stop()
        await batches.aclose()
        await source.close()
        assert [off for _, off in got] == [*starts, len(data)], chunk_size
        assert [type(raw) is Oversized for raw, _ in got] == [False, True, False, True, False, True]
        assert [raw.spool.read() for raw, _ in got if type(raw) is Oversized] == [b"b" * 40, b"d" * 25, b"f" * 40]
        assert [e for e, _ in got if type(e) is Oversized] == [b"b" * 20, b"d" * 20, b"f" * 20]
        assert commits[-1].offset == len(data) + 41


async def test_stop_while_idle_ends_batches_promptly(files):
    log, ckpt = files
    log.write_bytes(b"")
    source = FollowSource(str(log), str(ckpt), poll_interval=30.0, log=io.StringIO())
    await source.start()
    batches = source.batches()
    pending = asyncio.ensure_future(anext(batches))
    await asyncio.sleep(0.05)
    source.stop()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 2.0)
    await source.close()


def test_checkpoint_is_written_to_a_temp_file_and_renamed(tmp_path, monkeypatch):
    target = tmp_path / "ckpt"
    target.write_text('{"old": true}\n')
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src, dst):
        renames.append((str(src), str(dst)))
        assert json.loads(Path(src).read_text()) == {"new": 1}  # complete before it becomes visible
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_atomically(str(target), '{"new": 1}\n')
    [(src, dst)] = renames
    assert dst == str(target) and os.path.dirname(src) == str(tmp_path) and src != dst
    assert not os.path.exists(src)
    assert json.loads(target.read_text()) == {"new": 1}


def test_a_write_killed_before_the_rename_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    target = tmp_path / "ckpt"
    target.write_text('{"old": true}\n')

    def crash(fd):
        raise OSError("killed")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        write_atomically(str(target), '{"new": 1}\n')
    assert json.loads(target.read_text()) == {"old": True}


async def test_commit_writes_only_acknowledged_positions_given_to_it(files):
    log, ckpt = files
    log.write_bytes(lines(0, 3))
    source = FollowSource(str(log), str(ckpt), poll_interval=POLL, log=io.StringIO())
    await source.start()
    batch = await asyncio.wait_for(anext(source.batches()), WAIT)
    assert not ckpt.exists()  # reading alone writes nothing
    await source.commit(batch.commit_position)
    st = log.stat()
    assert checkpoint(ckpt) == {"dev": st.st_dev, "inode": st.st_ino, "offset": st.st_size, "path": str(log)}
    source.stop()
    await source.close()


async def test_unusable_checkpoints_fail_at_start(files, tmp_path):
    log, ckpt = files
    log.write_bytes(lines(0, 1))
    with pytest.raises(SourceError, match="not writable"):
        await FollowSource(str(log), str(tmp_path / "missing" / "ckpt")).start()
    ckpt.write_text('{"dev": 1, "ino')
    with pytest.raises(SourceError, match="unreadable"):
        await FollowSource(str(log), str(ckpt)).start()


def test_last_line_boundary(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc\ndef\ngh")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert last_line_boundary(fd, 10, 100, block=3) == 8
        assert last_line_boundary(fd, 3, 100) == 0
    finally:
        os.close(fd)


def test_registered_as_follow():
    config = source_config("follow")(path="events.log", checkpoint="pos.json")
    assert isinstance(config.build(), FollowSource)


def test_sigterm_to_tetrapipe_follow_drains_checkpoints_and_a_restart_resumes_exactly(files) -> None:
    """The DaemonSet's life: SIGTERM mid-stream (a rolling update) exits 0 having checkpointed what it
    delivered; the next pod continues from there — every line out once, none lost, none repeated."""
    import os
    import signal
    import subprocess
    import sys
    import time

    log, ckpt = files
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "tetrapipe.cli.main", "run", "--follow", str(log), "--checkpoint", str(ckpt),
           "--log-format", "json"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    append(log, lines(0, 2000))
    outputs = []
    for run_no, (first, count) in enumerate([(2000, 3000), (5000, 1000)]):
        out_path = log.parent / f"out{run_no}.jsonl"
        with out_path.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, cwd=root, env=env)
        try:
            for i in range(first, first + count, 250):  # still being written when the signal comes
                append(log, lines(i, 250))
                time.sleep(0.02)
            if run_no == 0:  # stop it once it is under way, while lines are still being appended
                deadline = time.monotonic() + 30
                while not out_path.read_bytes() and time.monotonic() < deadline:
                    time.sleep(0.01)
            if run_no == 1:  # let the second run reach the end of the file before it is stopped
                deadline = time.monotonic() + 30
                while len(out_path.read_bytes().splitlines()) < 6000 - len(outputs) and time.monotonic() < deadline:
                    time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err.decode()[-2000:]
        got = [int(json.loads(x)["process_exec"]["process"]["arguments"][4:])
               for x in out_path.read_bytes().splitlines()]
        saved = checkpoint(ckpt)
        assert saved["offset"] == len(b"".join(log.read_bytes().splitlines(keepends=True)[:len(outputs) + len(got)]))
        outputs += got
    assert outputs == list(range(6000))


async def test_backlog_is_the_unacknowledged_rest_of_the_followed_file(processor, files):
    log, ckpt = files
    log.write_bytes(lines(0, 10))
    gate = asyncio.Event()
    sink = ScriptedSink()
    sink.release = gate  # the outputs hold everything: nothing is acknowledged yet
    with Run(processor, log, ckpt, sink=sink) as run:
        await until(lambda: sink.attempts >= 1)
        assert run.source.backlog() == {str(log): log.stat().st_size}
        append(log, lines(10, 5))
        gate.set()
        await run.delivered(15)
        await until(lambda: run.source.backlog() == {str(log): 0}, what=lambda: str(run.source.backlog()))
        assert await run.stop() == EXIT_OK


def cri_line(tag: str, payload: bytes) -> bytes:
    return b"2024-05-14T09:00:00.1Z stdout " + tag.encode() + b" " + payload + b"\n"


async def test_a_stop_between_partial_cri_lines_and_their_final_line_loses_nothing(processor, files):
    """The checkpoint stays before a group of P lines still waiting for their F line: the next run
    reads them again and joins them (nothing is rejected at a stop: the file is read on later).
    The batch holding them is not checkpointed at all, so its complete lines come again too
    (at-least-once: duplicates, never loss)."""
    log, ckpt = files
    event = line(2)[:-1]
    log.write_bytes(cri_line("F", line(0)[:-1]) + cri_line("F", line(1)[:-1]) + cri_line("P", event[:40]))
    def events(run: Run) -> list[bytes]:
        return [e.decoded.raw for e in run.sink.delivered]

    fresh = Processor(processor.tagger, processor.classifier, LineDecoder())
    with Run(fresh, log, ckpt) as run:
        await until(lambda: len(run.sink.delivered) >= 2)
        await asyncio.sleep(5 * POLL)
        assert await run.stop() == EXIT_OK
        assert events(run) == [line(0)[:-1], line(1)[:-1]]
    assert not ckpt.exists()  # one batch, ending inside the group: nothing committed
    append(log, cri_line("F", event[40:]) + cri_line("F", line(3)[:-1]))
    fresh = Processor(processor.tagger, processor.classifier, LineDecoder())
    with Run(fresh, log, ckpt) as run:
        await until(lambda: len(run.sink.delivered) >= 4)
        await until(lambda: run.source.checkpointed is not None)
        assert await run.stop() == EXIT_OK
        assert events(run) == [line(0)[:-1], line(1)[:-1], event, line(3)[:-1]]
    assert checkpoint(ckpt)["offset"] == log.stat().st_size


async def test_an_oversized_line_reaches_the_file_dead_letter_whole_and_is_checkpointed_past(processor, files,
                                                                                            tmp_path):
    log, ckpt = files
    big = b'{"process_exec":{"process":{"binary":"/bin/big","arguments":"' + b"x" * 200_000 + b'"}}}'
    log.write_bytes(lines(0, 2) + big + b"\n" + lines(2, 1))
    dead = FileDeadLetter(str(tmp_path / "dead.jsonl"))
    sink = ScriptedSink()
    source = FollowSource(str(log), str(ckpt), poll_interval=POLL, chunk_size=4096, max_line=16 << 10,
                          log=io.StringIO(), spill=dead.spool)
    pipeline = Pipeline(source, processor, [sink], dead_letter=dead, log=io.StringIO(), grace=5.0,
                        committer=Committer(source.commit, interval=0.01),
                        reporter=BadInputReporter(io.StringIO(), describe=source.describe))
    task = asyncio.ensure_future(pipeline.run())
    try:
        await until(lambda: len(sink.delivered) >= 3)
        await until(lambda: source.checkpointed is not None and source.checkpointed.offset == log.stat().st_size)
        pipeline.request_stop()
        assert await asyncio.wait_for(task, WAIT) == EXIT_OK
    finally:
        task.cancel()
    assert seqs(sink) == [0, 1, 2]
    assert (tmp_path / "dead.jsonl").read_bytes() == big + b"\n"
    assert pipeline.stats.bad == {"too_large": 1} and pipeline.stats.dead_lettered == 1
