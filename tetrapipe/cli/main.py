"""The `tetrapipe` command line: argument parsing and wiring (the work is elsewhere), and the process's exit.

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

import argparse
import asyncio
import contextlib
import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

from tetrapipe import __version__
from tetrapipe.cli.config_test import add_test_parser, cmd_test
from tetrapipe.cli.policies import add_policies_parser, cmd_policies
from tetrapipe.config.kafka import add_kafka_arguments
from tetrapipe.config.resolve import build_wiring, resolve_wiring
from tetrapipe.config.root import (
    ConfigFileError,
    Filters,
    build_classifier,
    build_filters,
    build_peer_config,
    build_tagger,
    load_config,
    resolve_cidrs,
)
from tetrapipe.event.decode import DEFAULT_MAX_DEPTH, MAX_DEPTH_LIMIT, LineDecoder
from tetrapipe.formats import NAMES as FORMAT_NAMES
from tetrapipe.logs import LEVELS, emit
from tetrapipe.logs import configure as configure_logs
from tetrapipe.logs import current_format as current_log_format
from tetrapipe.pipeline.delivery import cancel_and_wait
from tetrapipe.pipeline.processor import Processor
from tetrapipe.pipeline.runner import EXIT_DRAIN_INCOMPLETE, STOP_MARGIN, Pipeline
from tetrapipe.pipeline.stats import Stats
from tetrapipe.rules.docs import categories_markdown, categories_table
from tetrapipe.service.progress import Progress, summary_table
from tetrapipe.service.reload import Loaded, Reloader
from tetrapipe.sinks.base import SinkContext
from tetrapipe.sinks.otlp.config import add_otlp_arguments
from tetrapipe.sinks.stdout import StdoutSink
from tetrapipe.sources.stream import StdinSourceConfig
from tetrapipe.transforms.peer_static import StaticPeersError
from tetrapipe.transforms.peers import PeerResolver

RUN_EXAMPLES = """\
examples:
  tetrapipe run < tetragon.log                      tag every event, JSON lines out
  kubectl logs -n kube-system ds/tetragon -c export-stdout -f | tetrapipe run --format summary
  tetrapipe run --input tetragon.log --only sudo --only suid --format summary
  POD_CIDR=10.244.0.0/16 SERVICE_CIDR=10.96.0.0/12 tetrapipe run < events.jsonl
  tetrapipe run --config tetrapipe.yaml --dead-letter bad.jsonl < events.jsonl

exit status:
  0  the input ended, a SIGTERM/SIGINT drain finished, or stdout's reader went away (| head)
  1  an output failed for good (nothing after its last acknowledged write is committed)
  2  the input could not be read, or the configuration is invalid
  3  a signal's drain did not finish: the --grace period ran out (or a second signal came) with read
     input undelivered — not committed, a Kafka or --follow source redoes it — or an output hung on close
