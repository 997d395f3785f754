"""SIGHUP reload: new library rules and CIDRs apply between batches; invalid or unsafe changes are refused."""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.support.events import exec_event, kprobe_event, sock
from tests.support.fakes import ListSource, ScriptedSink
from tetrapipe.cli.main import load_configuration
from tetrapipe.pipeline.processor import Processor
from tetrapipe.pipeline.runner import Pipeline
from tetrapipe.pipeline.stats import Stats
from tetrapipe.service.reload import Reloader

ROOT = Path(__file__).resolve().parents[2]

BASE = """
library:
  categories:
    - id: tmp-execs
      params: {dirs: [/tmp/]}
egress:
  pod_cidrs: [10.244.0.0/16]
  service_cidrs: [10.96.0.0/12]
"""
# /opt/ becomes a "tmp" directory; 10.8.0.0/16 becomes a named zone.
CHANGED = """
library:
  categories:
    - id: tmp-execs
      params: {dirs: [/tmp/, /opt/]}
egress:
  pod_cidrs: [10.244.0.0/16]
  service_cidrs: [10.96.0.0/12]
  zones: [{name: corp-vpn, cidrs: [10.8.0.0/16], internal: true}]
"""
ADDS_CATEGORY = """
library:
  categories:
    - id: tmp-execs
      params: {dirs: [/tmp/]}
    - id: crypto-miner
      group: security
      title: Miner
      description: Miner execution.
      match: {event: process_exec, field: process.binary, basename_in: [xmrig]}
"""
DISABLES = BASE.replace("library:", "library:\n  disable: [tmp-execs]")


def args_for(path: Path, **extra: object) -> argparse.Namespace:
    return argparse.Namespace(config=str(path), pod_cidr=None, service_cidr=None, **extra)


def probe_events() -> list[bytes]:
    return [orjson.dumps(exec_event("/opt/x")), orjson.dumps(kprobe_event("tcp_connect", [sock("10.8.1.1")]))]


def outcome(sink: ScriptedSink) -> list[tuple[tuple[str, ...], str | None]]:
    return [(e.tags.categories, e.decoded.egress.zone if e.decoded.egress else None)  # type: ignore[union-attr]
            for e in sink.delivered]


def reloader_for(path: Path, processor: Processor | None = None, **kw: object) -> tuple[Reloader, list[str]]:
    args = args_for(path)
    loaded = load_configuration(args)
    said: list[str] = []
    processor = processor or Processor(loaded.tagger, loaded.classifier)
    return Reloader(lambda: load_configuration(args), loaded, processor, log=lambda _, m: said.append(m), **kw), said  # type: ignore[arg-type]


async def test_a_reload_applies_to_the_batches_after_it(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(BASE)
    loaded = load_configuration(args_for(cfg))
    processor = Processor(loaded.tagger, loaded.classifier)
    stats = Stats()
    reloader = Reloader(lambda: load_configuration(args_for(cfg)), loaded, processor, stats=stats,
                        log=lambda level, m: None)
    source = ListSource(probe_events() * 2, batch_size=2)
    gates = [asyncio.Event(), asyncio.Event()]
    original = source.batches

    async def gated():  # the second batch waits until the reload is done
        n = 0
        async for batch in original():
            await gates[n].wait()
            n += 1
            yield batch

    source.batches = gated  # type: ignore[method-assign]
    sink = ScriptedSink()
    pipeline = Pipeline(source, processor, [sink], stats=stats, log=io.StringIO())
    run = asyncio.create_task(pipeline.run())
    gates[0].set()
    for _ in range(200):
        await asyncio.sleep(0.005)
        if len(sink.delivered) == 2:
            break
    cfg.write_text(CHANGED)
    reloader.request()
    await reloader.wait()
    gates[1].set()
    await asyncio.wait_for(run, 10)
    assert outcome(sink) == [((), None), (("egress",), "private"), (("tmp-execs",), None), ((), "corp-vpn")]
    assert stats.reloads == {"ok": 1}


async def test_an_invalid_config_is_rejected_and_the_old_one_stays(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(BASE)
    reloader, said = reloader_for(cfg)
    before = reloader.processor.tagger
    for broken, expected in [("library: {categoriez: []}\n", "categoriez"),
                             ("egress: {pod_cidrs: [10.300.0.0/16]}\n", "10.300.0.0/16"),
                             ("library: [\n", "c.yaml")]:
        cfg.write_text(broken)
        assert await reloader.reload() is False
        assert reloader.processor.tagger is before
        assert "reload rejected, the running configuration stays" in said[-1] and expected in said[-1], said[-1]
    assert reloader.stats.reloads == {"failed": 3}
    cfg.unlink()
    assert await reloader.reload() is False and "c.yaml" in said[-1]


async def test_category_changes_are_refused_while_an_output_routes_by_category(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(BASE)
    reloader, said = reloader_for(cfg, category_bound_outputs=["kafka"])
    cfg.write_text(ADDS_CATEGORY)
    assert await reloader.reload() is False
    assert "crypto-miner" in said[-1] and "kafka" in said[-1] and "restart" in said[-1]
    cfg.write_text(CHANGED)  # rules and zones of existing categories may change
    assert await reloader.reload() is True


async def test_without_such_outputs_categories_may_be_added_but_not_what_only_selects(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(BASE)
    reloader, said = reloader_for(cfg, only=["tmp-execs"])
    cfg.write_text(ADDS_CATEGORY)
    assert await reloader.reload() is True
    assert "crypto-miner" in reloader.processor.tagger.ids
    cfg.write_text(DISABLES)
    assert await reloader.reload() is False and "--only selects tmp-execs" in said[-1]


async def test_a_sighup_storm_reloads_serially_and_ends_current(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(BASE)
    reloader, _ = reloader_for(cfg)
    for _ in range(5):
        reloader.request()
    cfg.write_text(CHANGED)
    reloader.request()
    await reloader.wait()
    assert reloader.stats.reloads["ok"] <= 3  # coalesced: the running one plus one more
    assert "corp-vpn" in {z.name for z in reloader.current.config.egress.zones}


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
def test_sighup_to_a_running_tetrapipe(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(BASE)
    proc = subprocess.Popen([sys.executable, "-m", "tetrapipe.cli.main", "run", "--config", str(cfg)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdin and proc.stdout and proc.stderr
    try:
        proc.stdin.write(probe_events()[0] + b"\n")
        proc.stdin.flush()
        assert orjson.loads(proc.stdout.readline())["tetrapipe"]["categories"] == []
        cfg.write_text("library: {categoriez: []}\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.5)  # let the rejected reload read the file before it changes again
        cfg.write_text(CHANGED)
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        proc.stdin.write(probe_events()[0] + b"\n")
        proc.stdin.close()
        after = orjson.loads(proc.stdout.readline())
        assert proc.wait(20) == 0
        err = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert after["tetrapipe"]["categories"] == ["tmp-execs"], err
    assert "reload rejected" in err and "categoriez" in err and "reloaded configuration" in err
