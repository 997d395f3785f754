"""How to reach a Kafka cluster: bootstrap servers, TLS and SASL — shared by the Kafka source, sink and dead letter.

Secrets (SASL password, TLS key password) come from the config file, from
environment variables, or — preferably, in Kubernetes — from files
(`*_file` / `KAFKA_*_FILE`, e.g. a mounted Secret).  They are read only when
a client is built and never appear in a repr, a log line or an error message.

Environment variables (they override the config file; CLI flags override both):
KAFKA_BOOTSTRAP_SERVERS, KAFKA_CLIENT_ID, KAFKA_SECURITY_PROTOCOL,
KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME[_FILE], KAFKA_SASL_PASSWORD[_FILE],
KAFKA_SSL_CAFILE, KAFKA_SSL_CERTFILE, KAFKA_SSL_KEYFILE, KAFKA_SSL_KEY_PASSWORD[_FILE].
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TextIO

import msgspec

from tetrapipe.logs import emit

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

# config field → environment variable (the *_FILE variants are handled with them)
_ENV = {
    "bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS", "client_id": "KAFKA_CLIENT_ID",
    "security_protocol": "KAFKA_SECURITY_PROTOCOL", "sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "sasl_username": "KAFKA_SASL_USERNAME", "sasl_password": "KAFKA_SASL_PASSWORD",
    "ssl_cafile": "KAFKA_SSL_CAFILE", "ssl_certfile": "KAFKA_SSL_CERTFILE", "ssl_keyfile": "KAFKA_SSL_KEYFILE",
    "ssl_key_password": "KAFKA_SSL_KEY_PASSWORD",
}
_FROM_FILE = ("sasl_username", "sasl_password", "ssl_key_password")
_SECRETS = ("sasl_password", "ssl_key_password")


class KafkaConnectionError(ValueError):
    """Connection settings that cannot work (e.g. SASL without a password); names the setting."""


class KafkaUnreachable(ConnectionError):
    """No bootstrap server answered within `startup_timeout`: the cause of the source's or sink's start error
    (the run exits with the same code whether Kafka is its input or its output: tetrapipe.pipeline.runner)."""


class KafkaConnection(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Cluster address and credentials (config key `kafka.connection`)."""

    bootstrap_servers: str = "localhost:9092"  # comma-separated host:port list
    client_id: str = "tetrapipe"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None  # required with SASL_PLAINTEXT / SASL_SSL
    sasl_username: str | None = None
    sasl_username_file: str | None = None
    sasl_password: str | None = None  # prefer sasl_password_file or KAFKA_SASL_PASSWORD_FILE
    sasl_password_file: str | None = None
    ssl_cafile: str | None = None  # CA bundle to verify the brokers (default: the system's)
    ssl_certfile: str | None = None  # client certificate, for mutual TLS
    ssl_keyfile: str | None = None
    ssl_key_password: str | None = None
    ssl_key_password_file: str | None = None
    ssl_check_hostname: bool = True
    request_timeout_ms: int = 30_000
    # At startup, how long to retry a cluster that does not answer (a broker still starting) before giving up.
    startup_timeout: Annotated[float, msgspec.Meta(ge=0)] = 30.0

    def __repr__(self) -> str:
        shown = {f: getattr(self, f) for f in self.__struct_fields__ if getattr(self, f) is not None}
        for name in _SECRETS:
            if shown.get(name) is not None:
                shown[name] = "***"
        return "KafkaConnection(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    __str__ = __repr__

    def with_env(self, environ: Mapping[str, str] | None = None) -> KafkaConnection:
        """These settings with the KAFKA_* environment variables applied on top."""
        environ = os.environ if environ is None else environ
        changes: dict[str, Any] = {}
        for field, var in _ENV.items():
            # A file wins over a literal (see `_secret`), so an environment
            # value clears the config file's other form of the same setting.
            if environ.get(var):
                changes[field] = environ[var]
                if field in _FROM_FILE:
                    changes[field + "_file"] = None
            if field in _FROM_FILE and environ.get(var + "_FILE"):
                changes[field + "_file"] = environ[var + "_FILE"]
        try:
            return msgspec.convert({**msgspec.to_builtins(self), **changes}, KafkaConnection)
        except msgspec.ValidationError as exc:
            raise KafkaConnectionError(f"Kafka connection from environment: {exc}") from None

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (reads secret files now; raises KafkaConnectionError)."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers, "client_id": self.client_id,
                                   "security_protocol": self.security_protocol,
                                   "request_timeout_ms": self.request_timeout_ms}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = self._ssl_context()
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism is None:
                raise KafkaConnectionError(f"security_protocol {self.security_protocol} needs sasl_mechanism")
            username = self._secret("sasl_username")
            password = self._secret("sasl_password")
            if not username or password is None:
                raise KafkaConnectionError(f"SASL {self.sasl_mechanism} needs sasl_username and sasl_password "
                                           "(or their *_file / KAFKA_SASL_*_FILE)")
            options.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=username,
                           sasl_plain_password=password)
        return options

    def _secret(self, field: str) -> str | None:
        path = getattr(self, field + "_file")
        if path:
            try:
                return Path(path).read_text(encoding="utf-8").strip()
            except OSError as exc:  # the path is not secret; the content would be
                raise KafkaConnectionError(f"{field}_file {path}: {exc.strerror}") from None
        value: str | None = getattr(self, field)
        return value

    def _ssl_context(self) -> Any:
        from aiokafka.helpers import create_ssl_context  # local: only TLS users need it

        try:
            context = create_ssl_context(cafile=self.ssl_cafile, certfile=self.ssl_certfile,
                                         keyfile=self.ssl_keyfile, password=self._secret("ssl_key_password"))
        except OSError as exc:
            raise KafkaConnectionError(f"TLS files: {exc}") from None
        context.check_hostname = self.ssl_check_hostname
        return context


