"""`tetrapipe run --workers N` with a Kafka source: N members of the consumer group in one pod.

Each member is a child process running the same command line with
`--workers 1` — a full pipeline of its own (consumer, processing, sinks,
commits); the group coordinator spreads the partitions over them, as over
pods.  The parent only supervises:
- SIGTERM/SIGINT are forwarded to every member as SIGTERM (each drains within
  its own `--grace`; a second signal is forwarded too, and members then exit
  at once, as a single run does); SIGHUP is forwarded (each member reloads);
- members run in process groups of their own, so a terminal's Ctrl-C reaches
  them once, through the parent;
- when one member exits (a Kafka source never ends by itself) the others are
  stopped: nothing is restarted silently — the pod exits and its restart
  policy decides;
- the exit status is the highest of the members' (a member killed by a signal
  counts as 1, failed); members still running `--grace` + 3 s after they were
  told to stop are killed (status 3, drain incomplete).
`--metrics-port P` gives member i the port P + i (0: each picks a free one).
stdout output (`--format` with Kafka) is refused: N processes would interleave
their writes on one pipe.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from typing import Any

from tetrapipe.config.root import ConfigFileError
from tetrapipe.logs import emit

POLL = 0.1  # seconds between looks at the members
KILL_MARGIN = 3.0  # past --grace after a stop: a member's own exit bound (grace + 2 s) and some slack
EXIT_FAILED = 1
EXIT_DRAIN_INCOMPLETE = 3


def member_commands(args: argparse.Namespace, workers: int, argv: list[str]) -> list[list[str]]:
    """The command line of each member: the parent's, with one worker and its own metrics port."""
    commands = []
    for i in range(workers):
        extra = ["--workers", "1"]
        if args.metrics_port:
            extra += ["--metrics-port", str(args.metrics_port + i)]
        commands.append([sys.executable, "-m", "tetrapipe", *argv, *extra])
    return commands


def supervise(args: argparse.Namespace, workers: int, argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["run"]:
        raise ConfigFileError("--workers with a Kafka source needs the command line it was started with")
    if args.format_given:
        raise ConfigFileError(f"--workers {workers} with a Kafka source and --format (stdout): the members would "
                              "interleave their output on one stdout; drop --format or use --workers 1")
    members = [subprocess.Popen(cmd, process_group=0) for cmd in member_commands(args, workers, argv)]  # noqa: S603
    emit(None, "info", f"started {workers} consumer group members", pids=[m.pid for m in members])
    return _watch(members, args.grace)


def _watch(members: list[subprocess.Popen[Any]], grace: float) -> int:
    stop_at: list[float] = []  # when the members were told to stop

    def stop(sig: int = signal.SIGTERM) -> None:
        if not stop_at:
            stop_at.append(time.monotonic())
        for member in members:
            if member.poll() is None:
                member.send_signal(sig)

    def forward(signum: int, _frame: Any) -> None:
        stop(signal.SIGHUP if signum == signal.SIGHUP else signal.SIGTERM)
        if signum == signal.SIGHUP:
            stop_at.clear()  # a reload, not a stop

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    codes: dict[int, int] = {}
    try:
        while len(codes) < len(members):
            for i, member in enumerate(members):
                code = member.poll()
                if code is None or i in codes:
                    continue
                codes[i] = code if code >= 0 else EXIT_FAILED
                if not stop_at:
                    emit(None, "error" if code else "warning",
                         f"consumer group member {i} (pid {member.pid}) exited with status {code}; "
                         "stopping the others (nothing is restarted)")
                    stop()
            if stop_at and time.monotonic() > stop_at[0] + grace + KILL_MARGIN:
                for i, member in enumerate(members):
                    if member.poll() is None:
                        member.kill()
                        member.wait()
                        codes[i] = EXIT_DRAIN_INCOMPLETE
            time.sleep(POLL)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for member in members:
            if member.poll() is None:
                member.kill()
    return max(codes.values(), default=0)
