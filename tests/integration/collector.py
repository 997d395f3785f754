"""A real OTLP collector (rotel, from PyPI) for integration tests, with exact read-back.

Topology (everything on 127.0.0.1, ports chosen free at ``start()``)::

    code under test --OTLP gRPC / HTTP(protobuf|JSON)--> rotel --OTLP gRPC--> OtlpReceiver (sink)
                                                                               `-> journal.jsonl

rotel is the collector the code under test talks to; it re-exports everything it
accepts over OTLP/gRPC to an :class:`otlp_receiver.OtlpReceiver`, which journals
each request so tests can read back every LogRecord exactly (protobuf in, protobuf
out, no text parsing).  Why this read-back path and not rotel's others:

* rotel 0.0.1a15 has no file exporter (exporters: otlp, blackhole, datadog,
  clickhouse, aws-xray, kafka).
* ``--debug-log logs`` prints a human-oriented text dump: lossy (no escaping, types
  rendered as ``Str(..)``), so parsing it back is fragile.
* the Kafka exporter needs a broker process (Tansu) and a consumer, and silently
  drops messages above ``--kafka-exporter-max-message-bytes`` (librdkafka 1 MB).

rotel settings chosen so that the *test collector never loses data*:

* ``--disable-batching``: each accepted request is forwarded as-is and at once.  With
  batching on, rotel silently drops (still answering 200/OK!) any request holding
  more than ~2x ``--logs-batch-max-size`` records (default 8192) -- "Too many batch
  items split, dropping data".  It also keeps request boundaries 1:1 for tests.
* ``--otlp-grpc-max-recv-msg-size-mib`` raised to 256 (default 4; above it clients
  get OUT_OF_RANGE "decoded message length too large").  rotel's HTTP receiver has a fixed ~20 MiB body limit (it
  resets the connection, no 413) that no flag changes.

Caveat that is real collector behaviour: rotel acknowledges *before* it forwards (it
queues and retries the sink with backoff), so records acknowledged just before
``kill()`` may never reach the sink.  Tests asserting on delivery across a crash
should ``wait_for_count`` before killing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

from otlp_receiver import (
    LOOPBACK,
    LoopbackServer,
    OtlpReceiver,
    ReceivedLog,
    end_process,
    free_port,
)


def rotel_binary() -> Path:
    """Path of the agent binary shipped inside the ``rotel`` wheel (``rotel/rotel-agent``)."""
    import rotel

    binary = Path(rotel.__file__).parent / "rotel-agent"
    if not os.access(binary, os.X_OK):
        raise FileNotFoundError(f"rotel agent binary missing or not executable: {binary}")
    return binary


class Collector(LoopbackServer):
    """rotel on free 127.0.0.1 ports, backed by an :class:`OtlpReceiver` sink for read-back.

    Contracts:

    * ``start()`` returns only once rotel's gRPC and HTTP ports accept connections
      (bounded by ``start_timeout``); it raises, with the log path, otherwise.
    * ``kill()`` SIGKILLs rotel only (a crash): the sink and everything it already
      received stay, so read-back after a crash and restart sees the whole history.
    * ``restart()`` brings rotel back on the *same* ports.
    * ``stop()`` shuts down rotel gracefully (SIGTERM, bounded), then the sink.
    * read-back (``received_log_records``, ``wait_for_count``) is cumulative since the
      first ``start()``, in arrival order, duplicates kept.
    * all process output goes to ``<workdir>/*.log``, never to the test's stdout.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        grpc_max_recv_mib: int = 256,
        extra_args: tuple[str, ...] = (),
        start_timeout: float = 15.0,
    ) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="otlp-collector-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_file = self.workdir / "rotel.log"
        self.sink = OtlpReceiver(self.workdir / "sink", start_timeout=start_timeout)
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.grpc_max_recv_mib = grpc_max_recv_mib
        self.extra_args = extra_args
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ lifecycle

    def _command(self) -> list[str]:
        return [
            str(rotel_binary()),
            "start",
            "--otlp-grpc-endpoint", f"{LOOPBACK}:{self.grpc_port}",
            "--otlp-http-endpoint", f"{LOOPBACK}:{self.http_port}",
            "--otlp-grpc-max-recv-msg-size-mib", str(self.grpc_max_recv_mib),
            "--disable-batching",
            "--exporter", "otlp",
            "--otlp-exporter-endpoint", self.sink.grpc_endpoint,
            "--otlp-exporter-protocol", "grpc",
            "--otlp-exporter-compression", "none",
            # rotel writes a pid file even in the foreground; keep it out of the shared /tmp.
            "--pid-file", str(self.workdir / "rotel.pid"),
            "--log-file", str(self.workdir / "rotel-daemon.log"),
            *self.extra_args,
        ]  # fmt: skip

    @staticmethod
    def _environment() -> dict[str, str]:
        # rotel reads every flag from ROTEL_* variables too: don't let the caller's env leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROTEL_")}
        env["NO_COLOR"] = "1"  # plain text in the log file
        return env

    def start(self) -> None:
        """Start the sink (if needed) and rotel; return once both rotel ports accept connections."""
        if not self.sink.running:
            self.sink.start()
        if self.running:
            return
        self._spawn_and_wait(self._command(), env=self._environment())

    def stop(self) -> None:
        """Graceful: SIGTERM rotel (bounded wait, then SIGKILL), then stop the sink."""
        end_process(self._proc, signal.SIGTERM)
        self.sink.stop()

    def kill(self) -> None:
        """SIGKILL rotel only -- simulates a collector crash; the sink keeps what it has."""
        end_process(self._proc, signal.SIGKILL)

    def restart(self) -> None:
        """Bring rotel back on the same ports (graceful stop first if it is still running)."""
        end_process(self._proc, signal.SIGTERM)
        self.start()

    def __enter__(self) -> Collector:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ read-back

    def received_log_records(self) -> list[ReceivedLog]:
        """Every LogRecord the collector accepted and forwarded so far, in arrival order."""
        return self.sink.received_log_records()

    def wait_for_count(self, n: int, timeout: float = 10.0) -> list[ReceivedLog]:
        """Wait until at least ``n`` records were received; return them or raise ``TimeoutError``."""
        return self.sink.wait_for_count(n, timeout)

    def log_text(self) -> str:
        """rotel's own log (useful in assertion messages: it names dropped data)."""
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
