"""A single nats-server killed (SIGKILL) and restarted while commands flow: the services,
left alone, reconnect on their own; every command acknowledged to its sender is in the
log once; each projection converges to what a replay from zero gives. And what an outage
does to a service's lease."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shared.embedded_nats import EmbeddedNats
from shared.lease import Lease
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


async def test_a_lease_outlives_a_short_outage_and_not_a_long_one(tmp_path: Path) -> None:
    """A renewal that fails is retried while the lease surely is still ours (80 % of the
    TTL since the last renewal): a server back within that keeps the holder working; one
    back later has cost it the lease, which it can take again."""
    (port,) = free_ports(1)
    server = EmbeddedNats(tmp_path / "nats", port=port)
    url = server.start()
    nc = await load.connect([url])
    lease = Lease(nc.jetstream(timeout=2), "ledger", ttl=8.0)
    try:
        await lease.acquire()
        lost = asyncio.create_task(lease.wait_lost())

        server.kill()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.start)
        await asyncio.sleep(8.0)  # a whole TTL: renewals must have gone on after the restart
        assert not lost.done(), "a 1 s outage cost the lease"

        server.kill()
        await asyncio.sleep(9.0)  # longer than the TTL: the holder must stop working
        assert lost.done(), "still claiming a lease that may have expired"
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(lease.acquire(), 30)  # and it can be taken again
    finally:
        await lease.release()
        await nc.close()
        server.stop()
