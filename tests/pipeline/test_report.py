"""Bad-input reports: every one counted, a bounded number printed, suppressed ones announced."""

from __future__ import annotations

import io

from tetrapipe.event.decode import BadInput
from tetrapipe.event.envelope import Envelope
from tetrapipe.pipeline.report import BadInputReporter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def bad(n: int, reason: str = "invalid_json") -> Envelope:
    env = Envelope(b"x", n)
    env.error = BadInput(reason, "detail " + "d" * 300)
    return env


def test_burst_then_rate_limited_then_announced():
    out, clock = io.StringIO(), Clock()
    reporter = BadInputReporter(out, burst=3, per_second=1.0, clock=clock)
    for n in range(1, 11):
        reporter.report(bad(n))
    text = out.getvalue()
    assert [f"line {n}:" in text for n in (1, 2, 3, 4)] == [True, True, True, False]
    assert reporter.suppressed == 7
    clock.now = 1.0
    reporter.report(bad(11))
    assert "7 more bad records not shown (rate limit)" in out.getvalue()
    assert "line 11: invalid_json: detail" in out.getvalue()
    assert "…" in out.getvalue()  # long details are cut, never the record itself
    reporter.report(bad(12))
    reporter.close()
    assert out.getvalue().rstrip().endswith("1 more bad records not shown (rate limit)")


def test_blank_lines_are_not_reported():
    out = io.StringIO()
    BadInputReporter(out).report(bad(1, "blank"))
    assert out.getvalue() == ""
