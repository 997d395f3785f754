"""Implementations of the source contract, each with a way to feed it input.

A `SourceTarget` makes the source under test (a new instance on the same
input each time: same file and checkpoint, same topic and consumer group),
feeds it lines, and knows what the source promises: whether its input ends by
itself (`endless`), whether a new instance resumes after a committed position
(`resumes`), and in which groups records keep their order.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from brokers import FAST_GROUP, Broker, create_topic, unique_name
from test_kafka_helpers import produce

from tests.support.fakes import ListSource
from tetrapipe.clients.kafka import KafkaConnection
from tetrapipe.event.envelope import Envelope
from tetrapipe.sources.follow.source import FollowSource
from tetrapipe.sources.kafka.config import KafkaSourceConfig
from tetrapipe.sources.kafka.source import KafkaSource
from tetrapipe.sources.stream import FileSource, StdinSource

PIPE_SIZE = 1 << 20


def sample_lines(count: int, first: int = 0) -> list[bytes]:
    """Distinct JSON lines of varying lengths (sources do not decode: any bytes without a newline do)."""
    return [b'{"seq":%d,"pad":"%s"}' % (i, b"x" * (i * 37 % 300)) for i in range(first, first + count)]


class SourceTarget:
    name = "abstract"
    endless = False  # batches() never ends by itself (it waits for more input until stop())
    resumes = False  # a new instance continues after the position the last one committed

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    async def feed(self, lines: Sequence[bytes]) -> None:
        """Make `lines` the input (or append them to it)."""
        raise NotImplementedError

    async def end_input(self) -> None:
        """A finite input ends here (stdin: the writer closes the pipe)."""

    def make(self) -> Any:
        raise NotImplementedError

    def order_group(self, env: Envelope) -> Any:
        """Records of one group keep their input order (one file, one pipe; one Kafka partition)."""
        return None

    def names(self, position: Any, text: str) -> bool:
        """Whether `text` (what describe() said) names `position`."""
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


class ListTarget(SourceTarget):
    """tests/support/fakes.py ListSource (its input is the list it was given)."""

    name = "list"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.lines: list[bytes] = []

    async def feed(self, lines: Sequence[bytes]) -> None:
        self.lines += lines

    def make(self) -> ListSource:
        return ListSource(self.lines, batch_size=7)

    def names(self, position: Any, text: str) -> bool:
        return str(position) in text


class FileTarget(SourceTarget):
    """tetrapipe/sources/stream.py FileSource (`--input FILE`) on a temp file, read in 512-byte chunks."""

    name = "file"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.path = tmp_path / "input.jsonl"
        self.path.write_bytes(b"")

    async def feed(self, lines: Sequence[bytes]) -> None:
        with open(self.path, "ab") as f:
            f.write(b"".join(line + b"\n" for line in lines))

    def make(self) -> FileSource:
        return FileSource(str(self.path), chunk_size=512)

    def names(self, position: Any, text: str) -> bool:
        return f"line {position}" in text and str(self.path) in text


class _FakeStdin:
    """What StdinSource needs of sys.stdin: its descriptor."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd


class StdinTarget(SourceTarget):
    """tetrapipe/sources/stream.py StdinSource on a pipe the test writes (sys.stdin patched to its read end).

    Endless until `end_input()` closes the write end: an open, idle pipe is where stop() must still work."""

    name = "stdin"
    endless = True

    def __init__(self, tmp_path: Path, monkeypatch: Any) -> None:
        super().__init__(tmp_path)
        self.read_fd, self.write_fd = os.pipe()
        fcntl.fcntl(self.write_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        monkeypatch.setattr(sys, "stdin", _FakeStdin(self.read_fd))

    async def feed(self, lines: Sequence[bytes]) -> None:
        data = b"".join(line + b"\n" for line in lines)
        assert len(data) < PIPE_SIZE, "the pipe would block the test"
        os.write(self.write_fd, data)

    async def end_input(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def make(self) -> StdinSource:
        return StdinSource(chunk_size=512)

    def names(self, position: Any, text: str) -> bool:
        return text == f"stdin line {position}"

    async def aclose(self) -> None:
        await self.end_input()  # the reader thread, if blocked in read(2), gets EOF and ends
        await asyncio.sleep(0.05)
        with contextlib.suppress(OSError):
            os.close(self.read_fd)


class FollowTarget(SourceTarget):
    """tetrapipe/sources/follow/source.py FollowSource on a temp dir: the file, its checkpoint next to it."""

    name = "follow"
    endless = True
    resumes = True

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.path = tmp_path / "tetragon.log"
        self.checkpoint = tmp_path / "state" / "checkpoint"
        self.checkpoint.parent.mkdir()
        self.path.write_bytes(b"")

    async def feed(self, lines: Sequence[bytes]) -> None:
        with open(self.path, "ab") as f:
            f.write(b"".join(line + b"\n" for line in lines))

    def make(self) -> FollowSource:
        return FollowSource(str(self.path), str(self.checkpoint), poll_interval=0.05, chunk_size=512)

    def names(self, position: Any, text: str) -> bool:
        return f"offset {position.offset}" in text and "tetragon.log" in text


class KafkaTarget(SourceTarget):
    """tetrapipe/sources/kafka/source.py KafkaSource: a fresh 2-partition topic and consumer group on the
    session's broker; records go to partition seq % 2; at most 7 records per batch."""

    name = "kafka"
    endless = True
    resumes = True
    partitions = 2

    def __init__(self, tmp_path: Path, broker: Broker) -> None:
        super().__init__(tmp_path)
        self.broker = broker
        self.topic = unique_name("contract-source")
        self.group = unique_name("contract-group")
        self._created = False
        self._fed = 0

    async def feed(self, lines: Sequence[bytes]) -> None:
        if not self._created:
            await create_topic(self.broker.bootstrap, self.topic, self.partitions)
            self._created = True
        first = self._fed
        await produce(self.broker.bootstrap, self.topic, list(lines), first_seq=first,
                      partition_of=lambda i: (first + i) % self.partitions)
        self._fed += len(lines)

    def make(self) -> KafkaSource:
        config = KafkaSourceConfig(topics=[self.topic], group_id=self.group, max_records=7, poll_timeout_ms=100,
                                   session_timeout_ms=FAST_GROUP["session_timeout_ms"],
                                   heartbeat_interval_ms=FAST_GROUP["heartbeat_interval_ms"], revoke_timeout=5.0)
        return KafkaSource(KafkaConnection(bootstrap_servers=self.broker.bootstrap), config)

    def order_group(self, env: Envelope) -> Any:
        return env.position[1]  # the partition

    def names(self, position: Any, text: str) -> bool:
        topic, partition, offset = position
        return topic in text and f"partition {partition}" in text and f"offset {offset}" in text


class ListWaitingTarget(ListTarget):
    """ListSource whose input is not available yet: its `gate` (each batch waits for it) is closed."""

    name = "list-waiting"
    endless = True

    def make(self) -> ListSource:
        source = ListSource([*self.lines, b'{"seq":"behind the gate"}'], batch_size=7)
        source.gate = asyncio.Event()  # never opened: the source waits for input
        return source
