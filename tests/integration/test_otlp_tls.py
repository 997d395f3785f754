"""TLS and mTLS to a real OTLP receiver (the scripted one: rotel's receiver has no TLS server options).

Certificates are made per test with openssl: a CA, a server certificate for 127.0.0.1, a client
certificate (and a second CA with its own client certificate).  Every protocol exports over TLS
verified against `ca_file`; the client certificate is presented when configured, and the server
refuses the export without it or with one from another CA; the `OTEL_EXPORTER_OTLP_*` variables
configure the same.  A server the client cannot verify (wrong CA, no CA file, wrong name) is a
configuration error like HTTP 401: a fatal sink error that stops the run with the reason, never a
silent drop nor endless retries.  Refused client certificates stay retryable (the client sees only a
TLS alert or a reset, like an outage): reported, retried, nothing delivered meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from otlp_receiver import OtlpReceiver
from test_otlp_delivery import RecordingSource

from tests.support import synth
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.pipeline.processor import Processor
from tetrapipe.pipeline.runner import EXIT_FAILED, Pipeline, RetryPolicy
from tetrapipe.sinks.base import SinkError
from tetrapipe.sinks.otlp.config import OtlpSinkConfig, OtlpTlsConfig, build_sink

pytestmark = pytest.mark.integration
PROTOCOLS = ["grpc", "http/protobuf", "http/json"]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=d)


def issue(d: Path, ca: str, name: str, san: str | None = None) -> None:
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", cwd=d)
    ext = d / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-extfile", ext.name, "-out", f"{name}.crt", cwd=d)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    d = tmp_path / "pki"
    d.mkdir()
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    issue(d, "ca", "server", san="IP:127.0.0.1,DNS:localhost")
    issue(d, "ca", "client")
    issue(d, "ca", "wrong-name", san="DNS:elsewhere.example")
    issue(d, "other-ca", "stranger")
    return d


@contextlib.contextmanager
def receiver(tmp_path: Path, pki: Path, mtls: bool, server: str = "server") -> Iterator[OtlpReceiver]:
    """A started TLS receiver (client certificates required with `mtls`), stopped on leaving."""
    tls = tmp_path / ("tls-mtls" if mtls else "tls")
    tls.mkdir()
    (tls / "server.crt").write_bytes((pki / f"{server}.crt").read_bytes())
    (tls / "server.key").write_bytes((pki / f"{server}.key").read_bytes())
    if mtls:
        (tls / "client-ca.crt").write_bytes((pki / "ca.crt").read_bytes())
    r = OtlpReceiver(tmp_path / ("recv-mtls" if mtls else "recv"), tls_dir=tls)
    r.start()
    try:
        yield r
    finally:
        r.stop()


def events(processor: Processor, n: int) -> list[Envelope]:
    batch = Batch([Envelope(line, i) for i, line in enumerate(synth.generate(n, seed=41))])
    processor.process(batch)
    return batch.good


def endpoint(r: OtlpReceiver, protocol: str) -> str:
    return r.grpc_endpoint if protocol == "grpc" else r.http_endpoint


async def export(cfg: OtlpSinkConfig, envs: list[Envelope], timeout: float = 30,
                 environ: dict[str, str] | None = None) -> None:
    sink = build_sink(cfg, environ=environ if environ is not None else {})
    await sink.start()
    try:
        await asyncio.wait_for(sink.write(envs), timeout)
    finally:
        await sink.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_tls_verified_with_the_ca_file(tmp_path: Path, pki: Path, processor: Processor, protocol: str) -> None:
    with receiver(tmp_path, pki, mtls=False) as r:
        envs = events(processor, 300)
        await export(OtlpSinkConfig(endpoint=endpoint(r, protocol), protocol=protocol,  # type: ignore[arg-type]
                                    tls=OtlpTlsConfig(ca_file=str(pki / "ca.crt"))), envs)
        got = await asyncio.to_thread(r.wait_for_count, 300, 30)
        assert sorted(x.body for x in got) == sorted(e.out.decode() for e in envs)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_mtls_needs_the_client_certificate(tmp_path: Path, pki: Path, processor: Processor,
                                                 protocol: str) -> None:
    with receiver(tmp_path, pki, mtls=True) as r:
        envs = events(processor, 50)
        with_cert = OtlpTlsConfig(ca_file=str(pki / "ca.crt"), cert_file=str(pki / "client.crt"),
                                  key_file=str(pki / "client.key"))
        await export(OtlpSinkConfig(endpoint=endpoint(r, protocol), protocol=protocol,  # type: ignore[arg-type]
                                    tls=with_cert), envs)
        assert len(await asyncio.to_thread(r.wait_for_count, 50, 30)) == 50
        with pytest.raises(SinkError) as refused:
            await export(OtlpSinkConfig(endpoint=endpoint(r, protocol), protocol=protocol, timeout=3,  # type: ignore[arg-type]
                                        tls=OtlpTlsConfig(ca_file=str(pki / "ca.crt"))), envs)
        assert refused.value.retryable  # reported and retried by the runner, never dropped
        stranger = OtlpTlsConfig(ca_file=str(pki / "ca.crt"), cert_file=str(pki / "stranger.crt"),
                                 key_file=str(pki / "stranger.key"))
        with pytest.raises(SinkError) as refused:
            await export(OtlpSinkConfig(endpoint=endpoint(r, protocol), protocol=protocol, timeout=3,  # type: ignore[arg-type]
                                        tls=stranger), envs)
        assert refused.value.retryable
        assert len(r.received_log_records()) == 50  # nothing more arrived without an acceptable certificate


@pytest.mark.parametrize("case", ["other CA", "no CA file", "wrong name"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_server_the_client_cannot_verify_is_a_fatal_error(tmp_path: Path, pki: Path, processor: Processor,
                                                                  protocol: str, case: str) -> None:
    ca_file = {"other CA": str(pki / "other-ca.crt"), "no CA file": None, "wrong name": str(pki / "ca.crt")}[case]
    with receiver(tmp_path, pki, mtls=False, server="wrong-name" if case == "wrong name" else "server") as r:
        with pytest.raises(SinkError) as failure:
            await export(OtlpSinkConfig(endpoint=endpoint(r, protocol), protocol=protocol, timeout=3,  # type: ignore[arg-type]
                                        tls=OtlpTlsConfig(ca_file=ca_file)), events(processor, 5))
        assert not failure.value.retryable, failure.value  # a configuration error, like HTTP 401
        text = str(failure.value)
        assert "certificate is not trusted" in text, text
        # grpcio >= 1.6x says "Hostname Verification Check failed", 1.63 "Peer name X is not in peer certificate"
        assert ("Hostname Verification" in text or "mismatch" in text or "not in peer certificate" in text) \
            if case == "wrong name" \
            else "CERTIFICATE_VERIFY_FAILED" in text, text
        assert r.requests() == []


@pytest.mark.expect_errors
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_run_stops_on_an_unverifiable_server_instead_of_retrying(tmp_path: Path, pki: Path,
                                                                           processor: Processor, protocol: str) -> None:
    with receiver(tmp_path, pki, mtls=False) as r:
        source = RecordingSource(list(synth.generate(200, seed=43)), batch_size=100)
        sink = build_sink(OtlpSinkConfig(endpoint=endpoint(r, protocol), protocol=protocol, timeout=3,  # type: ignore[arg-type]
                                         tls=OtlpTlsConfig(ca_file=str(pki / "other-ca.crt"))), environ={})
        pipeline = Pipeline(source, processor, [sink], retry=RetryPolicy(initial=0.01, maximum=0.05))
        assert await asyncio.wait_for(pipeline.run(), 30) == EXIT_FAILED
        assert source.commits == [] and r.requests() == []  # nothing acknowledged, nothing committed


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_tls_files_from_the_otel_environment_variables(tmp_path: Path, pki: Path, processor: Processor,
                                                             protocol: str) -> None:
    with receiver(tmp_path, pki, mtls=True) as r:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint(r, protocol), "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
               "OTEL_EXPORTER_OTLP_CERTIFICATE": str(pki / "ca.crt"),
               "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE": str(pki / "client.crt"),
               "OTEL_EXPORTER_OTLP_CLIENT_KEY": str(pki / "client.key")}
        await export(OtlpSinkConfig(), events(processor, 20), environ=env)
        assert len(await asyncio.to_thread(r.wait_for_count, 20, 30)) == 20
