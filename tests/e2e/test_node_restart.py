"""A single nats-server killed (SIGKILL) and restarted while commands flow: the services,
left alone, reconnect on their own; every command acknowledged to its sender is in the
log once; each projection converges to what a replay from zero gives."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shared.embedded_nats import EmbeddedNats
from tests.e2e import load
from tests.e2e.test_cluster import free_ports

pytestmark = pytest.mark.e2e

SERVICES = ("intake", "reporting")
RATE = 20  # commands a second
DOWN_SECONDS = 2.0


async def test_services_reconnect_after_a_server_restart(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    server = EmbeddedNats(tmp_path / "nats", port=port)
    url = server.start()
    nc = await load.connect([url])
    processes = []
    restarts: list[asyncio.Task[str]] = []
    try:
        data = tmp_path / "services"
        processes = [load.serve(name, [url], data / name) for name in SERVICES]
        before = {
            name: await load.wait_for(nc, name, lambda s: s.state == "running") for name in SERVICES
        }

        async def restart() -> str:
            await asyncio.sleep(DOWN_SECONDS)
            return await asyncio.to_thread(server.start)

        def kill_and_restart() -> None:
            server.kill()
            restarts.append(asyncio.create_task(restart()))

        sender = load.Sender(nc, "R")
        await sender.run(RATE, 6, at=1.5, action=kill_and_restart)
        assert await restarts[0] == url  # the same port: the services' only address
        assert sender.retries > 0, "the restart did not interrupt anything"
        stored = await load.read_log(nc)
        load.check_log(stored, [sender], 6 * RATE)

        end = max(position for _, _, position in stored)
        for name in SERVICES:
            now = await load.wait_for(nc, name, lambda s: load.settled(s, end))
            # The same processes, never restarted: they reconnected by themselves.
            assert now.pid == before[name].pid
        for process in processes:
            assert process.poll() is None, "a service exited"

        await load.live_equals_rebuild(nc, data, tmp_path / "rebuild", end)
    finally:
        load.stop(processes)
        for task in restarts:
            await asyncio.gather(task, return_exceptions=True)
        await nc.close()
        server.stop()
