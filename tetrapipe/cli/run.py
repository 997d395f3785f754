"""`tetrapipe run`: the configuration loaded, the run wired from what the registries build, and run to its end.

The wiring itself is tetrapipe.config.resolve (flags > env > file → the registries' entries); this
module builds those, the processor, the pipeline and the service around it (reload, status server,
progress, peers), then hands the loop to tetrapipe.cli.exit for the bounded run and exit.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from collections.abc import Callable, Sequence
from typing import Any

from tetrapipe import __version__
from tetrapipe.cli.exit import RunSummary, _exit_now, _run_to_end, _run_with_signals
from tetrapipe.cli.workers import attach_workers
from tetrapipe.config.kafka import KafkaConfigError, exactly_once_options
from tetrapipe.config.resolve import build_transactional, build_wiring, resolve_wiring
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
from tetrapipe.event.decode import LineDecoder
from tetrapipe.logs import configure as configure_logs
from tetrapipe.logs import current_format as current_log_format
from tetrapipe.logs import emit
from tetrapipe.pipeline.processor import Processor
from tetrapipe.pipeline.runner import Pipeline
from tetrapipe.pipeline.stats import Stats
from tetrapipe.service.progress import Progress
from tetrapipe.service.reload import Loaded, Reloader
from tetrapipe.sinks.base import SinkContext
from tetrapipe.sinks.stdout import StdoutSink
from tetrapipe.sources.kafka.config import KafkaSourceEntry
from tetrapipe.sources.stream import StdinSourceConfig
from tetrapipe.transforms.peer_snapshot import SnapshotError
from tetrapipe.transforms.peer_static import StaticPeersError
from tetrapipe.transforms.peers import PeerResolver


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
    context = SinkContext(category_groups=tagger.groups, scope_version=__version__)
    built = build_transactional(args, config, wiring, context) or build_wiring(wiring, context)
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
    try:
        exactly_once = exactly_once_options(source, sinks, dead_letter)  # {}: at-least-once
    except KafkaConfigError as exc:
        raise ConfigFileError(str(exc)) from None
    pipeline = Pipeline(source, processor, sinks, dead_letter=dead_letter, stats=stats, grace=args.grace,
                        readiness=[peers.not_ready] if peers is not None else (),
                        hint_after_events=config.input.hint_after_events, **exactly_once)
    reloader = Reloader(lambda: load_configuration(args), loaded, processor, stats=stats, only=args.only,
                        category_bound_outputs=category_bound,
                        peers=peers.resolver if peers is not None else None)
    processor.stage = loaded.filters.top  # filters, redaction: tetrapipe.pipeline.filtering
    processor.decoder.use_view(loaded.filters.view)  # with what redaction reads, when a stage redacts
    reloader.on_filters = _sink_filters(pipeline, built.sinks)
    reloader.on_filters(loaded.filters)
    if args.workers != 1:  # N processes (tetrapipe.cli.workers); a Kafka source: N group members, supervised
        supervised = attach_workers(args, pipeline, reloader, kafka_source=isinstance(wiring.source, KafkaSourceEntry))
        if supervised is not None:
            return supervised
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
        progress = Progress(stats, source, failing=lambda: pipeline.failing)
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
    # Several worker processes (tetrapipe.cli.workers) share no learned addresses: learning is on by default
    # only in one process (asked for explicitly with --workers N, the run refuses as for any peer naming).
    cfg = build_peer_config(section, learn=getattr(args, "peers_learn", None),
                            kubernetes=getattr(args, "peers_kubernetes", None),
                            learn_default=getattr(args, "workers", 1) == 1)
    if cfg is None:
        return None
    try:
        resolver = PeerResolver(cfg)
    except StaticPeersError as exc:
        raise ConfigFileError(f"peers.static_file: {exc}") from None
    except SnapshotError as exc:
        raise ConfigFileError(f"peers.snapshot: {exc}") from None
    watch = None
    if cfg.kubernetes:
        from tetrapipe.clients.kube_peers import KubePeerWatch

        watch = KubePeerWatch(resolver, on_ready=lambda: emit(
            None, "info", "peers: Kubernetes API listed, watching", **resolver.api.stats()))
    return Peers(resolver, watch)


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

