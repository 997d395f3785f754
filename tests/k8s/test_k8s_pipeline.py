"""Issue 14 end to end: the real pipeline (config file -> Peers -> Processor -> Pipeline) against a real API server."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from tests.k8s.apiserver import KubeServer
from tests.k8s.conftest import Api, next_ip
from tests.k8s.objects import pod, pod_status, tetragon_connect
from tests.support.fakes import ScriptedSink
from tetrapipe.cli.main import build_parser, build_peers, load_configuration
from tetrapipe.event.decode import LineDecoder
from tetrapipe.pipeline.processor import Processor
from tetrapipe.pipeline.runner import Pipeline
from tetrapipe.sources import FileSource

pytestmark = pytest.mark.integration


async def test_pipeline_names_the_pod_and_its_workload(kube: KubeServer, tmp_path: Path) -> None:
    api = Api(kube)
    ns = await api.namespace("e2e")
    ip = next_ip()
    await api.create(pod("db-0", ns, owner=("StatefulSet", "db"), labels={"app": "db"}))
    await api.patch("Pod", "db-0", ns, {"status": pod_status(ip)}, status=True)

    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    events = tmp_path / "events.jsonl"
    events.write_bytes(orjson.dumps(tetragon_connect("shop", "web-1", saddr=next_ip(), daddr=ip, dport=5432,
                                                     time=now)) + b"\n")
    config = tmp_path / "tetrapipe.yaml"
    config.write_text(f"peers:\n  learn: false\n  kubernetes:\n    enabled: true\n"
                      f"    kubeconfig: {kube.kubeconfig()}\n")
    args = build_parser().parse_args(["run", "--config", str(config), "--input", str(events)])
    loaded = load_configuration(args)
    peers = build_peers(args, loaded.config.peers)
    assert peers is not None and peers.watch is not None
    sink = ScriptedSink()
    pipeline = Pipeline(FileSource(str(events)), Processor(loaded.tagger, loaded.classifier, LineDecoder(),
                                                           peers=peers.resolver),
                        [sink], readiness=[peers.not_ready])
    assert any(r.startswith("peers:") for r in pipeline.health()[2])  # not ready: not listed yet
    await peers.start()
    try:
        assert await peers.watch.wait_ready(30.0), peers.watch.stats()
        assert peers.not_ready() is None
        assert await pipeline.run() == 0
    finally:
        await peers.stop()
    [env] = sink.delivered
    peer = orjson.loads(env.out)["tetrapipe"]["peer"]
    assert peer["kind"] == "pod" and peer["namespace"] == ns and peer["name"] == "db-0"
    assert peer["workload"] == "db" and peer["workload_kind"] == "StatefulSet" and peer["via"] == "api"
    assert peer["ip"] == ip
