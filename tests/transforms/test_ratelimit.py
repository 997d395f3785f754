"""Rate limit and dedup under a manual clock: deterministic verdicts, summary records, bounded memory."""

from __future__ import annotations

import pytest

from tetrapipe.transforms.dedup import Dedup
from tetrapipe.transforms.filter_errors import FilterConfigError
from tetrapipe.transforms.ratelimit import RateLimiter, as_rate_limit_info


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ev(binary: str = "/usr/bin/curl", node: str = "n1", args: str = "") -> dict:
    return {"process_exec": {"process": {"binary": binary, "arguments": args}}, "node_name": node}


def test_token_bucket_burst_then_rate() -> None:
    clock = Clock()
    rl = RateLimiter(rate=2, burst=3, interval=10, clock=clock)
    assert [rl(ev(), "process_exec", ["sudo"]) for _ in range(5)] == [True, True, True, False, False]
    clock.now += 0.5  # one token back
    assert [rl(ev(), "process_exec", ["sudo"]) for _ in range(2)] == [True, False]
    clock.now += 100  # refill is capped at the burst
    assert [rl(ev(), "process_exec", ["sudo"]) for _ in range(4)] == [True, True, True, False]
    assert (rl.passed, rl.dropped) == (7, 4)


def test_keys_are_independent() -> None:
    rl = RateLimiter(rate=1, burst=1, clock=Clock())
    assert rl(ev(), "process_exec", ["a"]) and not rl(ev(), "process_exec", ["a"])
    assert rl(ev(), "process_exec", ["b"])  # other category
    assert rl(ev(node="n2"), "process_exec", ["a"])  # other node
    assert rl(ev(binary="/bin/sh"), "process_exec", ["a"])  # other binary


def test_one_summary_per_key_and_interval() -> None:
    clock = Clock()
    rl = RateLimiter(rate=0.001, burst=1, interval=60, clock=clock)
    rl(ev(), "process_exec", ["egress"])
    for _ in range(3):
        clock.now += 1
        rl(ev(), "process_exec", ["egress"])
    assert rl.drain() == []  # the interval opened by the first drop (t=1001) has not ended
    clock.now = 1061
    assert rl.drain() == [{"key": {"categories": ["egress"], "node_name": "n1", "process.binary": "/usr/bin/curl"},
                           "dropped": 3, "interval": 60.0, "first_drop": 1001.0, "last_drop": 1003.0}]
    assert rl.drain() == []
    clock.now = 1070
    rl(ev(), "process_exec", ["egress"])  # a new drop opens the next interval
    clock.now = 1200
    (record,) = rl.drain()
    assert (record["dropped"], record["first_drop"]) == (1, 1070.0)
    info = as_rate_limit_info(record, "n1", "2024-05-14T09:00:00Z")
    assert info["rate_limit_info"] == {"number_of_dropped_process_events": "1"}


def test_key_limit_evicts_least_recent_and_keeps_its_count() -> None:
    clock = Clock()
    rl = RateLimiter(rate=0.001, burst=1, interval=60, max_keys=2, keys=["process.binary"], clock=clock)
    rl(ev("/a"), "process_exec")
    rl(ev("/a"), "process_exec")  # dropped
    rl(ev("/b"), "process_exec")
    rl(ev("/c"), "process_exec")  # evicts /a
    assert rl.evictions == 1
    assert rl.take_evictions() == 1 and rl.take_evictions() == 0  # each eviction taken once
    [early] = rl.drain()  # early, not lost, and says why
    assert early["key"] == {"process.binary": "/a"} and early["evicted"] is True and early["dropped"] == 1
    clock.now += 100
    assert rl.drain() == []  # and not reported twice
    assert rl(ev("/a"), "process_exec")  # a fresh bucket


def test_flush_reports_open_intervals() -> None:
    rl = RateLimiter(rate=1, burst=1, clock=Clock())
    rl(ev(), "process_exec")
    rl(ev(), "process_exec")
    assert [r["dropped"] for r in rl.flush()] == [1]


def test_dedup_window_counts_repeats_and_reports_later() -> None:
    clock = Clock()
    dd = Dedup(window=10, keys=["process.binary", "process.arguments", "event_type"], clock=clock)
    assert dd(ev(args="x"), "process_exec")
    for _ in range(4):
        clock.now += 2
        assert not dd(ev(args="x"), "process_exec")
    assert dd(ev(args="y"), "process_exec")  # another key
    assert dd.drain() == []
    clock.now = 1010  # x's window [1000, 1010) has closed
    assert dd.drain() == [{"key": {"process.binary": "/usr/bin/curl", "process.arguments": "x",
                                   "event_type": "process_exec"},
                           "repeats": 4, "window": 10.0, "first_seen": 1000.0, "last_seen": 1008.0}]
    assert dd(ev(args="x"), "process_exec")  # a new window passes its first event
    clock.now = 1100
    assert dd.drain() == []  # windows without repeats close silently
    assert (dd.passed, dd.suppressed) == (3, 4)


def test_dedup_event_after_window_closes_it_before_drain() -> None:
    clock = Clock()
    dd = Dedup(window=5, keys=["process.binary"], clock=clock)
    dd(ev(), "process_exec")
    dd(ev(), "process_exec")
    clock.now += 6
    assert dd(ev(), "process_exec")
    assert [r["repeats"] for r in dd.drain()] == [1]
    clock.now += 6
    assert dd.drain() == []


def test_dedup_lru_bound_and_list_keys() -> None:
    clock = Clock()
    dd = Dedup(window=60, keys=["args"], max_keys=2, clock=clock)
    kp = [{"process_kprobe": {"args": [{"int_arg": i}]}} for i in range(3)]
    assert dd(kp[0], "process_kprobe") and not dd(kp[0], "process_kprobe")
    assert dd(kp[1], "process_kprobe") and dd(kp[2], "process_kprobe")  # evicts kp[0]
    assert dd.evictions == 1
    assert dd.drain() == [{"key": {"args": [{"int_arg": 0}]}, "repeats": 1, "window": 60.0,
                           "first_seen": 1000.0, "last_seen": 1000.0, "evicted": True}]
    assert dd(kp[0], "process_kprobe")  # forgotten: passes again
    assert len(dd._open) == 2
    assert dd.evictions == 2 and dd.take_evictions() == 2 and dd.take_evictions() == 0
    assert not dd(kp[2], "process_kprobe")  # a repeat within its window: no eviction
    assert dd.take_evictions() == 0


@pytest.mark.parametrize("make, where", [
    (lambda: RateLimiter(rate=0, burst=1), r"^rate_limit\.rate: expected a positive number"),
    (lambda: RateLimiter(rate=1, burst=1, keys=["process..binary"]), r"^rate_limit\.keys\[0\]: invalid field path"),
    (lambda: Dedup(window=1, keys=[]), r"^dedup\.keys: expected at least one"),
    (lambda: Dedup(window=-1, keys=["x"]), r"^dedup\.window"),
])
def test_config_errors(make: object, where: str) -> None:
    with pytest.raises(FilterConfigError, match=where):
        make()  # type: ignore[operator]


def test_dedup_window_is_half_open() -> None:
    clock = Clock()
    dd = Dedup(window=5, keys=["process.binary"], clock=clock)
    assert dd(ev(), "process_exec")
    clock.now += 4.999
    assert not dd(ev(), "process_exec")
    clock.now = 1005.0  # [1000, 1005) is over: this event opens the next window
    assert dd(ev(), "process_exec")