"""

FINISH_TIMEOUT = 0.2  # after the pipeline returned: stopping the progress line and the status server
CLEANUP_TIMEOUT = 0.3  # then: leftover tasks, async generators and worker threads, together
EXIT_MARGIN = STOP_MARGIN + FINISH_TIMEOUT + CLEANUP_TIMEOUT  # past --grace, after the first signal: 2 s
_PARKED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tetrapipe",
        description="Tag Cilium Tetragon events with the observability policy library's categories, "
                    "classify connection destinations by CIDR, and forward them.",
        epilog="Run 'tetrapipe COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"tetrapipe {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="process events (default: stdin → stdout)", epilog=RUN_EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="Read Tetragon JSON events (raw, CRI log lines, or Fluent Bit/Vector "
                                          "records), tag and classify them, and write them out.")
    run.add_argument("--input", metavar="FILE", help="read this file instead of stdin")
    run.add_argument("--follow", metavar="FILE",
                     help="follow FILE like `tail -F` (Tetragon's JSON export, e.g. "
                          "/var/run/cilium/tetragon/tetragon.log): survives rotation, truncation and restarts; "
                          "needs --checkpoint")
    run.add_argument("--checkpoint", metavar="PATH",
                     help="with --follow (required): file keeping the position acknowledged by the outputs, "
                          "written atomically; its directory must be writable and survive restarts")
    run.add_argument("--follow-from", choices=("beginning", "end"), default=None,
                     help="with --follow, first run only (no checkpoint yet): read what FILE already holds "
                          "(beginning, default) or only what is appended from now on (end)")
    run.add_argument("--config", metavar="FILE", help="config file (library overrides, egress zones)")
    run.add_argument("--pod-cidr", action="append", metavar="CIDR",
                     help="pod CIDR (repeatable; default: $POD_CIDR, comma-separated, or the config file)")
    run.add_argument("--service-cidr", action="append", metavar="CIDR",
                     help="service CIDR (repeatable; default: $SERVICE_CIDR or the config file)")
    run.add_argument("--dead-letter", metavar="FILE", help="append records that cannot be decoded to FILE, unchanged")
    run.add_argument("--format", choices=FORMAT_NAMES, default=None,
                     help="stdout: tetrapipe (alias json), every event with a 'tetrapipe' key (default); summary, "
                          "one line per tagged event; ocsf, OCSF 1.7.0 events; ecs, ECS 9.4 documents.  Given "
                          "with Kafka/OTLP outputs, stdout is written as well")
    run.add_argument("--ocsf-findings", action="store_true",
                     help="with --format ocsf: also a Detection Finding (2004) per event tagged with a "
                          "security-group category")
    run.add_argument("--max-depth", type=_positive_int, default=None, metavar="LEVELS",
                     help=f"deepest JSON nesting accepted; deeper records are dead-lettered as too_deep "
                          f"(default: input.max_depth in the config file, else {DEFAULT_MAX_DEPTH})")
    run.add_argument("--only", action="append", metavar="CATEGORY", default=[],
                     help="output only events with this category (repeatable)")
    run.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                     help="on SIGTERM/SIGINT, time allowed to deliver what was read (default 30); the process "
                          f"exits within --grace + {EXIT_MARGIN:g} s, with status 3 if something was left undelivered")
    run.add_argument("--quiet", action="store_true", help="no count summary on stderr at exit")
    run.add_argument("--no-progress", action="store_true",
                     help="no live progress line (shown only when stderr is a terminal and logs are text)")
    run.add_argument("--log-format", choices=("auto", "json", "text"), default=None,
                     help="stderr log lines: json (one object per line), text, or auto — text on a terminal, "
                          "json otherwise, e.g. in a container (default: $TETRAPIPE_LOG_FORMAT or auto)")
    run.add_argument("--log-level", choices=tuple(LEVELS), default=None,
                     help="least severe messages shown (default: $TETRAPIPE_LOG_LEVEL or info)")
    run.add_argument("--metrics-port", type=int, metavar="PORT",
                     default=_env_int("TETRAPIPE_METRICS_PORT"),
                     help="serve Prometheus /metrics and the /livez, /readyz probes on PORT "
                          "(default: $TETRAPIPE_METRICS_PORT; off when unset; 0 picks a free port)")
    run.add_argument("--metrics-address", metavar="ADDR", default=os.environ.get("TETRAPIPE_METRICS_ADDRESS",
                                                                                 "0.0.0.0"),  # noqa: S104
                     help="address for --metrics-port (default 0.0.0.0 — the pod IP, so probes and "
                          "Prometheus reach it; 127.0.0.1 for local runs)")
    run.add_argument("--peers-kubernetes", action="store_true", default=None,
                     help="name connection peers from the Kubernetes API (pods, services, nodes; needs "
                          "deploy/rbac; default: peers.kubernetes.enabled in the config file)")
    learn = run.add_mutually_exclusive_group()
    learn.add_argument("--peers-learn", dest="peers_learn", action="store_true", default=None,
                       help="learn pod addresses from the events' own source addresses (peers.learn; off by "
                            "default: it costs about 20%% CPU on a connection-heavy stream)")
    learn.add_argument("--no-peers-learn", dest="peers_learn", action="store_false",
                       help="do not learn pod addresses, whatever peers.learn says")
    add_kafka_arguments(run)
    add_otlp_arguments(run)

    cats = commands.add_parser("categories", help="list the category library",
                               description="List the categories: id, group, description.",
                               formatter_class=argparse.RawDescriptionHelpFormatter,
                               epilog="examples:\n  tetrapipe categories\n"
                                      "  tetrapipe categories --config my.yaml      with your additions\n"
                                      "  tetrapipe categories --markdown > docs/library.md\n")
    cats.add_argument("--config", metavar="FILE", help="include this config file's library overrides")
    cats.add_argument("--markdown", action="store_true", help="print the library documentation page")

    check = commands.add_parser("check-config", help="validate a config file",
                                description="Validate a config file: every wrong key or type is named by its path.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n  tetrapipe check-config config/example.yaml\n"
                                       "  exit status 0 when valid, 2 with the offending path otherwise\n")
    check.add_argument("file", metavar="FILE")
    add_policies_parser(commands)
    add_test_parser(commands)
    return parser


def load_configuration(args: argparse.Namespace) -> Loaded:
    """The config file, the compiled library and the classifier — at start and on each SIGHUP."""
    config = load_config(args.config)
    tagger = build_tagger(config.library)
    classifier = build_classifier(
        config.egress,
        resolve_cidrs(args.pod_cidr, "POD_CIDR", config.egress.pod_cidrs),
        resolve_cidrs(args.service_cidr, "SERVICE_CIDR", config.egress.service_cidrs),
    )
    return Loaded(config, tagger, classifier, build_filters(config))


def cmd_run(args: argparse.Namespace) -> int:
    try:
        configure_logs(args.log_format, args.log_level)
    except ValueError as exc:  # a bad $TETRAPIPE_LOG_FORMAT / _LEVEL
        raise ConfigFileError(str(exc)) from None
    args.format_given = args.format is not None
    args.format = args.format or "json"
    loaded = load_configuration(args)
    _warn_without_cidrs(args, loaded.config)
    config, tagger = loaded.config, loaded.tagger
    unknown = sorted(set(args.only) - tagger.ids)
    if unknown:
        raise ConfigFileError(f"--only: unknown category {', '.join(unknown)}; known: {', '.join(sorted(tagger.ids))}")
    wiring = resolve_wiring(args, config)
    built = build_wiring(wiring, SinkContext(category_groups=tagger.groups, scope_version=__version__))
    source, dead_letter = built.source, built.dead_letter
    sinks = [sink for _, sink in built.sinks]
    # routed (Kafka) or graded (OTLP) by category: a reload changing the groups needs a restart
    category_bound = [sink.name for (_, entry), sink in zip(wiring.sinks, sinks, strict=True)
                      if getattr(entry, "category_bound", False)]
    if isinstance(wiring.source, StdinSourceConfig) and sys.stdin.isatty():
        # nothing piped in: the first-time user may be waiting for output
        sys.stderr.write("tetrapipe: reading Tetragon events from the terminal (end with Ctrl-D); pipe them in "
                         "(tetrapipe run < tetragon.log) or use --input FILE / --follow FILE\n")
    stats = Stats()
    max_depth = args.max_depth if args.max_depth is not None else config.input.max_depth
    peers = build_peers(args, config.peers)
    processor = Processor(tagger, loaded.classifier, LineDecoder(max_depth=max_depth),
                          peers=peers.resolver if peers is not None else None)
    pipeline = Pipeline(source, processor, sinks, dead_letter=dead_letter, stats=stats, grace=args.grace,
                        readiness=[peers.not_ready] if peers is not None else ())
    reloader = Reloader(lambda: load_configuration(args), loaded, processor, stats=stats, only=args.only,
                        category_bound_outputs=category_bound,
                        peers=peers.resolver if peers is not None else None)
    processor.stage = loaded.filters.top  # filters, redaction: tetrapipe.pipeline.filtering
    reloader.on_filters = _sink_filters(pipeline, built.sinks)
    reloader.on_filters(loaded.filters)
    status = None
    if args.metrics_port is not None:
        from tetrapipe.service.metrics import registry_for
        from tetrapipe.service.status import StatusServer

        status = StatusServer(registry_for(pipeline, __version__,
                                           peer_watch=peers.watch if peers is not None else None),
                              pipeline.health, host=args.metrics_address, port=args.metrics_port)
    progress = None
    events_on_screen = any(isinstance(s, StdoutSink) for s in sinks) and sys.stdout.isatty()
    if not (args.quiet or args.no_progress or events_on_screen) and current_log_format() == "text" \
            and sys.stderr.isatty():  # a person watches stderr, and the events do not scroll through it
        progress = Progress(stats, source)
    tune_gc()
    summary = RunSummary(stats, lambda: reloader.current.tagger.groups, quiet=args.quiet)
    code, left_running = _run_to_end(_run_with_signals(pipeline, status, reloader, progress,
                                                       on_second_signal=summary.write, peers=peers))
    summary.write(code)
    if left_running:  # the interpreter's exit would wait for it (see the module docstring)
        _exit_now(code)
    return code


class Peers:
    """The peer resolver of a run and its work off the hot path: the Kubernetes watch (which also runs the
    resolver's housekeeping), else the housekeeping alone; started and stopped on the run's event loop."""

    def __init__(self, resolver: PeerResolver, watch: Any = None) -> None:
        self.resolver = resolver
        self.watch = watch  # a tetrapipe.clients.kube_peers.KubePeerWatch, or None
        self._housekeeping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.watch is not None:
            await self.watch.start()
        else:
            self._housekeeping = asyncio.create_task(self.resolver.housekeeping(), name="peer-housekeeping")

    async def stop(self) -> None:
        if self.watch is not None:
            await self.watch.stop()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            await asyncio.gather(self._housekeeping, return_exceptions=True)

    def not_ready(self) -> str | None:
        """A /readyz reason while the watch's first lists are incomplete (with peers.kubernetes.require_sync)."""
        if self.watch is not None and not self.watch.ready:
            return "peers: first list of the Kubernetes API not complete"
        return None


def build_peers(args: argparse.Namespace, section: Any) -> Peers | None:
    """The run's peer resolver (and watch) from `peers:` and the flags; None when nothing would answer."""
    cfg = build_peer_config(section, learn=getattr(args, "peers_learn", None),
                            kubernetes=getattr(args, "peers_kubernetes", None))
    if cfg is None:
        return None
    try:
        resolver = PeerResolver(cfg)
    except StaticPeersError as exc:
        raise ConfigFileError(f"peers.static_file: {exc}") from None
    watch = None
    if cfg.kubernetes:
        from tetrapipe.clients.kube_peers import KubePeerWatch

        watch = KubePeerWatch(resolver, on_ready=lambda: emit(
            None, "info", "peers: Kubernetes API listed, watching", **resolver.api.stats()))
    return Peers(resolver, watch)


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


def _warn_without_cidrs(args: argparse.Namespace, config: Any) -> None:
    """One WARNING when no pod or service CIDR is known: in-cluster addresses would look external."""
    pods = resolve_cidrs(args.pod_cidr, "POD_CIDR", config.egress.pod_cidrs)
    services = resolve_cidrs(args.service_cidr, "SERVICE_CIDR", config.egress.service_cidrs)
    if not pods or not services:
        missing = " and ".join(n for n, v in (("pod", pods), ("service", services)) if not v)
        emit(None, "warning", f"no {missing} CIDR configured: in-cluster addresses will be classified private "
             "and external; set --pod-cidr/--service-cidr, POD_CIDR/SERVICE_CIDR or egress.pod_cidrs/"
             "service_cidrs")


def _sink_filters(pipeline: Pipeline, sinks: Sequence[tuple[str, Any]]) -> Callable[[Filters], None]:
    """What installs the per-sink stages (keyed by config path: "otlp[0]", "kafka.sink", "sinks[2]") into
    delivery, by sink name.

    The sinks are fixed at start (a reload does not add or remove outputs): the config paths map to them once.
    """
    names = {path: sink.name for path, sink in sinks}

    def apply(filters: Filters) -> None:
        pipeline.delivery.stages = {names[path]: stage for path, stage in filters.sinks.items() if path in names}
    return apply


def tune_gc() -> None:
    """Fewer, cheaper garbage collections for a streaming workload.

    Per event the pipeline allocates short-lived containers (decoded args
    dicts, lists) that die with their batch; CPython's default thresholds
    would run a young-generation collection every 700 allocations and walk
    the long-lived compiled library each time.  Freezing what startup built
    and raising the threshold cuts that overhead (measured: ~20% of run time)
    without letting garbage accumulate: nothing here forms reference cycles.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _positive_int(text: str) -> int:
    value = int(text)
    if not 0 < value <= MAX_DEPTH_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_DEPTH_LIMIT}")
    return value


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"tetrapipe: ${name} must be a port number, not {value!r}") from None


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


def cmd_categories(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    tagger = build_tagger(config.library)
    categories = [c.category for c in tagger.categories]
    sys.stdout.write(categories_markdown(categories) if args.markdown else categories_table(categories))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    tagger = build_tagger(config.library)
    build_filters(config)  # regexes, CEL, field paths, rate limits: errors name their key path
    build_classifier(config.egress, config.egress.pod_cidrs, config.egress.service_cidrs)
    run_defaults = build_parser().parse_args(["run"])  # no flags: the file (and env) alone
    build_peers(run_defaults, config.peers)  # options, and the static file's entries (nothing is started)
    wiring = resolve_wiring(run_defaults, config)
    # the sinks and the dead letter are built, not started: formats, templates, endpoints are checked
    build_wiring(wiring._replace(source=StdinSourceConfig()), SinkContext(category_groups=tagger.groups))
    print(f"{args.file}: valid ({len(tagger.categories)} categories, {len(config.egress.zones)} custom zones)")
    return 0


COMMANDS = {"run": cmd_run, "categories": cmd_categories, "check-config": cmd_check_config,
            "policies": cmd_policies, "test": lambda args: cmd_test(args, load_configuration)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # name the command's own usage, not the top level's (`tetrapipe run --bogus`)
        _command_parser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return COMMANDS[args.command](args)
    except ConfigFileError as exc:
        emit(None, "error", f"invalid configuration: {exc}")
        return 2


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:  # argparse keeps its sub-parsers only there
        if isinstance(action, argparse._SubParsersAction):
            sub: argparse.ArgumentParser = action.choices[command]
            return sub
    return parser


if __name__ == "__main__":
    sys.exit(main())
