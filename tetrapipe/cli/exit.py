"""How `tetrapipe run` ends: the signals, the bounded teardown, the summary, the process's exit.

Exit of `tetrapipe run` (see `tetrapipe.pipeline.runner` for the pipeline's part):
- the first SIGTERM/SIGINT asks the pipeline to stop; the process exits within
  `--grace` + `EXIT_MARGIN` (2 s) seconds whatever the outputs do — with exit
  code 3 (EXIT_DRAIN_INCOMPLETE) when read input was left undelivered;
- a second signal exits at once with EXIT_DRAIN_INCOMPLETE (or the run's own
  code if it had already ended);
- either way the run summary is written exactly once, last.
How it stays bounded: the event loop is run by `_run_to_end`, not
`asyncio.run`, whose teardown waits without limit for cancelled tasks and
for the default executor's threads; and when something is still stuck after
the bounded teardown (a task ignoring cancellation, a thread blocked in a
call), the process leaves with `os._exit` after the summary — the
interpreter's own exit would join such a thread forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NoReturn

from tetrapipe.logs import current_format as current_log_format
from tetrapipe.logs import emit
from tetrapipe.pipeline.delivery import cancel_and_wait
from tetrapipe.pipeline.runner import EXIT_DRAIN_INCOMPLETE, STOP_MARGIN, Pipeline
from tetrapipe.pipeline.stats import Stats
from tetrapipe.service.progress import Progress, summary_table
from tetrapipe.service.reload import Reloader

if TYPE_CHECKING:
    from tetrapipe.cli.run import Peers

FINISH_TIMEOUT = 0.2  # after the pipeline returned: stopping the progress line and the status server

CLEANUP_TIMEOUT = 0.3  # then: leftover tasks, async generators and worker threads, together

EXIT_MARGIN = STOP_MARGIN + FINISH_TIMEOUT + CLEANUP_TIMEOUT  # past --grace, after the first signal: 2 s

_PARKED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)



class RunSummary:
    """The count summary on stderr: a table for people, one "run summary" record in JSON logs.

    Written at most once — by the normal end of the run or by a second signal,
    whichever comes first — and nothing with `quiet`.  (On a second signal the
    live progress line, if any, was cleared by the log line announcing it.)
    """

    def __init__(self, stats: Stats, groups: Callable[[], Mapping[str, str]], *, quiet: bool = False) -> None:
        self.stats = stats
        self.groups = groups
        self.quiet = quiet
        self.started = time.monotonic()
        self.written = False

    def write(self, code: int) -> None:
        if self.written:
            return
        self.written = True
        if self.quiet:
            return
        if current_log_format() == "json":
            emit(None, "info", "run summary", exit_code=code, **self.stats.summary_fields())
            return
        sys.stderr.write(summary_table(self.stats, self.groups(), time.monotonic() - self.started))
        sys.stderr.flush()



def _exit_now(code: int) -> NoReturn:
    """Leave without the interpreter's teardown, which would join a thread blocked in a call forever.

    Only stderr is flushed: `run` writes nothing through `sys.stdout` (the
    stdout sink writes the descriptor itself), and flushing it could block.
    """
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(code)



def _run_to_end(main: Coroutine[Any, Any, int]) -> tuple[int, bool]:
    """`asyncio.run(main)` with a bounded teardown: (main's result, whether something was left running).

    `asyncio.run` then waits without limit for the tasks it cancels and for the
    default executor's threads (a `to_thread` call blocked in write(2) never
    returns).  Here that teardown gets CLEANUP_TIMEOUT seconds; what is still
    running then is left, and the caller must leave with `_exit_now`.  After
    the loop is closed, SIGTERM/SIGINT/SIGHUP are ignored: the process is about
    to exit, and their default action (die) would lose the summary.
    """
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(thread_name_prefix="tetrapipe-worker")
    loop.set_default_executor(executor)
    asyncio.set_event_loop(loop)
    left_running = True
    try:
        result = loop.run_until_complete(main)
    finally:
        limit = time.monotonic() + CLEANUP_TIMEOUT
        try:
            left_running = loop.run_until_complete(_cancel_leftovers(limit))
            executor.shutdown(wait=False, cancel_futures=True)
            left_running = bool(_join_threads(limit)) or left_running
        finally:
            asyncio.set_event_loop(None)
            _close_and_park_signals(loop)
    return result, left_running



async def _cancel_leftovers(limit: float) -> bool:
    """Cancel the tasks still on the loop and finalize async generators, until `limit`; True if some did not end."""
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    left = await cancel_and_wait(tasks, max(0.0, limit - time.monotonic()))
    finalized = await _within(asyncio.get_running_loop().shutdown_asyncgens(), limit - time.monotonic())
    return bool(left) or not finalized



async def _within(step: Awaitable[Any], seconds: float) -> bool:
    """Await `step` at most `seconds` (at least one loop turn); False if it had to be cancelled and left behind."""
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=max(0.0, seconds))
    if not done:
        await cancel_and_wait([task], 0)
        return False
    task.result()  # its failure is the caller's, as if awaited directly
    return True



def _join_threads(limit: float) -> list[threading.Thread]:
    """Wait until `limit` for the threads the interpreter joins at exit (non-daemon ones); those still alive."""
    current = threading.current_thread()
    others = [t for t in threading.enumerate() if not t.daemon and t is not current]
    for thread in others:
        thread.join(max(0.0, limit - time.monotonic()))
    stuck = [t for t in others if t.is_alive()]
    if stuck:
        emit(None, "warning", f"threads still busy at exit, not waited for: {', '.join(t.name for t in stuck)}")
    return stuck



def _close_and_park_signals(loop: asyncio.AbstractEventLoop) -> None:
    """Close the loop, then ignore the signals its handlers took (see `_run_to_end`).

    Closing restores their default action; blocking them meanwhile keeps one
    arriving in between from killing the process before its summary.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, _PARKED_SIGNALS)
    try:
        loop.close()
        for sig in _PARKED_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _PARKED_SIGNALS)



