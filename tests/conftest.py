"""Shared fixtures: the shipped library compiled once, and helpers to process one event."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import orjson
import pytest
from hypothesis import settings

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
