"""Implementations of the sink contract, each with a way to read back what its destination holds.

A `SinkTarget` builds the sink under test (not started) and knows, for an
envelope it was given, which bytes must appear at the destination, and how to
read the destination back: the in-memory fake's list, a pipe the test reads
(stdout), the dead-letter file, a Kafka topic, an OTLP collector's re-export.
Optional abilities (an outage, a misconfiguration, an I/O failure, a record
the destination refuses) are methods that raise `NotImplementedError` where
the implementation has no such case; the suite only parametrizes where they
exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from brokers import Broker, create_topic, unique_name
from collector import Collector
from test_kafka_helpers import read_all

from tests.conftest import process_lines
from tests.support import synth
from tests.support.events import exec_event
from tests.support.fakes import ScriptedSink
from tetrapipe.clients.kafka import KafkaConnection
from tetrapipe.event.envelope import Envelope
from tetrapipe.formats import build_format
from tetrapipe.pipeline.processor import Processor
from tetrapipe.sinks.file import FileDeadLetter
from tetrapipe.sinks.file_sink import FileSink
from tetrapipe.sinks.kafka.config import KafkaSinkConfig, TopicSettings
from tetrapipe.sinks.kafka.sink import KafkaSink
from tetrapipe.sinks.otlp.sink import OtlpSink
from tetrapipe.sinks.otlp.transport import TransportSettings
from tetrapipe.sinks.stdout import StdoutSink

PIPE_SIZE = 1 << 20  # the default /proc/sys/fs/pipe-max-size: what an unprivileged process may ask for


class RecordingDeadLetter:
    """A dead-letter output that keeps what it was given (the sinks under test hand refused records here)."""

    name = "recording dead letter"

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def start(self) -> None:
        return None

    async def write(self, envelopes: Sequence[Envelope]) -> None:
        self.envelopes.extend(envelopes)

    async def close(self) -> None:
        return None


class SinkTarget:
    """One implementation of the sink interface and its destination."""

    name = "abstract"
    ordered = True  # the destination keeps the order of the writes (and within each write)
    survives_outage = True  # records acknowledged before an outage are still there after it

    def __init__(self, processor: Processor, tmp_path: Path) -> None:
        self.processor = processor
        self.tmp_path = tmp_path
        self._seed = 0

    # -- what to write, what must arrive --------------------------------------------------
    def records(self, count: int) -> list[Envelope]:
        """`count` processed events never written before in this test (unique bytes)."""
        self._seed += 1
        return process_lines(self.processor, list(synth.generate(count, seed=1000 + self._seed)))

    def expected(self, env: Envelope) -> bytes:
        """What the destination holds for `env` (the default format: the output-contract line)."""
        return env.out

    # -- the sink and its destination ---------------------------------------------------
    async def make(self) -> Any:
        raise NotImplementedError

    async def read_back(self, count: int) -> list[bytes]:
        """Every record at the destination so far, in its order (`count`: how many are expected)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        return None

    # -- optional abilities ---------------------------------------------------------------
    async def make_for_outage(self, several_requests: bool) -> Any:
        """A sink for the outage case; `several_requests`: a write of 30 records takes several requests."""
        return await self.make()

    async def outage_begin(self) -> None:
        raise NotImplementedError

    async def outage_end(self) -> None:
        raise NotImplementedError

    async def make_misconfigured(self) -> Any:
        """A sink whose start() or first write() must fail for good (retrying cannot help)."""
        raise NotImplementedError

    async def make_failing_io(self) -> Any:
        """A sink whose destination fails every write (e.g. no space left on the device)."""
        raise NotImplementedError

    async def make_refusing(self, dead_letter: RecordingDeadLetter | None) -> tuple[Any, Envelope]:
        """A sink and one record its destination cannot take (with `dead_letter` as its dead-letter output)."""
        raise NotImplementedError

    def refused_count(self, sink: Any) -> int:
        """How many refused records the sink counted (without a dead letter)."""
        raise NotImplementedError

    async def make_reader_gone(self) -> Any:
        """A sink whose consumer went away on purpose (`| head` closed the pipe)."""
        raise NotImplementedError


class FakeTarget(SinkTarget):
    """tests/support/fakes.py ScriptedSink: its `delivered` list is the destination."""

    name = "fake"

    async def make(self) -> ScriptedSink:
        self.sink = ScriptedSink("contract-fake")
        return self.sink

    async def read_back(self, count: int) -> list[bytes]:
        return [env.out for env in self.sink.delivered]

    async def outage_begin(self) -> None:
        self.sink.fail_retryable = 1 << 30

    async def outage_end(self) -> None:
        self.sink.fail_retryable = 0

    async def make_misconfigured(self) -> ScriptedSink:
        sink = ScriptedSink("contract-fake-fatal")
        sink.fail_fatal = True
        return sink

    async def make_reader_gone(self) -> ScriptedSink:
        sink = ScriptedSink("contract-fake-closed")
        sink.closed_by_reader = True
        return sink


