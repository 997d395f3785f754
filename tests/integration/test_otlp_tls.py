"""TLS and mTLS to a real OTLP receiver (the scripted one: rotel's receiver has no TLS server options).

Certificates are made per test with openssl: a CA, a server certificate for 127.0.0.1, a client
certificate.  Every protocol exports over TLS verified against `ca_file`; the client certificate is
presented when configured (and the server refuses the export without it); the `OTEL_EXPORTER_OTLP_*`
variables configure the same; a server the CA does not vouch for is a clear, retryable sink error
(a certificate can be fixed on the collector side without restarting tetrapipe), never a silent drop.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
from otlp_receiver import OtlpReceiver

from pipeline.envelope import Batch, Envelope
from pipeline.process import Processor
from sinks.base import SinkError
from sinks.otlp_config import OtlpSinkConfig, OtlpTlsConfig, build_sink
from tests.support import synth

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
    return d


def receiver(tmp_path: Path, pki: Path, mtls: bool) -> OtlpReceiver:
    tls = tmp_path / ("tls-mtls" if mtls else "tls")
    tls.mkdir()
    (tls / "server.crt").write_bytes((pki / "server.crt").read_bytes())
    (tls / "server.key").write_bytes((pki / "server.key").read_bytes())
    if mtls:
        (tls / "client-ca.crt").write_bytes((pki / "ca.crt").read_bytes())
    r = OtlpReceiver(tmp_path / ("recv-mtls" if mtls else "recv"), tls_dir=tls)
    r.start()
    return r


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
    r = receiver(tmp_path, pki, mtls=False)
    try:
        envs = events(processor, 300)
        await export(OtlpSinkConfig(endpoint=endpoint(r, protocol), protocol=protocol,  # type: ignore[arg-type]
                                    tls=OtlpTlsConfig(ca_file=str(pki / "ca.crt"))), envs)
        got = await asyncio.to_thread(r.wait_for_count, 300, 30)
        assert sorted(x.body for x in got) == sorted(e.out.decode() for e in envs)
    finally:
        r.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_mtls_needs_the_client_certificate(tmp_path: Path, pki: Path, processor: Processor,
                                                 protocol: str) -> None:
    r = receiver(tmp_path, pki, mtls=True)
    try:
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
        assert len(r.received_log_records()) == 50  # nothing more arrived without a client certificate
    finally:
        r.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_server_the_ca_does_not_vouch_for_is_a_clear_error(tmp_path: Path, pki: Path,
                                                                   processor: Processor, protocol: str) -> None:
    r = receiver(tmp_path, pki, mtls=False)
    try:
        with pytest.raises(SinkError) as failure:
            await export(OtlpSinkConfig(endpoint=endpoint(r, protocol), protocol=protocol, timeout=3,  # type: ignore[arg-type]
                                        tls=OtlpTlsConfig(ca_file=str(pki / "other-ca.crt"))), events(processor, 5))
        text = str(failure.value).lower()
        assert "certificate_verify_failed" in text and failure.value.retryable, text
        assert r.received_log_records() == []
    finally:
        r.stop()


async def test_tls_files_from_the_otel_environment_variables(tmp_path: Path, pki: Path, processor: Processor) -> None:
    r = receiver(tmp_path, pki, mtls=True)
    try:
        env = {"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": r.http_endpoint + "/v1/logs",
               "OTEL_EXPORTER_OTLP_CERTIFICATE": str(pki / "ca.crt"),
               "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": str(pki / "client.crt"),
               "OTEL_EXPORTER_OTLP_CLIENT_KEY": str(pki / "client.key")}
        await export(OtlpSinkConfig(protocol="http/protobuf"), events(processor, 20), environ=env)
        assert len(await asyncio.to_thread(r.wait_for_count, 20, 30)) == 20
    finally:
        r.stop()