async def _run_with_signals(pipeline: Pipeline, status: Any = None, reloader: Reloader | None = None,
                            progress: Progress | None = None,
                            on_second_signal: Callable[[int], None] | None = None,
                            peers: Peers | None = None) -> int:
    """Run the pipeline, with the status server and the progress line, under the signal handling of `run`.

    SIGTERM/SIGINT: the first asks the pipeline to stop (drain within its
    grace period); the next one exits at once — after `on_second_signal(code)`
    (the summary).  SIGHUP: reload.  The handlers stay installed after this
    returns, until the loop is closed, so that a signal during the teardown is
    handled the same way.
    """
    loop = asyncio.get_running_loop()
    if status is not None:
        try:
            await status.start()
        except OSError as exc:
            emit(None, "error", f"cannot serve metrics on {status.host}:{status.port}: {exc.strerror}")
            return 2
        emit(None, "info", f"metrics and probes on http://{status.host}:{status.port} (/metrics, /livez, /readyz)",
             address=status.host, port=status.port)
    signals_seen = 0

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen == 1:
            if not pipeline.ended:  # else the process is exiting already
                pipeline.request_stop()
            return
        # The operator does not want to wait: what is undelivered stays uncommitted.
        code = pipeline.exit_code if pipeline.ended else EXIT_DRAIN_INCOMPLETE
        emit(None, "error", "second signal: exiting now without finishing the drain", exit_code=code)
        if on_second_signal is not None:
            on_second_signal(code)
        _exit_now(code)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    if reloader is not None:
        loop.add_signal_handler(signal.SIGHUP, reloader.request)
    display = asyncio.create_task(progress.run()) if progress is not None else None
    try:
        if peers is not None:
            try:
                await peers.start()
            except Exception as exc:  # noqa: BLE001 - e.g. no kubeconfig: a configuration error
                emit(None, "error", f"peers: cannot start the Kubernetes watch: {exc}")
                return 2
        return await pipeline.run()
    finally:
        await _within(_finish(display, status, peers), FINISH_TIMEOUT)



async def _finish(display: asyncio.Task[None] | None, status: Any, peers: Peers | None = None) -> None:
    if display is not None:
        display.cancel()
        await asyncio.gather(display, return_exceptions=True)
    if peers is not None:
        await peers.stop()
    if status is not None:
        await status.close()

