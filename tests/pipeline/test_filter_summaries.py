"""Rate-limit and dedup summary records delivered like events (tetrapipe.pipeline.summaries).

Unit tests drive the stages under a manual clock with the in-memory sink fake; the last test runs
`tetrapipe run` (stdin -> stdout) and finds the summary records in its output.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from typing import Any

import orjson
import pytest

from tests.support.events import exec_event
from tests.support.fakes import ListSource, ScriptedSink
from tetrapipe.config.root import Config, build_classifier
from tetrapipe.event.decode import LineDecoder
from tetrapipe.pipeline.commit import Committer
from tetrapipe.pipeline.delivery import Delivery
from tetrapipe.pipeline.filtering import ALL_SINKS
from tetrapipe.pipeline.processor import Processor
from tetrapipe.pipeline.runner import EXIT_OK, Pipeline, RetryPolicy
from tetrapipe.pipeline.stats import Stats
from tetrapipe.pipeline.summaries import Summaries, rfc3339, summary_events
from tetrapipe.transforms.dedup import Dedup
from tetrapipe.transforms.filter_stage import Stage
from tetrapipe.transforms.ratelimit import RateLimiter
from tetrapipe.transforms.tag import Tagger

WALL = 1_700_000_000.0  # the wall clock the records are dated by (fixed: deterministic)


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def _event(binary: str, node: str = "node-1") -> dict[str, Any]:
    return {**exec_event(binary, "-x"), "node_name": node}


def _limiter(clock: Clock, interval: float = 10.0) -> RateLimiter:
    return RateLimiter(rate=0.001, burst=1, keys=["node_name", "process.binary"], interval=interval, clock=clock)


def _processor(tagger: Tagger) -> Processor:
    return Processor(tagger, build_classifier(Config().egress, ["10.244.0.0/16"], ["10.96.0.0/12"]), LineDecoder())


def test_a_rate_limit_summary_is_due_when_its_interval_ends() -> None:
    clock = Clock()
    stage = Stage(None, None, None, rate=_limiter(clock))
    assert stage.rate is not None
    verdicts = [stage.rate(_event("/usr/bin/curl"), "process_exec") for _ in range(4)]
    assert verdicts == [True, False, False, False]
    assert summary_events(stage, "otlp a", wall=lambda: WALL) == []  # the interval has not ended
    clock.now += 10.0
    [event] = summary_events(stage, "otlp a", wall=lambda: WALL)
    assert event["rate_limit_info"] == {"number_of_dropped_process_events": "3"}
    assert event["node_name"] == "node-1" and event["time"] == rfc3339(WALL)
    record = event["tetrapipe_rate_limit"]
    assert record["key"] == {"node_name": "node-1", "process.binary": "/usr/bin/curl"}
    assert (record["dropped"], record["interval"], record["scope"]) == (3, 10.0, "otlp a")
    # the drops happened at 500.0 on the limiter's clock, 10 s before the wall clock's now
    assert record["first_drop"] == record["last_drop"] == rfc3339(WALL - 10.0)
    assert summary_events(stage, "otlp a", wall=lambda: WALL) == []  # reported once


def test_final_closes_open_windows_and_intervals() -> None:
    clock = Clock()
    dedup = Dedup(window=60, keys=["process.binary"], clock=clock)
    stage = Stage(None, None, None, rate=_limiter(clock), dedup=dedup)
    for binary in ("/bin/a", "/bin/a", "/bin/a", "/bin/b"):
        assert stage.dedup is not None
        stage.dedup(_event(binary), "process_exec")
    assert stage.rate is not None
    stage.rate(_event("/bin/c"), "process_exec")
    stage.rate(_event("/bin/c"), "process_exec")
    assert summary_events(stage, ALL_SINKS, wall=lambda: WALL) == []
    events = summary_events(stage, ALL_SINKS, final=True, wall=lambda: WALL)
    assert [next(iter(e)) for e in events] == ["rate_limit_info", "tetrapipe_dedup"]
    assert events[0]["tetrapipe_rate_limit"]["dropped"] == 1
    assert events[1]["tetrapipe_dedup"]["key"] == {"process.binary": "/bin/a"}
    assert events[1]["tetrapipe_dedup"]["repeats"] == 2  # /bin/b had no repeat: nothing to say
    assert events[1]["tetrapipe_dedup"]["scope"] == ALL_SINKS


async def test_records_go_to_the_sinks_of_their_scope_rendered_and_acknowledged(tagger: Tagger) -> None:
    clock = Clock()
    processor = _processor(tagger)
    processor.stage = Stage(None, None, None, rate=_limiter(clock))
    a, b = ScriptedSink("a"), ScriptedSink("b")
    stats = Stats()
    delivery = Delivery([a, b], None, stats, stages={"b": Stage(None, None, None, rate=_limiter(clock))})
    for stage in (processor.stage, delivery.stages["b"]):
        assert stage.rate is not None
        stage.rate(_event("/bin/top" if stage is processor.stage else "/bin/b"), "process_exec")
        stage.rate(_event("/bin/top" if stage is processor.stage else "/bin/b"), "process_exec")
    summaries = Summaries(processor, delivery, wall=lambda: WALL)
    await summaries.deliver()
    assert not a.delivered and not b.delivered  # nothing due yet
    clock.now += 10.0
    await summaries.deliver()
    scopes = {name: [json.loads(e.out)["tetrapipe_rate_limit"]["scope"] for e in sink.delivered]
              for name, sink in (("a", a), ("b", b))}
    assert scopes == {"a": [ALL_SINKS], "b": [ALL_SINKS, "b"]}
    rendered = json.loads(b.delivered[1].out)
    assert "tetrapipe" in rendered and rendered["tetrapipe_rate_limit"]["key"]["process.binary"] == "/bin/b"
    assert json.loads(b.delivered[1].raw) == {k: v for k, v in rendered.items() if k != "tetrapipe"}
    assert stats.sent["a"] == 1 and stats.sent["b"] == 2 and summaries.delivered == 3


async def test_the_periodic_task_delivers_while_the_run_goes_on(tagger: Tagger) -> None:
    clock = Clock()
    processor = _processor(tagger)
    sink = ScriptedSink("s")
    delivery = Delivery([sink], None, Stats(), stages={"s": Stage(None, None, None, rate=_limiter(clock, 1.0))})
    stage = delivery.stages["s"]
    assert stage.rate is not None
    for _ in range(3):
        stage.rate(_event("/bin/x"), "process_exec")
    clock.now += 1.0
    summaries = Summaries(processor, delivery, period=0.001)
    summaries.start()
    try:
        for _ in range(2000):  # bounded: until the task has run once
            if sink.delivered:
                break
            await asyncio.sleep(0.001)
    finally:
        await summaries.stop()
    [record] = [json.loads(e.out) for e in sink.delivered]
    assert record["tetrapipe_rate_limit"]["dropped"] == 2


async def test_a_retryable_failure_is_retried_like_an_event(tagger: Tagger) -> None:
    clock = Clock()
    processor = _processor(tagger)
    sink = ScriptedSink("s")
    sink.fail_retryable = 2
    stats = Stats()
    delivery = Delivery([sink], None, stats, retry=RetryPolicy(initial=0.001, maximum=0.001),
                        stages={"s": Stage(None, None, None, rate=_limiter(clock))}, log=io.StringIO())
    stage = delivery.stages["s"]
    assert stage.rate is not None
    stage.rate(_event("/bin/x"), "process_exec")
    stage.rate(_event("/bin/x"), "process_exec")
    await Summaries(processor, delivery).flush()
    assert len(sink.delivered) == 1 and sink.attempts == 3 and stats.sink_retries["s"] == 2


class OrderSink(ScriptedSink):
    """Notes how many commits the source had seen at each write."""

    def __init__(self, name: str, source: ListSource) -> None:
        super().__init__(name)
        self.source = source
        self.commits_seen: list[int] = []

    async def write(self, envelopes: Any) -> None:
        self.commits_seen.append(len(self.source.commits))
        await super().write(envelopes)


async def test_the_final_summaries_are_delivered_before_the_last_commit(tagger: Tagger) -> None:
    lines = [orjson.dumps(_event("/bin/same")) for _ in range(5)]
    source = ListSource(lines, batch_size=5)
    sink = OrderSink("s", source)
    processor = _processor(tagger)
    processor.stage = Stage(None, None, None, rate=RateLimiter(rate=0.001, burst=2, keys=["process.binary"]))
    # a commit interval longer than any test run: the only commit is the forced last one
    pipeline = Pipeline(source, processor, [sink], committer=Committer(source.commit, interval=3600),
                        log=io.StringIO())
    assert await pipeline.run() == EXIT_OK
    outs = [json.loads(e.out) for e in sink.delivered]
    assert [next(iter(o)) for o in outs] == ["process_exec", "process_exec", "rate_limit_info"]
    assert outs[2]["tetrapipe_rate_limit"]["dropped"] == 3
    assert sink.commits_seen == [0, 0] and source.commits == [5]  # summaries written, then committed
    assert dict(pipeline.stats.filtered_out[ALL_SINKS]) == {"rate_limited": 3}


def test_the_cli_writes_summary_records_to_stdout(tmp_path: Any) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("rate_limit: {rate: 0.001, burst: 1, keys: [node_name, process.binary]}\n"
                   "dedup: {window: 3600, keys: [process.arguments]}\n")
    events = [_event("/bin/a"), _event("/bin/a"), _event("/bin/a"), _event("/bin/b"),
              {**exec_event("/bin/c", "same"), "node_name": "n"}, {**exec_event("/bin/d", "same"), "node_name": "n"}]
    stdin = b"".join(orjson.dumps(e) + b"\n" for e in events)
    done = subprocess.run([sys.executable, "-m", "tetrapipe", "run", "--config", str(cfg), "--log-format", "json",
                           "--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12"],
                          input=stdin, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    kinds = [next(iter(e)) for e in out]
    # dedup first (key: the arguments): /bin/a's and /bin/b's "-x" are one key, /bin/c's and /bin/d's "same"
    # another; the rate limit (key: node and binary) then sees /bin/a once and /bin/c once: nothing to drop
    assert kinds == ["process_exec", "process_exec", "tetrapipe_dedup", "tetrapipe_dedup"], kinds
    repeats = {e["tetrapipe_dedup"]["key"]["process.arguments"]: e["tetrapipe_dedup"]["repeats"] for e in out[2:]}
    assert repeats == {"-x": 3, "same": 1}
    assert all(e["tetrapipe"] == {"categories": [], "groups": [], "summaries": {}} for e in out[2:])
    summary = next(json.loads(line) for line in done.stderr.splitlines() if b"run summary" in line)
    assert summary["filtered_out"] == {"*": {"deduplicated": 4}}
    assert summary["sent"] == {"stdout": 4}


@pytest.mark.parametrize("binaries", [["/bin/a"] * 5, ["/bin/a", "/bin/b"] * 3])
def test_the_cli_reports_every_rate_limited_event(tmp_path: Any, binaries: list[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("rate_limit: {rate: 0.001, burst: 1, keys: [process.binary], interval: 3600}\n")
    stdin = b"".join(orjson.dumps(_event(b)) + b"\n" for b in binaries)
    done = subprocess.run([sys.executable, "-m", "tetrapipe", "run", "--config", str(cfg), "--log-format", "json",
                           "--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12"],
                          input=stdin, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    passed = [e for e in out if "process_exec" in e]
    infos = {e["tetrapipe_rate_limit"]["key"]["process.binary"]: int(e["rate_limit_info"]
                                                                      ["number_of_dropped_process_events"])
             for e in out if "rate_limit_info" in e}
    assert len(passed) == len(set(binaries))  # burst 1: the first of each binary
    assert sum(infos.values()) + len(passed) == len(binaries)  # every input: sent, or counted in a summary
    assert set(infos) == {b for b in set(binaries) if binaries.count(b) > 1}


@pytest.mark.expect_errors
async def test_a_record_that_cannot_be_rendered_is_reported_not_fatal(tagger: Tagger,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    processor = _processor(tagger)
    processor.stage = Stage(None, None, None, rate=_limiter(clock))
    sink = ScriptedSink("s")
    delivery = Delivery([sink], None, Stats())
    assert processor.stage.rate is not None
    processor.stage.rate(_event("/bin/x"), "process_exec")
    processor.stage.rate(_event("/bin/x"), "process_exec")

    def broken(*_: Any) -> None:
        raise RuntimeError("scripted render failure")

    monkeypatch.setattr(processor, "rerender", broken)
    await Summaries(processor, delivery).flush()
    assert sink.delivered == []


async def test_a_stage_replaced_by_a_reload_reports_what_it_held(tagger: Tagger) -> None:
    clock = Clock()
    processor = _processor(tagger)
    sink = ScriptedSink("s")
    old = Stage(None, None, None, rate=_limiter(clock, interval=3600))
    delivery = Delivery([sink], None, Stats(), stages={"s": old})
    summaries = Summaries(processor, delivery)
    assert old.rate is not None
    old.rate(_event("/bin/x"), "process_exec")
    old.rate(_event("/bin/x"), "process_exec")
    await summaries.deliver()
    assert sink.delivered == []  # its interval is far from over
    delivery.stages = {"s": Stage(None, None, None, rate=_limiter(clock, interval=3600))}  # what a reload does
    await summaries.deliver()
    [record] = [json.loads(e.out)["tetrapipe_rate_limit"] for e in sink.delivered]
    assert record["dropped"] == 1 and record["scope"] == "s"
    await summaries.deliver()
    assert len(sink.delivered) == 1  # reported once


async def test_evicted_keys_are_counted_in_the_summary_and_the_metrics(tagger: Tagger) -> None:
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from tetrapipe.service.metrics import registry_for

    processor = _processor(tagger)
    processor.stage = Stage(None, None, None, dedup=Dedup(window=3600, keys=["process.binary"], max_keys=2))
    binaries = [f"/bin/{i}" for i in range(5)] + ["/bin/0"]  # /bin/0 again: evicted by then, so it passes
    sink = ScriptedSink("s")
    p = Pipeline(ListSource([orjson.dumps(_event(b)) for b in binaries], batch_size=2), processor, [sink],
                 retry=RetryPolicy(initial=0.001, maximum=0.01), log=io.StringIO())
    p.delivery.stages = {"s": Stage(None, None, None, rate=RateLimiter(
        rate=1000, burst=1000, keys=["process.binary"], max_keys=1))}
    assert await p.run() == EXIT_OK
    assert len(sink.delivered) == 6  # nothing repeated within a window, nothing over the rate
    # dedup: /bin/2, /bin/3, /bin/4 and /bin/0 (again) each evict the least recent of 2 keys; rate limit: 5 of 6
    assert p.stats.evicted_keys == {ALL_SINKS: {"dedup": 4}, "s": {"rate_limit": 5}}
    assert p.stats.summary_fields()["evicted_keys"] == {"*": {"dedup": 4}, "s": {"rate_limit": 5}}
    metrics = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(generate_latest(registry_for(p, "1")).decode())
               for s in family.samples}
    assert metrics[("tetrapipe_filter_keys_evicted_total", (("sink", "*"), ("step", "dedup")))] == 4
    assert metrics[("tetrapipe_filter_keys_evicted_total", (("sink", "s"), ("step", "rate_limit")))] == 5


def test_no_eviction_no_summary_field() -> None:
    assert "evicted_keys" not in Stats().summary_fields()
