"""Prometheus metrics of a run, read from `Stats` and the pipeline at scrape time.

Contract: the collector keeps no state of its own and adds nothing to the
event path — every value is computed from the counters the pipeline keeps
anyway (the same ones the exit summary prints), when Prometheus asks.  It is
called on the event loop (see `tetrapipe.service.status`), so it never races the
counters it reads.

Names follow Prometheus conventions (`tetrapipe_` prefix, `_total` counters,
base units); the README's metrics table lists them.  Label values are
component names (sink, source), categories, zones, reasons, Kafka
topic/partition — bounded sets; never event content.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from tetrapipe.sinks.base import ReportsCounters
from tetrapipe.sources.base import ReportsBacklog, ReportsLag, ReportsReadiness

if TYPE_CHECKING:
    from tetrapipe.clients.kube_peers import KubePeerWatch
    from tetrapipe.pipeline.runner import Pipeline

Metric = CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily


def _counter(name: str, doc: str, labels: list[str], values: Mapping[Any, float]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], value)
    return family


def _gauge(name: str, doc: str, value: float | None = None, labels: list[str] | None = None,
           values: Mapping[Any, float] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, value=value, labels=labels)
    for key, v in sorted((values or {}).items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], v)
    return family


class PipelineCollector(Collector):
    """Exposes one pipeline's counters; `version` goes into `tetrapipe_build_info`."""

    def __init__(self, pipeline: Pipeline, version: str, peer_watch: KubePeerWatch | None = None) -> None:
        self.pipeline = pipeline
        self.version = version
        self.peer_watch = peer_watch

    def collect(self) -> Iterator[Metric]:
        for part in (self._intake, self._outputs, self._flow, self._source, self._peers):
            yield from part()

    def _peers(self) -> Iterator[Metric]:
        resolver = self.pipeline.processor.peers
        if resolver is None:
            return
        st = resolver.stats()
        yield _gauge("tetrapipe_peer_index_entries", "Addresses the peer resolver can name, by source "
                     "(api: the Kubernetes API, learned: from the stream, static: the file's prefixes)",
                     labels=["kind"], values={"api": st["api"]["addresses"], "learned": st["learned"],
                                              "static": st["static"]})
        yield _counter("tetrapipe_peer_lookups", "Connection destinations looked up, by result (unknown: "
                       "no tetrapipe.peer on the event)", ["result"],
                       {"resolved": st["resolved"] - st["unknown"], "unknown": st["unknown"]})
        watch = self.peer_watch
        if watch is None:
            return
        resources = {kind: r.stats() for kind, r in watch.reflectors.items()}
        yield _gauge("tetrapipe_peer_watch_age_seconds", "Seconds since the current watch of a Kubernetes "
                     "resource started (absent before the first watch)", labels=["resource"],
                     values={k: v["watch_age_seconds"] for k, v in resources.items()
                             if v["watch_age_seconds"] is not None})
        yield _gauge("tetrapipe_peer_watch_synced", "1 once the first list of a Kubernetes resource completed",
                     labels=["resource"], values={k: 1 if v["synced"] else 0 for k, v in resources.items()})

    def _intake(self) -> Iterator[Metric]:
        p, stats = self.pipeline, self.pipeline.stats
        info = GaugeMetricFamily("tetrapipe_build_info", "tetrapipe version (value is always 1)",
                                 labels=["version"])
        info.add_metric([self.version], 1)
        yield info
        yield _counter("tetrapipe_records_received", "Records read from the source (lines, messages)",
                       ["source"], {p.source.name: stats.received})
        yield _counter("tetrapipe_events_decoded", "Records decoded into Tetragon events",
                       ["source"], {p.source.name: stats.events})
        yield _counter("tetrapipe_records_bad", "Records that could not be decoded, by reason",
                       ["reason"], dict(stats.bad))
        yield _counter("tetrapipe_blank_lines", "Empty input lines skipped", [], {(): stats.blank})
        yield _counter("tetrapipe_events_incomplete",
                       "Events missing fields Tetragon always sets (forwarded anyway)", [], {(): stats.incomplete})
        yield _counter("tetrapipe_events_tagged", "Events tagged with a category (an event counts once per category)",
                       ["category"], dict(stats.categories))
        yield _counter("tetrapipe_egress_events", "Connection events by destination zone",
                       ["zone"], dict(stats.zones))

    def _outputs(self) -> Iterator[Metric]:
        p, stats = self.pipeline, self.pipeline.stats
        yield _counter("tetrapipe_events_sent", "Events acknowledged by a sink", ["sink"], dict(stats.sent))
        by_category = {(sink, cat): n for sink in stats.sent_categories
                       for cat, n in stats.sent_by_category(sink).items()}
        yield _counter("tetrapipe_category_events_sent",
                       "Events acknowledged by a sink, per category (once per category; untagged as \"untagged\")",
                       ["sink", "category"], by_category)
        yield _counter("tetrapipe_events_not_selected", "Events a sink's selection left out", ["sink"],
                       dict(stats.filtered))
        yield _counter("tetrapipe_events_filtered_out", "Events dropped by filters, dedup or rate limits, by sink "
                       "(\"*\": the top-level filters, every sink) and reason", ["sink", "reason"],
                       {(scope, reason): n for scope, c in stats.filtered_out.items() for reason, n in c.items()})
        yield _counter("tetrapipe_filter_keys_evicted", "Keys a rate limit or dedup evicted at its max_keys (least "
                       "recently seen first), by sink (\"*\": the top level) and step (rate_limit, dedup)",
                       ["sink", "step"],
                       {(scope, step): n for scope, c in stats.evicted_keys.items() for step, n in c.items()})
        yield _counter("tetrapipe_records_dead_lettered", "Records written to the dead-letter output, by reason",
                       ["reason"], dict(stats.dead_lettered_by_reason))
        yield _counter("tetrapipe_sink_errors", "Failed sink writes", ["sink"], dict(stats.sink_errors))
        yield _counter("tetrapipe_sink_retries", "Sink writes retried after a retryable failure", ["sink"],
                       dict(stats.sink_retries))
        names = [s.name for s in p.sinks] + ([p.dead_letter.name] if p.dead_letter is not None else [])
        yield _gauge("tetrapipe_sink_up", "1 while the sink's last write succeeded, 0 while it is being retried",
                     labels=["sink"], values={n: 0 if n in p.failing else 1 for n in names})
        internal = {(s.name, op): n for s in p.sinks if isinstance(s, ReportsCounters) for op, n in s.counters.items()}
        yield _counter("tetrapipe_sink_operations", "Sink-specific counters (requests, records exported, "
                       "partial rejections, …)", ["sink", "operation"], internal)

    def _flow(self) -> Iterator[Metric]:
        p, stats = self.pipeline, self.pipeline.stats
        latency = stats.batch_latency
        hist = HistogramMetricFamily("tetrapipe_batch_latency_seconds",
                                     "Time from reading a batch to its acknowledgement by every sink",
                                     buckets=latency.cumulative(), sum_value=latency.sum)
        yield hist
        yield _gauge("tetrapipe_in_flight_events", "Records read and not yet acknowledged by every sink",
                     stats.in_flight_events)
        yield _gauge("tetrapipe_in_flight_batches", "Batches read and not yet acknowledged by every sink",
                     stats.in_flight_batches)
        yield _counter("tetrapipe_commits", "Source positions committed (offsets, checkpoints)", [],
                       {(): p.committer.commits})
        if stats.last_commit_time is not None:
            yield _gauge("tetrapipe_last_commit_timestamp_seconds",
                         "Unix time of the last successful commit", stats.last_commit_time)
        yield _counter("tetrapipe_config_reloads", "Configuration reloads (SIGHUP), by result", ["result"],
                       dict(stats.reloads))
        live, ready, _ = p.health()
        yield _gauge("tetrapipe_ready", "1 when /readyz answers ready", 1 if ready else 0)
        yield _gauge("tetrapipe_start_time_seconds", "Unix time the run started", stats.started)

    def _source(self) -> Iterator[Metric]:
        source = self.pipeline.source
        yield _gauge("tetrapipe_source_up", "1 while the source is connected (Kafka: brokers answer metadata "
                     "requests)", labels=["source"], values={source.name: _up(source)})
        backlog_of = source.backlog if isinstance(source, ReportsBacklog) else None
        if backlog_of is not None:
            yield _gauge("tetrapipe_follow_backlog_bytes", "Bytes of the followed file not yet acknowledged "
                         "by the outputs", labels=["file"], values=backlog_of())
        lag_of = source.lag if isinstance(source, ReportsLag) else None
        if lag_of is None:
            return
        yield _gauge("tetrapipe_kafka_consumer_lag",
                     "High watermark minus committed offset, per owned partition",
                     labels=["topic", "partition"],
                     values={(topic, str(partition)): n for (topic, partition), n in lag_of().items()})


def registry_for(pipeline: Pipeline, version: str, *, peer_watch: KubePeerWatch | None = None) -> CollectorRegistry:
    """A registry holding only this pipeline's metrics (no process-global state: tests run many pipelines)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(pipeline, version, peer_watch))
    ProcessCollector(registry=registry)  # process_cpu_seconds_total, process_resident_memory_bytes, open fds
    return registry


def _up(source: object) -> int:
    """1 while the source is connected; a source that does not report readiness always is."""
    return 0 if isinstance(source, ReportsReadiness) and not source.ready else 1
