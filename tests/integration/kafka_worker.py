"""A tetrapipe Kafka worker for tests: builds the pipeline from CLI-like args, as `tetrapipe run` will.

    python tests/integration/kafka_worker.py --config kafka.yaml --kafka-bootstrap H:P --kafka-topic RAW \\
        --kafka-group G --kafka-out-template 'out.{category}' [--status FILE] [--grace S]

`--config` holds a `kafka:` section (tetrapipe.config.kafka.KafkaSection).  It runs
until SIGTERM/SIGINT (graceful drain; a second signal exits at once).  With
`--status FILE` it rewrites FILE (atomically) every 0.2 s and at exit with the
partitions it owns and its counters, so a test can watch it from outside.
`build_pipeline` is also used in-process by the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402
import yaml  # noqa: E402

from tetrapipe.cli.main import _run_with_signals  # noqa: E402
from tetrapipe.config.kafka import (  # noqa: E402
    KafkaSection,
    add_kafka_arguments,
    build_kafka,
    exactly_once_options,
)
from tetrapipe.config.root import Config, build_classifier, build_tagger  # noqa: E402
from tetrapipe.pipeline.processor import Processor  # noqa: E402
from tetrapipe.pipeline.runner import Pipeline  # noqa: E402
from tetrapipe.pipeline.stats import Stats  # noqa: E402
from tetrapipe.sinks.stdout import StdoutSink  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", help="YAML file with a kafka: section")
    p.add_argument("--grace", type=float, default=30.0)
    p.add_argument("--max-in-flight", type=int, default=8)
    p.add_argument("--status", help="write a JSON status file here")
    p.add_argument("--stall-after-writes", type=int, metavar="N",
                   help="after N sink writes, the next write is made and then held (a stuck worker)")
    p.add_argument("--stall-seconds", type=float, metavar="S", help="hold that write S seconds (default: forever)")
    add_kafka_arguments(p)
    return p


def load_section(path: str | None) -> KafkaSection | None:
    if not path:
        return None
    raw = yaml.safe_load(Path(path).read_text()) or {}
    return msgspec.convert(raw.get("kafka", {}), KafkaSection)


def build_pipeline(argv: list[str], **consumer_options: Any) -> Pipeline:
    """The Pipeline `tetrapipe run` would build for these args (stdout when no Kafka sink)."""
    args = parser().parse_args(argv)
    config = Config()
    tagger = build_tagger(config.library)
    processor = Processor(tagger, build_classifier(config.egress, ["10.244.0.0/16"], ["10.96.0.0/12"]))
    source, sinks, dead_letter = build_kafka(args, load_section(args.config), groups=tagger.groups,
                                             **consumer_options)
    assert source is not None, "the worker needs a Kafka source"
    for sink in sinks:
        sink.dead_letter = dead_letter  # as `tetrapipe run` wires it
    outputs = sinks or [StdoutSink()]
    if args.stall_after_writes is not None:
        _stall_after(outputs[0], args.stall_after_writes, args.stall_seconds)
    # The broker check of exactly-once mode is `tetrapipe run`'s (it needs its own event loop): not here.
    return Pipeline(source, processor, outputs, dead_letter=dead_letter, stats=Stats(),
                    grace=args.grace, max_in_flight=args.max_in_flight,
                    **exactly_once_options(source, outputs, dead_letter, probe=False))


def _stall_after(sink: Any, writes: int, seconds: float | None) -> None:
    inner = sink.write
    made = 0

    async def write(envelopes: Any) -> None:
        nonlocal made
        made += 1
        await inner(envelopes)
        if made == writes + 1:
            sink.stalled = True  # held: in exactly-once mode, the transaction stays open with these records
            if seconds is None:
                await asyncio.Event().wait()
            await asyncio.sleep(seconds)

    sink.write = write
    sink.stalled = False


def status(pipeline: Pipeline) -> dict[str, Any]:
    source: Any = pipeline.source
    sink: Any = pipeline.sinks[0]
    return {"pid": os.getpid(), "owned": sorted(f"{tp.topic}:{tp.partition}" for tp in source._owned),
            "revocations": source.revocations, "received": pipeline.stats.received,
            "routed": getattr(sink, "routed", 0), "defaulted": getattr(sink, "defaulted", 0),
            "dead_lettered": pipeline.stats.dead_lettered, "committed_batches": pipeline.committer.commits,
            "messages": dict(getattr(sink, "messages", {})),  # acknowledged records per output topic
            "stalled": getattr(sink, "stalled", False),
            "transactions": {"committed": getattr(pipeline.transaction, "committed", 0),
                             "aborted": getattr(pipeline.transaction, "aborted", 0)}}


def write_status(path: str, pipeline: Pipeline) -> None:
    tmp = f"{path}.tmp"
    Path(tmp).write_text(json.dumps(status(pipeline)))
    os.replace(tmp, path)


async def main_async(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    pipeline = build_pipeline(argv)

    async def report() -> None:
        while True:  # cancelled when the pipeline ends
            write_status(args.status, pipeline)
            await asyncio.sleep(0.2)

    reporter = asyncio.create_task(report()) if args.status else None
    try:
        return await _run_with_signals(pipeline)
    finally:
        if reporter is not None:
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
            write_status(args.status, pipeline)


if __name__ == "__main__":
    sys.exit(asyncio.run(main_async(sys.argv[1:])))
