"""The wrong OTLP protocol for the port, against the real rotel collector: recognised on the first failed
request, reported naming the endpoint and the --otlp-protocol to use; a wrong URL path names the URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from collector import Collector
from otlp_fixtures import otlp_collector  # noqa: F401 (fixture)
from otlp_receiver import free_port

from tests.support import synth
from tetrapipe.pipeline.runner import EXIT_FAILED
from tetrapipe.sinks.otlp.http import speaks_only_http2

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EVENTS = b"\n".join(synth.generate(50, seed=5)) + b"\n"


def run(endpoint: str, protocol: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "tetrapipe.cli.main", "run", "--otlp-endpoint", endpoint,
                           "--otlp-protocol", protocol, "--log-format", "text", "--quiet", "--grace", "5",
                           "--pod-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12"],
                          input=EVENTS, capture_output=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("protocol", ["http/protobuf", "http/json"])
def test_http_to_the_grpc_port_says_use_grpc(otlp_collector: Collector, protocol: str) -> None:  # noqa: F811
    result = run(otlp_collector.grpc_endpoint, protocol)
    err = result.stderr.decode()
    assert result.returncode == EXIT_FAILED, err
    port = urlsplit(otlp_collector.grpc_endpoint).port
    assert f"127.0.0.1:{port} speaks HTTP/2 only" in err and "use --otlp-protocol grpc" in err, err


def test_grpc_to_the_http_port_says_use_http(otlp_collector: Collector) -> None:  # noqa: F811
    result = run(otlp_collector.http_endpoint, "grpc")
    err = result.stderr.decode()
    assert result.returncode == EXIT_FAILED, err
    assert f"{otlp_collector.http_endpoint} is an HTTP endpoint, not OTLP/gRPC" in err, err
    assert "use --otlp-protocol http/protobuf" in err


def test_a_wrong_path_names_the_url(otlp_collector: Collector) -> None:  # noqa: F811
    url = otlp_collector.http_endpoint + "/v1/log"  # a typo: a full URL with a path is taken as is
    result = run(url, "http/protobuf")
    err = result.stderr.decode()
    assert result.returncode == EXIT_FAILED, err
    assert f"HTTP 404 — nothing at {url}: OTLP/HTTP collectors take logs at /v1/logs" in err, err


async def test_the_probe_tells_grpc_from_http_ports_and_says_nothing_about_a_closed_one(
        otlp_collector: Collector) -> None:  # noqa: F811
    grpc, http = urlsplit(otlp_collector.grpc_endpoint), urlsplit(otlp_collector.http_endpoint)
    assert await speaks_only_http2("127.0.0.1", grpc.port or 0) is True
    assert await speaks_only_http2("127.0.0.1", http.port or 0) is False  # it answers HTTP/1.1
    assert await speaks_only_http2("127.0.0.1", free_port()) is None
