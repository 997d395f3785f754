"""`tetrapipe run --workers N`: the wiring (the work is in `tetrapipe.pipeline.workers` and `tetrapipe.cli.supervise`).

- stdin, `--input`, `--follow`: the run's pipeline keeps its source, committer,
  delivery, dead letter and stats; its source is wrapped so that decoding,
  classification, tagging, the top-level filters and the stdout format's
  rendering run in N worker processes (`tetrapipe.pipeline.workers`).  Each
  worker builds its processor from the configuration the parent loaded (the
  YAML is read once, by the parent; the library files it names are read by
  each worker) and the CIDRs the parent resolved (flags, environment, file).
  Supported with the stdout output only: Kafka/OTLP outputs (per-sink
  filters, routing, rate limits and dedup state) and peer naming (a
  resolver's learnt addresses and its Kubernetes watch) are kept in one
  process, and are refused with `--workers` > 1 — use a Kafka source, or one
  worker.
- a Kafka source: N members of the consumer group, each a full one-worker
  run (`tetrapipe.cli.supervise`).
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from tetrapipe.config.root import ConfigFileError, resolve_cidrs

if TYPE_CHECKING:
    from tetrapipe.formats.base import Format
    from tetrapipe.pipeline.runner import Pipeline
    from tetrapipe.pipeline.worker_pool import WorkerPool, WorkerState
    from tetrapipe.service.reload import Loaded, Reloader

# The worker machinery (multiprocessing, the pool, the chunked processor) is imported when `--workers` > 1
# asks for it, inside the functions below: a one-process run does not load it at start-up.

_FAST_FORMATS = ("json", "tetrapipe")  # env.out is the line: no per-event format call


def workers_count(text: str) -> int:
    """`--workers`: a positive number, or `auto` (the CPUs this process may run on)."""
    if text == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a positive number or 'auto'") from None
    if not 0 < value <= 256:
        raise argparse.ArgumentTypeError("must be between 1 and 256, or 'auto'")
    return value


def attach_workers(args: argparse.Namespace, pipeline: Pipeline, reloader: Reloader, *, kafka_source: bool) -> \
        int | None:
    """Make the built pipeline run with `args.workers` processes; an exit status when supervising Kafka members."""
    if kafka_source:
        from tetrapipe.cli.supervise import supervise

        return supervise(args, args.workers)
    from tetrapipe.pipeline.chunks import Applier
    from tetrapipe.pipeline.filtering import ALL_SINKS
    from tetrapipe.pipeline.worker_pool import WorkerPool
    from tetrapipe.pipeline.workers import ChunkedProcessor, Prerendered, WorkerSource
    from tetrapipe.sinks.stdout import StdoutSink
    refused = [sink.name for sink in pipeline.sinks if not isinstance(sink, StdoutSink)]
    if refused:
        raise ConfigFileError(f"--workers {args.workers} with {', '.join(refused)}: several worker processes "
                              "are supported with the stdout output (or a Kafka source) only; use --workers 1")
    local = pipeline.processor
    if local.peers is not None:
        raise ConfigFileError(f"--workers {args.workers} with peer naming (peers:, --peers-kubernetes, "
                              "--peers-learn): not supported with several processes; use --workers 1")
    _refuse_keyed(args.workers, reloader.current)
    stdout = pipeline.sinks[0]
    assert isinstance(stdout, StdoutSink)
    fmt: Format | None = None if args.format in _FAST_FORMATS else stdout.format
    args.start_groups = dict(reloader.current.tagger.groups)  # the format's, fixed at start as in one process
    pool = WorkerPool(args.workers, build_worker, worker_spec(args, reloader.current))
    source = WorkerSource(pipeline.source, pool, Applier(pipeline.stats.filtered_out[ALL_SINKS]))
    pipeline.source = source
    pipeline.processor = ChunkedProcessor(local, source, fmt, stdout.selection)  # type: ignore[assignment]
    stdout.format = Prerendered(stdout.format.name)
    _reload_workers(args, reloader, pool)
    return None


def _refuse_keyed(workers: int, loaded: Loaded) -> None:
    """A top-level rate limit or dedup keeps its state (token buckets, windows) per process: N workers would
    let N times the rate through and send no `rate_limit_info` records.  Refused at start and on SIGHUP."""
    top = loaded.filters.top
    if top is not None and top.keyed:
        raise ConfigFileError(f"--workers {workers} with a top-level rate_limit or dedup: their state is kept per "
                              "process, so several workers would each apply it; use --workers 1")


def _reload_workers(args: argparse.Namespace, reloader: Reloader, pool: WorkerPool) -> None:
    """Each accepted reload also goes to the workers, from the next chunk read (one boundary for all)."""
    load, apply = reloader._load, reloader.on_filters  # the Reloader's own hooks, wrapped
    latest: list[Loaded] = []

    def remembered() -> Loaded:
        loaded = load()
        _refuse_keyed(args.workers, loaded)  # the reload is rejected, the running configuration kept
        latest[:] = [loaded]
        return loaded

    def applied(filters: Any) -> None:
        if apply is not None:
            apply(filters)
        pool.reconfigure(worker_spec(args, latest[0]))  # called by the Reloader between the same two batches

    reloader._load = remembered
    reloader.on_filters = applied


def worker_spec(args: argparse.Namespace, loaded: Loaded) -> bytes:
    """What a worker builds its processor and format from (pickled once per configuration)."""
    import pickle
    config = loaded.config
    return pickle.dumps({
        "config": config,
        "pods": resolve_cidrs(args.pod_cidr, "POD_CIDR", config.egress.pod_cidrs),
        "services": resolve_cidrs(args.service_cidr, "SERVICE_CIDR", config.egress.service_cidrs),
        "max_depth": args.max_depth if args.max_depth is not None else config.input.max_depth,
        "format": args.format, "only": frozenset(args.only), "findings": args.ocsf_findings,
        "groups": args.start_groups,
    })


def build_worker(spec: bytes) -> WorkerState:
    """In a worker process: the processor and stdout format the parent's run would use."""
    import pickle

    from tetrapipe.config.root import build_classifier, build_filters, build_tagger
    from tetrapipe.event.decode import LineDecoder
    from tetrapipe.formats import build_format
    from tetrapipe.pipeline.processor import Processor
    from tetrapipe.sinks.base import Selection
    s = pickle.loads(spec)  # noqa: S301 - from our own parent process
    config = s["config"]
    processor = Processor(build_tagger(config.library), build_classifier(config.egress, s["pods"], s["services"]),
                          LineDecoder(max_depth=s["max_depth"]))
    filters = build_filters(config)
    processor.stage = filters.top
    processor.decoder.use_view(filters.view)  # with what redaction reads, when a stage redacts
    fmt = None if s["format"] in _FAST_FORMATS else \
        build_format(s["format"], only=s["only"], findings=s["findings"], category_groups=s["groups"])
    return processor, fmt, Selection(categories=s["only"], untagged=not s["only"])  # stdout's, as in cmd_run
