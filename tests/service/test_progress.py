"""The progress line and the exit table: unit checks, and a real run with stderr on a terminal (a pty)."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

from tests.support import synth
from tetrapipe.pipeline.stats import Stats
from tetrapipe.service.progress import CLEAR, Progress, summary_table

ROOT = Path(__file__).resolve().parents[2]


class FileLike:
    def __init__(self, done: int, total: int | None) -> None:
        self.done, self.total = done, total

    def progress(self) -> tuple[int, int | None]:
        return self.done, self.total


def test_the_line_shows_rate_file_share_bad_records_and_categories() -> None:
    now = [100.0]
    stats = Stats()
    source = FileLike(0, 2_000_000)
    progress = Progress(stats, source, io.StringIO(), interval=0.5, clock=lambda: now[0])
    stats.received, stats.bad["invalid_json"] = 40_000, 3
    stats.categories.update({"egress": 120, "sudo": 4})
    source.done = 500_000
    now[0] += 2.0
    line = progress.line(width=200)
    assert line == "tetrapipe: 40,000 records · 20,000/s · 25% of 2.0 MB · 3 bad · egress 120 · sudo 4"
    assert len(progress.line(width=30)) < 30 and progress.line(width=30).endswith("…")  # never wraps
    assert "% of" not in Progress(stats, FileLike(5, None), io.StringIO()).line(width=200)  # a pipe: size unknown


def test_the_table_has_categories_with_groups_and_shares_zones_and_outputs() -> None:
    stats = Stats()
    stats.received, stats.events = 1000, 998
    stats.bad["invalid_json"] = 2
    stats.categories.update({"sudo": 10, "egress": 200})
    stats.zones.update({"public": 200, "pod": 50})
    stats.sent["stdout"] = 998
    stats.filtered["stdout"] = 0
    table = summary_table(stats, {"sudo": "security", "egress": "network"}, elapsed=2.0)
    lines = table.splitlines()
    assert lines[0].startswith("tetrapipe: 1,000 records read, 998 events in 2.00 s (500 records/s); 2 bad")
    rows = [line.split() for line in lines[1:] if line.strip()]
    assert ["egress", "network", "200", "20.0%"] in rows and ["sudo", "security", "10", "1.0%"] in rows
    assert rows.index(["egress", "network", "200", "20.0%"]) < rows.index(["sudo", "security", "10", "1.0%"])
    assert ["public", "200"] in rows and ["pod", "50"] in rows and ["stdout", "998"] in rows
    assert ["invalid_json", "2"] in rows


def read_all(fd: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> bytes:
    out = b""
    for _ in range(int(timeout / 0.1)):
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


def on_terminal(tmp_path: Path, events: int, *extra: str, stdout_too: bool = False) -> str:
    """Run `tetrapipe run --input FILE` with stderr (and, if asked, stdout) on a pty; what the terminal showed."""
    path = tmp_path / "tetragon.log"
    path.write_bytes(b"\n".join(synth.generate(events, seed=2)) + b"\n")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tetrapipe.cli.main", "run", "--input", str(path), *extra],
                            stdout=slave if stdout_too else subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "TETRAPIPE_LOG_FORMAT": "auto"})
    os.close(slave)
    try:
        screen = read_all(master, proc).decode(errors="replace")
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return screen


def test_a_run_on_a_terminal_shows_progress_then_the_table(tmp_path: Path) -> None:
    screen = on_terminal(tmp_path, 60_000)
    assert CLEAR in screen and "records · " in screen and "% of " in screen, screen[:500]
    assert "60,000 records read" in screen and "category" in screen and "share" in screen
    assert not any(line.lstrip(CLEAR).startswith("{") for line in screen.splitlines()), "JSON logs on a terminal"


def test_no_progress_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "tetrapipe.cli.main", "run", "--log-format", "text"],
                            input=b"\n".join(synth.generate(100, seed=1)) + b"\n", capture_output=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert result.returncode == 0 and b"\x1b[" not in result.stderr and b"100 records read" in result.stderr


def test_no_progress_when_the_events_themselves_go_to_the_terminal(tmp_path: Path) -> None:
    screen = on_terminal(tmp_path, 2000, "--format", "summary", stdout_too=True)
    assert CLEAR not in screen and "2,000 records read" in screen  # the table still ends the run


def test_unknown_event_types_are_listed_and_counts_are_for_people() -> None:
    from tetrapipe.event.decode import LineDecoder
    from tetrapipe.event.envelope import Batch, Envelope

    stats = Stats()
    lines = [b'{"process_connect":{"process":{"binary":"/bin/nc"}},"time":"t"}'] * 1234
    lines.append(b'{"process_exec":{"process":{"binary":"/bin/ls"}},"time":"t"}')
    batch = Batch([Envelope(line, i) for i, line in enumerate(lines)], None)
    decoder = LineDecoder()
    for env in batch.envelopes:
        env.decoded = decoder.decode(env.raw)
    batch.good = batch.envelopes  # as the processor leaves it: every record decoded
    stats.count_batch(batch)
    stats.incomplete = 1
    assert stats.unknown_event_types() == {"process_connect": 1234}
    assert stats.summary_fields()["unknown_event_types"] == {"process_connect": 1234}  # raw numbers in JSON
    assert "unknown_event_types" not in Stats().summary_fields()
    table = summary_table(stats, {}, elapsed=1.0)
    assert table.splitlines()[0].startswith("tetrapipe: 1,235 records read, 1,235 events in 1.00 s")
    assert "1 incomplete event forwarded" in table and "0 blank lines skipped" in table
    assert "unknown event types, forwarded untagged: process_connect 1,234" in table


def test_a_failing_sink_is_on_the_line_with_since_when_and_what_is_undelivered() -> None:
    now = [100.0]
    failing: dict[str, str] = {}
    stats = Stats()
    progress = Progress(stats, FileLike(0, None), io.StringIO(), clock=lambda: now[0], failing=lambda: failing)
    stats.received, stats.in_flight_events = 5000, 1200
    assert "failing" not in progress.line(width=300)
    failing["kafka"] = "KafkaTimeoutError"
    assert "kafka failing for 0 s, 1,200 events undelivered" in progress.line(width=300)
    now[0] += 42
    line = progress.line(width=300)
    assert line.split(" · ")[2] == "kafka failing for 42 s, 1,200 events undelivered"  # early: never cut off
    failing.clear()
    assert "failing" not in progress.line(width=300)
    failing["kafka"] = "again"
    now[0] += 5
    assert "kafka failing for 0 s" in progress.line(width=300)  # a new outage counts from its own start


def test_outputs_show_retries_and_delivered_and_the_undelivered_rest_is_said() -> None:
    stats = Stats()
    stats.received = stats.events = 3000
    stats.sent["stdout"] = 3000
    stats.sink_errors["kafka"], stats.sink_retries["kafka"] = 1500, 1499  # never delivered anything
    stats.in_flight_events = 3000
    table = summary_table(stats, {}, elapsed=1.0)
    rows = [line.split() for line in table.splitlines() if line.strip()]
    assert ["output", "retries", "delivered", "not", "selected"] in rows
    assert ["kafka", "1,499", "0"] in rows and ["stdout", "3,000"] in rows
    assert table.rstrip().endswith("3,000 events undelivered, not committed (a Kafka or --follow source reads "
                                   "them again)")
    assert stats.summary_fields()["undelivered"] == 3000
    stats.in_flight_events = 0
    assert "undelivered" not in summary_table(stats, {}, elapsed=1.0) and "undelivered" not in stats.summary_fields()