class StdoutTarget(SinkTarget):
    """tetrapipe/sinks/stdout.py StdoutSink on a pipe the test reads (1 MiB of pipe buffer: read after the ack)."""

    name = "stdout"

    def __init__(self, processor: Processor, tmp_path: Path) -> None:
        super().__init__(processor, tmp_path)
        self._fds: list[int] = []
        self._got = bytearray()

    async def make(self) -> StdoutSink:
        read_fd, write_fd = os.pipe()
        self._fds += [read_fd, write_fd]
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        os.set_blocking(read_fd, False)
        self._read_fd = read_fd
        return StdoutSink(fd=write_fd)

    def expected(self, env: Envelope) -> bytes:
        return env.out

    async def read_back(self, count: int) -> list[bytes]:
        # Non-blocking: what write() handed to the kernel before it returned is there now, or never.
        while True:
            try:
                chunk = os.read(self._read_fd, 1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._got += chunk
        assert not self._got or self._got.endswith(b"\n"), "a partial line in the pipe after the acknowledgement"
        return bytes(self._got).splitlines()

    async def make_misconfigured(self) -> StdoutSink:
        fd = os.open(os.devnull, os.O_RDONLY)  # a descriptor not open for writing: EBADF
        self._fds.append(fd)
        return StdoutSink(fd=fd)

    async def make_failing_io(self) -> StdoutSink:
        fd = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC
        self._fds.append(fd)
        return StdoutSink(fd=fd)

    async def make_reader_gone(self) -> StdoutSink:
        read_fd, write_fd = os.pipe()
        self._fds.append(write_fd)
        os.close(read_fd)  # the reader is gone: write(2) fails with EPIPE (Python ignores SIGPIPE)
        return StdoutSink(fd=write_fd)

    async def aclose(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)


class FileTarget(SinkTarget):
    """tetrapipe/sinks/file.py FileDeadLetter: bad records, unchanged, one per line, in a temp file."""

    name = "file-dead-letter"

    def records(self, count: int) -> list[Envelope]:
        """Bad records (what a dead letter is given): each is not JSON, so the processor rejects it."""
        self._seed += 1
        lines = [f"not json #{self._seed}-{i} \x01 {'x' * (i % 50)}".encode() for i in range(count)]
        envs = process_lines(self.processor, lines)
        assert all(env.error is not None for env in envs)
        return envs

    def expected(self, env: Envelope) -> bytes:
        return env.raw

    async def make(self) -> FileDeadLetter:
        self.path = self.tmp_path / "dead-letter.jsonl"
        return FileDeadLetter(str(self.path))

    async def read_back(self, count: int) -> list[bytes]:
        data = self.path.read_bytes()
        assert not data or data.endswith(b"\n"), "a partial line in the dead-letter file after the acknowledgement"
        return data.splitlines()

    async def make_misconfigured(self) -> FileDeadLetter:
        return FileDeadLetter(str(self.tmp_path / "no-such-directory" / "dead-letter.jsonl"))

    async def make_failing_io(self) -> FileDeadLetter:
        return FileDeadLetter("/dev/full")  # opens fine; every write: ENOSPC


class FileSinkTarget(SinkTarget):
    """tetrapipe/sinks/file_sink.py FileSink: events in the default format appended to a temp file."""

    name = "file"

    async def make(self) -> FileSink:
        self.path = self.tmp_path / "events.jsonl"
        return FileSink(str(self.path), build_format("tetrapipe"))

    async def read_back(self, count: int) -> list[bytes]:
        data = self.path.read_bytes()
        assert not data or data.endswith(b"\n"), "a partial line in the file after the acknowledgement"
        return data.splitlines()

    async def make_misconfigured(self) -> FileSink:
        return FileSink(str(self.tmp_path / "no-such-directory" / "events.jsonl"), build_format("tetrapipe"))

    async def make_failing_io(self) -> FileSink:
        return FileSink("/dev/full", build_format("tetrapipe"), fsync=False)  # opens fine; every write: ENOSPC


class KafkaTarget(SinkTarget):
    """tetrapipe/sinks/kafka/sink.py KafkaSink: every event to one single-partition topic (template without
    fields, default topic the same), read back from the beginning by a plain consumer."""

    name = "kafka"

    def __init__(self, processor: Processor, tmp_path: Path, broker: Broker, groups: dict[str, str]) -> None:
        super().__init__(processor, tmp_path)
        self.broker = broker
        self.groups = groups
        self.topic = unique_name("contract-sink")

    def _sink(self, topic: str, *, request_timeout_ms: int = 30_000, **config: Any) -> KafkaSink:
        connection = KafkaConnection(bootstrap_servers=self.broker.bootstrap, request_timeout_ms=request_timeout_ms)
        settings: dict[str, Any] = {"idempotence": self.broker.supports_idempotence,
                                    "topics": TopicSettings(partitions=1), **config}
        cfg = KafkaSinkConfig(topic_template=topic, default_topic=topic, **settings)
        return KafkaSink(connection, cfg, self.groups)

    async def make(self) -> KafkaSink:
        return self._sink(self.topic)

    async def read_back(self, count: int) -> list[bytes]:
        return [record.value for record in await read_all(self.broker.bootstrap, [self.topic])]

    async def make_for_outage(self, several_requests: bool) -> KafkaSink:
        """Without idempotence (an idempotent producer rides an outage out inside aiokafka, never failing the
        write), and short request timeouts, so a write during the outage fails within seconds.  With
        `several_requests`, producer batches of 16 KiB: a write of 30 events fills several per partition."""
        extra = {"batch_size": 16_384} if several_requests else {}
        return self._sink(self.topic, request_timeout_ms=3000, idempotence=False, **extra)

    async def outage_begin(self) -> None:
        await self.broker.astop(kill=True)

    async def outage_end(self) -> None:
        await self.broker.astart()
        if self.broker.kind == "tansu":  # memory storage: the topic is gone with the old process
            await create_topic(self.broker.bootstrap, self.topic, 1)

    @property
    def survives_outage(self) -> bool:  # type: ignore[override]
        return self.broker.kind != "tansu"

    async def make_misconfigured(self) -> KafkaSink:
        topics = TopicSettings(partitions=1, create_topics=False)
        connection = KafkaConnection(bootstrap_servers=self.broker.bootstrap)
        missing = unique_name("contract-missing")
        return KafkaSink(connection, KafkaSinkConfig(topic_template=missing, default_topic=missing, topics=topics,
                                                     idempotence=self.broker.supports_idempotence), self.groups)

    async def make_refusing(self, dead_letter: RecordingDeadLetter | None) -> tuple[KafkaSink, Envelope]:
        sink = self._sink(self.topic, max_request_size=30_000, batch_size=16_384)
        sink.dead_letter = dead_letter
        big = orjson.dumps(exec_event("/tmp/payload", "A" * 60_000))  # one event over max_request_size
        [env] = process_lines(self.processor, [big])
        return sink, env

    def refused_count(self, sink: KafkaSink) -> int:
        return sink.too_large


class OtlpTarget(SinkTarget):
    """tetrapipe/sinks/otlp/sink.py OtlpSink to rotel (tests/integration/collector.py), read back from the
    OTLP receiver rotel re-exports to.  rotel acknowledges before it forwards: read-back waits (bounded)."""

    name = "otlp"
    ordered = False  # requests of a write go out concurrently (max_concurrent_requests)

    def __init__(self, processor: Processor, tmp_path: Path, collector: Collector, protocol: str = "http/protobuf"):
        super().__init__(processor, tmp_path)
        self.collector = collector
        self.protocol = protocol
        self._extra: list[Collector] = []

    @staticmethod
    def settings(collector: Collector, protocol: str, path: str = "/v1/logs") -> TransportSettings:
        url = collector.grpc_endpoint if protocol == "grpc" else collector.http_endpoint + path
        return TransportSettings(url=url, protocol=protocol, timeout=2.0)

    async def make(self) -> OtlpSink:
        return OtlpSink(self.settings(self.collector, self.protocol))

    def expected(self, env: Envelope) -> bytes:
        return env.out

    async def read_back(self, count: int) -> list[bytes]:
        records = await asyncio.to_thread(self.collector.wait_for_count, count, 20.0)
        await asyncio.sleep(0.2)  # a duplicate would arrive right behind
        records = self.collector.received_log_records()
        return [r.body.encode() for r in records]

    async def make_for_outage(self, several_requests: bool) -> OtlpSink:
        return OtlpSink(self.settings(self.collector, self.protocol), max_records=8 if several_requests else 2048)

    async def outage_begin(self) -> None:
        await asyncio.to_thread(self.collector.kill)

    async def outage_end(self) -> None:
        await asyncio.to_thread(self.collector.restart)

    async def make_misconfigured(self) -> OtlpSink:
        return OtlpSink(self.settings(self.collector, "http/protobuf", path="/v1/no-such-path"))  # HTTP 404

    async def make_refusing(self, dead_letter: RecordingDeadLetter | None) -> tuple[OtlpSink, Envelope]:
        # A collector that takes gRPC messages up to 1 MiB (rotel answers larger ones OUT_OF_RANGE /
        # RESOURCE_EXHAUSTED "message length too large"); its HTTP receiver has no such limit to set.
        small = Collector(self.tmp_path / "otlp-collector-1mib", grpc_max_recv_mib=1)
        self._extra.append(small)
        await asyncio.to_thread(small.start)
        self.collector = small  # read back from this one
        sink = OtlpSink(self.settings(small, "grpc"), dead_letter=dead_letter)
        big = orjson.dumps(exec_event("/tmp/payload", "A" * 1_200_000))
        [env] = process_lines(self.processor, [big])
        return sink, env

    def refused_count(self, sink: OtlpSink) -> int:
        return sink.counters["dropped_invalid"]

    async def aclose(self) -> None:
        for collector in self._extra:
            await asyncio.to_thread(collector.stop)