STARTUP_RETRY_MAX = 5.0  # seconds between startup attempts, at most (from 0.5 s, doubling)


async def wait_until_reachable(connection: KafkaConnection, what: str, log: TextIO | None = None) -> None:
    """Return once a bootstrap server answers a metadata request; until then retry, one WARNING per failed
    attempt, for `startup_timeout` seconds, then raise KafkaUnreachable naming the address and the settings.

    Settings that cannot work (KafkaConnectionError) are raised at once: waiting would not fix them.
    """
    from aiokafka.client import AIOKafkaClient  # local: only Kafka runs import the client
    from aiokafka.errors import KafkaError

    options = connection.client_options()
    budget = connection.startup_timeout
    deadline = time.monotonic() + budget
    delay, attempt = 0.5, 0
    while True:
        attempt += 1
        client = AIOKafkaClient(**options)
        try:
            with quiet_aiokafka():  # its own line per failed connect would double ours
                await asyncio.wait_for(client.bootstrap(), max(0.5, min(deadline - time.monotonic(),
                                                                        connection.request_timeout_ms / 1000)))
            return
        except (KafkaError, OSError, TimeoutError) as exc:
            error = _describe(exc)
        finally:
            await client.close()
        left = deadline - time.monotonic()
        if left <= 0:
            attempts = f"{attempt} attempt{'s' if attempt > 1 else ''}"
            raise KafkaUnreachable(
                f"{what}: Kafka at {connection.bootstrap_servers} did not answer in {budget:g} s ({attempts}; "
                f"last: {error}); check --kafka-bootstrap / kafka.connection.bootstrap_servers, or "
                "wait longer with --kafka-startup-timeout / kafka.connection.startup_timeout")
        wait = min(delay, left)
        emit(log, "warning", f"{what}: Kafka at {connection.bootstrap_servers} not reachable (attempt {attempt}: "
                             f"{error}); retrying in {wait:.1f} s, for {left:.0f} s more", attempt=attempt)
        await asyncio.sleep(wait)
        delay = min(delay * 2, STARTUP_RETRY_MAX)


def _describe(exc: BaseException) -> str:
    text, name = str(exc), type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name


# Error names a broker answers InitProducerId with when it will not give an idempotent producer its id:
# Tansu (UNKNOWN_SERVER_ERROR to aiokafka's v0 request), brokers too old for it, or no IDEMPOTENT_WRITE right.
_IDEMPOTENCE_REFUSALS = ("UnknownError", "UnsupportedVersionError", "ClusterAuthorizationFailedError")


def idempotence_refused(exc: BaseException, what: str) -> str | None:
    """What to say when an idempotent producer's start failed the way a broker refusing idempotence fails it."""
    if type(exc).__name__ not in _IDEMPOTENCE_REFUSALS:
        return None
    return (f"{what}: the broker refused the idempotent producer ({type(exc).__name__}: {exc}); for a broker "
            "without idempotent-producer support (Tansu, some managed services) run with --kafka-no-idempotence, "
            "or set kafka.sink.idempotence: false (and kafka.dead_letter.idempotence: false) in the config file")


@contextlib.contextmanager
def quiet_aiokafka() -> Iterator[None]:
    """aiokafka's own log lines muted: for calls whose failure tetrapipe reports itself, with the fix."""
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
