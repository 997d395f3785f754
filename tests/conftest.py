"""Shared fixtures: the shipped library compiled once, and helpers to process one event."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import orjson
import pytest
from hypothesis import settings

from tests.support.kafka_broker import session_broker
from tetrapipe.config.root import Config, build_classifier, build_tagger
from tetrapipe.event.decode import LineDecoder
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.pipeline.processor import Processor
from tetrapipe.transforms.tag import Tagger

# Hypothesis budgets: the default run stays quick; `scripts/fuzz` picks "fuzz" and its size
# (--hypothesis-profile fuzz, TETRAPIPE_FUZZ_EXAMPLES). No deadline: CI machines are shared.
settings.register_profile("default", max_examples=150, deadline=None)
settings.register_profile("fuzz", max_examples=int(os.environ.get("TETRAPIPE_FUZZ_EXAMPLES", "5000")),
                          deadline=None, print_blob=True)
# Registering "default" does not make it current before Hypothesis 6.1xx (the lowest bound ran with a 200 ms
# deadline and failed a test on a loaded machine); --hypothesis-profile, applied after conftests, still wins.
settings.load_profile("default")


@pytest.fixture(scope="session")
def tagger() -> Tagger:
    return build_tagger(Config().library)


@pytest.fixture(scope="session")
def processor(tagger: Tagger) -> Processor:
    classifier = build_classifier(Config().egress, ["10.244.0.0/16"], ["10.96.0.0/12"])
    return Processor(tagger, classifier, LineDecoder())


ProcessFn = Callable[[bytes | dict], Envelope]


@pytest.fixture
def process_one(processor: Processor) -> ProcessFn:
    """Process one line (bytes) or event (dict) through decode → classify → tag → render."""

    def run(event: bytes | dict) -> Envelope:  # type: ignore[type-arg]
        line = event if isinstance(event, bytes) else orjson.dumps(event)
        batch = Batch([Envelope(line, 1)])
        processor.process(batch)
        return batch.envelopes[0]

    return run


def process_lines(processor: Processor, lines: Sequence[bytes]) -> list[Envelope]:
    batch = Batch([Envelope(line, i + 1) for i, line in enumerate(lines)])
    processor.process(batch)
    return batch.envelopes


# -- ERROR log lines a test did not expect fail it -------------------------------------------------
#
# Every tetrapipe log line goes through `tetrapipe.logs.emit`, which formats it with the module-level
# `render` (looked up at each call; components import `emit` by name, so patching `emit` itself would
# miss them).  Wrapping `render` sees every emitted line, whatever stream it goes to (stderr, or a
# `log=` StringIO a test passed).  Third-party `logging` records that `tetrapipe.logs.configure`
# routes through the same `render` are not counted: only logger "tetrapipe" (tetrapipe's own lines).
# Log lines of subprocesses (CLI tests that run `python -m tetrapipe.cli.main`) are not seen here.


class LoggedErrors:
    """ERROR lines tetrapipe emitted during the current test; `take()` marks them as expected."""

    def __init__(self) -> None:
        self._lines: list[tuple[str, dict[str, object]]] = []
        self._taken = 0

    def record(self, message: str, context: dict[str, object]) -> None:
        self._lines.append((message, dict(context)))

    @property
    def messages(self) -> list[str]:
        """Every ERROR message logged so far in this test (taken or not)."""
        return [message for message, _ in self._lines]

    def take(self) -> list[str]:
        """The ERROR messages logged since the last `take()`, now accepted as expected."""
        fresh = self._lines[self._taken:]
        self._taken = len(self._lines)
        return [message for message, _ in fresh]

    def untaken(self) -> list[tuple[str, dict[str, object]]]:
        return self._lines[self._taken:]


@pytest.fixture
def logged_errors(_error_log_check: LoggedErrors) -> LoggedErrors:
    """The ERROR lines logged by the test: assert on them with `take()`; those not taken still fail it."""
    return _error_log_check


@pytest.fixture(autouse=True)
def _error_log_check(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoggedErrors]:
    """Fail (at teardown) a test that logged an ERROR it did not expect.

    Expected: the test is marked `@pytest.mark.expect_errors`, or it took them from `logged_errors`.
    """
    from tetrapipe import logs

    errors = LoggedErrors()
    original = logs.render

    def recording_render(level: str, message: str, context: dict[str, object], logger: str = "tetrapipe") -> str:
        if level == "error" and logger == "tetrapipe":
            errors.record(message, context)
        return original(level, message, context, logger)

    monkeypatch.setattr(logs, "render", recording_render)
    yield errors
    if request.node.get_closest_marker("expect_errors") is not None:
        return
    unexpected = errors.untaken()
    if unexpected:
        shown = "\n".join(f"  - {message} {context or ''}" for message, context in unexpected[:10])
        more = f"\n  … and {len(unexpected) - 10} more" if len(unexpected) > 10 else ""
        pytest.fail(f"the test logged {len(unexpected)} ERROR line(s) it did not expect (mark it "
                    f"@pytest.mark.expect_errors, or take() them from the logged_errors fixture):\n{shown}{more}",
                    pytrace=False)


# -- the session's Kafka broker (tests/integration, tests/contracts) ------------------------------------
@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Any]:
    """One started broker for the whole session, whichever directories use it (tests/support/kafka_broker.py)."""
    yield from session_broker()
