"""The setup hint: after N events with none of a type some categories need, one INFO line naming the setting."""

from __future__ import annotations

import io

import orjson

from tests.support.events import exec_event, kprobe_event, process, sock
from tests.support.fakes import ListSource, ScriptedSink
from tetrapipe.pipeline.hints import SetupHints, missing_types
from tetrapipe.pipeline.runner import EXIT_OK, Pipeline, RetryPolicy
from tetrapipe.pipeline.stats import Stats
from tetrapipe.rules.library import load_library


def stream(n: int, *, loader: bool = False) -> list[bytes]:
    out = [orjson.dumps(exec_event("/bin/ls", str(i)) if i % 2 else kprobe_event("tcp_connect", [sock("8.8.8.8")]))
           for i in range(n)]
    if loader:
        out.append(orjson.dumps({"process_loader": {"process": process(), "path": "/usr/lib/libssl.so.3"},
                                 "node_name": "n", "time": "2024-01-01T00:00:00Z"}))
    return out


async def run(processor, lines: list[bytes], after: int) -> str:
    log = io.StringIO()
    pipeline = Pipeline(ListSource(lines, batch_size=7), processor, [ScriptedSink()], log=log,
                        retry=RetryPolicy(initial=0.001, maximum=0.01), hint_after_events=after)
    assert await pipeline.run() == EXIT_OK
    return log.getvalue()


async def test_no_loader_event_after_the_threshold_names_the_allow_list_once(processor):
    text = await run(processor, stream(60), after=20)
    hints = [line for line in text.splitlines() if "no process_loader event" in line]
    assert len(hints) == 1, text  # once per run, although every later batch is past the threshold too
    assert "tetragon.exportAllowList" in hints[0] and "PROCESS_LOADER" in hints[0] and "library" in hints[0]
    assert "process_kprobe" not in hints[0] and "process_exec" not in hints[0]  # those came


async def test_no_hint_before_the_threshold_when_the_type_came_or_when_off(processor):
    assert "no process_loader" not in await run(processor, stream(60), after=1000)
    assert "no process_loader" not in await run(processor, stream(60, loader=True), after=61)
    assert "no process_loader" not in await run(processor, stream(60), after=0)


def test_a_missing_type_in_the_default_allow_list_points_at_the_policy_instead():
    stats = Stats()
    stats.events = 10
    stats.event_types.update({"process_exec": 10})
    hints = SetupHints(load_library, after_events=5, log=(log := io.StringIO()))
    hints.check(stats)
    line = log.getvalue()
    assert "no process_kprobe event" in line and "TracingPolicy producing it applied" in line, line
    assert set(missing_types(stats, load_library())) == {"process_kprobe", "process_loader"}


def test_the_run_command_takes_the_threshold_from_the_config_file(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    config = tmp_path / "c.yaml"
    config.write_text("input:\n  hint_after_events: 5\n")
    result = subprocess.run([sys.executable, "-m", "tetrapipe.cli.main", "run", "--config", str(config),
                             "--log-format", "text", "--quiet"], input=b"\n".join(stream(20)) + b"\n",
                            capture_output=True, cwd=root, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(b"no process_loader event") == 1, result.stderr
