"""ConnectivityProbe: connected follows the last bounded check; changes are logged once."""

from __future__ import annotations

import asyncio
import io

from tetrapipe.clients.connectivity import ConnectivityProbe


async def test_connected_follows_the_last_check_and_each_change_is_logged_once() -> None:
    answers: list[object] = [None, OSError("refused"), OSError("refused"), None]

    async def check() -> None:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer

    log = io.StringIO()
    probe = ConnectivityProbe("kafka b:9092", check, log=log)
    assert await probe.check_once() and probe.connected
    assert not await probe.check_once() and not probe.connected
    assert not await probe.check_once()
    assert await probe.check_once() and probe.connected
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "not reachable (OSError: refused)" in lines[0] and "reachable again" in lines[1]
    assert probe.failures == 2


async def test_a_check_that_hangs_counts_as_unreachable_after_the_timeout() -> None:
    async def hang() -> None:
        await asyncio.Event().wait()

    probe = ConnectivityProbe("collector", hang, timeout=0.05, log=io.StringIO())
    assert not await probe.check_once() and not probe.connected


async def test_the_background_task_checks_every_interval_and_stops() -> None:
    calls = 0

    async def check() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    probe = ConnectivityProbe("x", check, interval=0.01, log=io.StringIO())
    probe.start()
    for _ in range(200):
        await asyncio.sleep(0.01)
        if calls >= 3:
            break
    await probe.stop()
    seen = calls
    await asyncio.sleep(0.05)
    assert seen >= 3 and calls == seen and not probe.connected
