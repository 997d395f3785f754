"""Issue 14 wiring: the peer resolver in the processor (tetrapipe.peer / tetrapipe.source), the `peers:` config
section and flags, /readyz, metrics and SIGHUP reload of the static file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from prometheus_client import generate_latest

from tests.k8s.objects import tetragon_connect
from tests.support import synth
from tetrapipe.cli.main import Peers, build_parser, build_peers
from tetrapipe.config.root import Config, ConfigFileError, PeersConfig, build_peer_config, load_config
from tetrapipe.event.decode import LineDecoder
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.pipeline import processor as processor_module
from tetrapipe.pipeline.processor import Processor
from tetrapipe.pipeline.runner import Pipeline
from tetrapipe.service.metrics import registry_for
from tetrapipe.service.reload import Loaded, Reloader
from tetrapipe.transforms.classify import Classifier
from tetrapipe.transforms.peers import PeerConfig, PeerResolver

STATIC = "peers:\n  - {cidr: 10.40.0.0/16, name: corp-db, kind: database, namespace: infra}\n"


def run(processor: Processor, events: list[dict] | list[bytes]) -> list[Envelope]:  # type: ignore[type-arg]
    lines = [e if isinstance(e, bytes) else orjson.dumps(e) for e in events]
    batch = Batch([Envelope(line, i + 1) for i, line in enumerate(lines)])
    processor.process(batch)
    return batch.envelopes


def tp(env: Envelope) -> dict:  # type: ignore[type-arg]
    return orjson.loads(env.out)["tetrapipe"]  # type: ignore[no-any-return]


@pytest.fixture
def static_file(tmp_path: Path) -> Path:
    path = tmp_path / "peers.yaml"
    path.write_text(STATIC)
    return path


def with_peers(processor: Processor, **cfg: object) -> Processor:
    return Processor(processor.tagger, processor.classifier, LineDecoder(),
                     peers=PeerResolver(PeerConfig(kubernetes=False, **cfg)))  # type: ignore[arg-type]


def test_static_and_learned_peers_in_the_output_after_egress(processor: Processor, static_file: Path) -> None:
    proc = with_peers(processor, static_file=str(static_file))
    envs = run(proc, [
        tetragon_connect("shop", "web-1", saddr="10.244.1.5", daddr="10.40.3.3", dport=5432, workload="web"),
        tetragon_connect("shop", "api-2", saddr="10.244.1.9", daddr="10.244.1.5", dport=80, workload="api"),
    ])
    db, web = tp(envs[0]), tp(envs[1])
    assert list(db)[-2:] == ["egress", "peer"]
    assert db["peer"] == {"kind": "database", "namespace": "infra", "name": "corp-db", "cidr": "10.40.0.0/16",
                          "ip": "10.40.3.3", "via": "static"}
    # learned from the first event's source address: 10.244.1.5 is shop/web-1
    assert web["peer"]["kind"] == "pod" and web["peer"]["namespace"] == "shop" and web["peer"]["name"] == "web-1"
    assert web["peer"]["workload"] == "web" and web["peer"]["via"] == "learned"
    assert "source" not in web  # the source is the event's own pod


def test_source_shown_when_it_is_not_the_events_own_pod(processor: Processor) -> None:
    proc = with_peers(processor)
    run(proc, [tetragon_connect("shop", "web-1", saddr="10.244.1.5", daddr="1.1.1.1")])
    # the same address as the source of an event from the host (no pod): the source is web-1
    out = tp(run(proc, [tetragon_connect(None, None, saddr="10.244.1.5", daddr="1.1.1.1")])[0])
    assert list(out)[-1] == "source" and out["source"]["name"] == "web-1"


def test_unknown_peer_has_no_key_and_is_counted(processor: Processor, static_file: Path) -> None:
    proc = with_peers(processor, static_file=str(static_file), learn=False)
    env = run(proc, [tetragon_connect("shop", "web-1", saddr="10.244.1.5", daddr="203.0.113.9")])[0]
    assert "peer" not in tp(env) and "source" not in tp(env)
    assert proc.peers is not None and proc.peers.stats()["unknown"] == 1
    assert proc.peers.stats()["resolved"] == 1


def test_unknown_peers_leave_the_output_byte_identical(processor: Processor, tmp_path: Path) -> None:
    lines = list(synth.generate(2000, seed=7))
    (tmp_path / "none.yaml").write_text("peers: []\n")
    plain = Processor(processor.tagger, processor.classifier, LineDecoder())
    unknown = with_peers(processor, learn=False, static_file=str(tmp_path / "none.yaml"))
    assert [e.out for e in run(plain, lines)] == [e.out for e in run(unknown, lines)]
    assert unknown.peers is not None and unknown.peers.stats()["resolved"] > 100


def test_no_resolver_configured_means_no_per_event_call(processor: Processor, monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_peer_config(PeersConfig(learn=False)) is None
    assert build_peers(build_parser().parse_args(["run", "--no-peers-learn"]), PeersConfig()) is None
    proc = Processor(processor.tagger, processor.classifier, LineDecoder())

    def boom(*_: object) -> None:
        raise AssertionError("resolver called")

    monkeypatch.setattr(processor_module, "resolve_decoded", boom)
    monkeypatch.setattr(Classifier, "classify_connection", boom)  # the one pass that also reads the source
    env = run(proc, [tetragon_connect("shop", "web-1", saddr="10.244.1.5", daddr="10.40.3.3")])[0]
    assert env.error is None and "peer" not in tp(env)


def test_config_section_flags_and_node_name(tmp_path: Path, static_file: Path) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"peers:\n  learn_idle: 30\n  static_file: {static_file}\n  labels: [app]\n"
                        "  kubernetes: {enabled: true, require_sync: false}\n")
    section = load_config(cfg_file).peers
    cfg = build_peer_config(section, environ={"NODE_NAME": "node-7"})
    assert cfg is not None and cfg.kubernetes and cfg.node_name == "node-7" and not cfg.require_sync
    assert cfg.learn_idle == 30 and cfg.labels == ("app",) and cfg.static_file == str(static_file)
    assert build_peer_config(section, kubernetes=False, learn=False, environ={}) is not None  # the static file
    assert Config().peers.learn is None and not Config().peers.kubernetes.enabled  # defaults: learning only
    default = build_peer_config(Config().peers, environ={})
    assert default is not None and default.learn and not default.kubernetes and default.static_file is None
    assert build_peer_config(Config().peers, learn=False, environ={}) is None  # off: no resolver, no per-event cost
    learning = build_peers(build_parser().parse_args(["run"]), PeersConfig())
    assert learning is not None and learning.resolver.config.learn and learning.watch is None
    assert build_peers(build_parser().parse_args(["run", "--no-peers-learn"]), PeersConfig()) is None
    cfg_file.write_text("peers:\n  learn: false\n")
    assert build_peers(build_parser().parse_args(["run"]), load_config(cfg_file).peers) is None
    assert build_peers(build_parser().parse_args(["run", "--peers-learn"]), load_config(cfg_file).peers) is not None
    # several worker processes share no learned addresses: off unless asked for
    assert build_peers(build_parser().parse_args(["run", "--workers", "2"]), PeersConfig()) is None
    explicit = build_peers(build_parser().parse_args(["run", "--workers", "2", "--peers-learn"]), PeersConfig())
    assert explicit is not None and explicit.resolver.config.learn
    args = build_parser().parse_args(["run", "--peers-kubernetes"])
    peers = build_peers(args, PeersConfig())
    assert peers is not None and peers.watch is not None and peers.not_ready() is not None
    cfg_file.write_text("peers:\n  kubernetes: {enabld: true}\n")
    with pytest.raises(ConfigFileError, match="enabld"):
        load_config(cfg_file)
    cfg_file.write_text("peers:\n  static_file: /nonexistent/peers.yaml\n")
    with pytest.raises(ConfigFileError, match="static_file"):
        build_peers(build_parser().parse_args(["run"]), load_config(cfg_file).peers)


class _NotReadyWatch:
    ready = False
    reflectors: dict[str, object] = {}


async def test_readiness_and_metrics(processor: Processor) -> None:
    proc = with_peers(processor)
    run(proc, [tetragon_connect("shop", "web-1", saddr="10.244.1.5", daddr="203.0.113.1"),  # unknown; learns
               tetragon_connect("shop", "api-1", saddr="10.244.1.6", daddr="10.244.1.5")])  # resolved
    peers = Peers(proc.peers, _NotReadyWatch())  # type: ignore[arg-type]
    from tetrapipe.sources import FileSource

    pipeline = Pipeline(FileSource("/dev/null"), proc, [], readiness=[peers.not_ready])
    pipeline._running = True
    live, ready, reasons = pipeline.health()
    assert not ready and any("peers" in r for r in reasons)
    text = generate_latest(registry_for(pipeline, "test")).decode()
    assert 'tetrapipe_peer_lookups_total{result="unknown"} 1.0' in text
    assert 'tetrapipe_peer_lookups_total{result="resolved"} 1.0' in text
    assert 'tetrapipe_peer_index_entries{kind="learned"} 2.0' in text
    peers.watch.ready = True  # type: ignore[union-attr]
    assert pipeline.health()[1]


async def test_sighup_reloads_the_static_file(processor: Processor, static_file: Path) -> None:
    proc = with_peers(processor, static_file=str(static_file), learn=False)
    loaded = Loaded(Config(), processor.tagger, processor.classifier)
    messages: list[tuple[str, str]] = []
    reloader = Reloader(lambda: loaded, loaded, proc, peers=proc.peers, log=lambda lv, m: messages.append((lv, m)))
    event = tetragon_connect("shop", "web-1", saddr="10.244.1.5", daddr="192.0.2.10")
    assert "peer" not in tp(run(proc, [event])[0])
    static_file.write_text(STATIC + "  - {cidr: 192.0.2.0/24, name: partner, kind: external}\n")
    assert await reloader.reload()
    assert tp(run(proc, [event])[0])["peer"]["name"] == "partner"
    static_file.write_text("peers:\n  - {cidr: nonsense}\n")
    await reloader.reload()
    assert messages[-1][0] == "error" and tp(run(proc, [event])[0])["peer"]["name"] == "partner"
    await asyncio.sleep(0)


async def test_sighup_reloads_the_snapshot(processor: Processor, tmp_path: Path) -> None:
    from tests.k8s.objects import pod

    def write(*items: dict) -> None:  # type: ignore[type-arg]
        path.write_bytes(orjson.dumps({"kind": "List", "items": list(items)}))

    path = tmp_path / "snapshot.json"
    db = pod("db-0", "shop", owner=("StatefulSet", "db"), uid="u-db", created="2024-05-14T08:00:00Z", ip="10.244.9.9")
    write(db)
    proc = with_peers(processor, snapshot=str(path), learn=False)
    loaded = Loaded(Config(), processor.tagger, processor.classifier)
    messages: list[tuple[str, str]] = []
    reloader = Reloader(lambda: loaded, loaded, proc, peers=proc.peers, log=lambda lv, m: messages.append((lv, m)))
    event = tetragon_connect("shop", "web-1", saddr="10.244.1.5", daddr="10.244.9.9", dport=5432)
    peer = tp(run(proc, [event])[0])["peer"]
    assert (peer["name"], peer["workload"], peer["workload_kind"], peer["via"]) == ("db-0", "db", "StatefulSet", "api")
    write(db, {"kind": "Pod", "metadata": {}})
    await reloader.reload()
    assert messages[-1][0] == "error" and "peers.snapshot: items[1]: Pod: metadata.name missing" in messages[-1][1]
    assert tp(run(proc, [event])[0])["peer"]["name"] == "db-0"
    write(pod("db-1", "shop", owner=("StatefulSet", "db"), uid="u-db1", created="2024-05-14T08:00:00Z",
              ip="10.244.9.9"))
    assert await reloader.reload()
    assert messages[-1] == ("info", "reloaded peers snapshot: 1 objects")
    assert tp(run(proc, [event])[0])["peer"]["name"] == "db-1"


def test_snapshot_and_the_kubernetes_watch_exclude_each_other() -> None:
    """They would share one index: a relist drops the snapshot's objects, a snapshot reload the API's."""
    with pytest.raises(ConfigFileError, match="exclude each other"):
        build_peer_config(PeersConfig(snapshot="cluster.json"), kubernetes=True)
    assert build_peer_config(PeersConfig(snapshot="cluster.json"), kubernetes=False) is not None
