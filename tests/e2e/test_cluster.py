"""A real 3-node JetStream cluster on loopback, with deploy/nats/auth.conf and
`sync_interval: always`: SIGKILL a node while commands flow at a steady rate.

- Plain appends: ingestion continues, every acknowledged append is in the log afterwards,
  nothing is in it twice; the killed node comes back and catches up, and a different node
  is killed under load with the same result.
- The same with real services (`portfolio serve intake` and `reporting`, each as its own
  NATS user, log on 3 replicas, as in docker-compose.yml) taking the commands: they ride out
  both kills without a restart, and their projections equal a replay from zero.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import shutil
import socket
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js.errors import APIError

from contracts.base import CommandAccepted, EventEnvelope
from contracts.projects import ProposeProject
from contracts.subjects import LOG_STREAM
from shared.client import PortfolioClient
from shared.embedded_nats import EmbeddedNats
from shared.eventlog import Appended, EventLog, log_stream_config
from tests.e2e import load
from tests.integration.helpers import SUBJECTS, proposal, proposed_envelope
from tests.unit.test_deploy_files import (
    CLIENT_PORT,
    MONITOR_PORT,
    ROUTE_PORT,
    compose_service_environment,
)

pytestmark = pytest.mark.e2e

NODES = ("nats-1", "nats-2", "nats-3")
NATS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "nats"
AUTH_CONF = NATS_DIR / "auth.conf"
#: Every user of the shipped auth.conf (the server refuses to start without each password).
USERS = tuple(
    u.lower() for u in re.findall(r"password:\s*\$NATS_PASSWORD_(\w+)", AUTH_CONF.read_text())
)
RATE = 50  # appends a second
#: EventLog.append's patience (PORTFOLIO_LOG_PATIENCE_SECONDS, default 20 s) must outlast
#: the election of a new stream leader: a few seconds.
FAILOVER_BUDGET = 20.0
SERVICES_UNDER_TEST = ("intake", "reporting")


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now; released at once for the servers to bind."""
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@dataclass
class Cluster:
    root: Path
    client_ports: dict[str, int] = field(default_factory=dict)
    route_ports: dict[str, int] = field(default_factory=dict)
    monitor_ports: dict[str, int] = field(default_factory=dict)
    servers: dict[str, EmbeddedNats] = field(default_factory=dict)
    #: A fresh password per user of deploy/nats/auth.conf, which every node includes.
    passwords: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(NODES)
        ports = free_ports(3 * n)
        self.client_ports = dict(zip(NODES, ports[:n], strict=True))
        self.route_ports = dict(zip(NODES, ports[n : 2 * n], strict=True))
        self.monitor_ports = dict(zip(NODES, ports[2 * n :], strict=True))
        self.passwords = {user: f"pw{secrets.token_hex(8)}" for user in (*USERS, "route")}
        shutil.copy(AUTH_CONF, self.root / "auth.conf")

    def credentials(self, user: str) -> dict[str, str]:
        """A user's credentials and its own reply inbox (the only one it may read)."""
        return {"user": user, "password": self.passwords[user], "inbox_prefix": f"_INBOX.{user}"}

    def service_env(self, service: str) -> dict[str, str]:
        """What compose gives a service (its own user, the log on three replicas, intake's
        identity settings), with this cluster's addresses and passwords."""
        shipped = compose_service_environment(service)
        env = {k: v for k, v in shipped.items() if k.startswith("PORTFOLIO_")}
        for local in ("PORTFOLIO_NATS_URL", "PORTFOLIO_DATABASE_URL", "PORTFOLIO_SERVICE"):
            env.pop(local, None)
        # Compose's metrics ports are the container's; here every one is a free port.
        env["PORTFOLIO_METRICS_PORT"] = "0"
        env["PORTFOLIO_NATS_PASSWORD"] = self.passwords[service]
        assert env["PORTFOLIO_NATS_USER"] == service and env["PORTFOLIO_LOG_REPLICAS"] == "3"
        return env

    @property
    def route_password(self) -> str:
        return self.passwords["route"]

    def node_env(self) -> dict[str, str]:
        """What compose gives each node: the users' passwords, the route password and the
        route URLs (here on loopback ports)."""
        env = {f"NATS_PASSWORD_{u.upper()}": pw for u, pw in self.passwords.items() if u in USERS}
        env["NATS_ROUTE_PASSWORD"] = self.route_password
        for n, node in enumerate(NODES, start=1):
            port = self.route_ports[node]
            env[f"NATS_ROUTE_{n}"] = f"nats-route://route:{self.route_password}@127.0.0.1:{port}"
        return env

    @property
    def urls(self) -> list[str]:
        return [f"nats://127.0.0.1:{self.client_ports[n]}" for n in NODES]

    def config(self, node: str) -> Path:
        """The shipped deploy/nats/<node>.conf, with only its addresses moved to loopback
        ports and its store left to the command line (each replaced exactly once)."""
        text = (NATS_DIR / f"{node}.conf").read_text()
        for pattern, replacement in (
            (
                rf"^listen: 0\.0\.0\.0:{CLIENT_PORT}$",
                f"listen: 127.0.0.1:{self.client_ports[node]}",
            ),
            (rf"^http: 0\.0\.0\.0:{MONITOR_PORT}$", f"http: 127.0.0.1:{self.monitor_ports[node]}"),
            # EmbeddedNats gives the store on its command line (--store_dir <node>/jetstream).
            (r"^  store_dir: /data$", "  # store_dir: on the command line"),
            (
                rf"^  listen: 0\.0\.0\.0:{ROUTE_PORT}$",
                f"  listen: 127.0.0.1:{self.route_ports[node]}",
            ),
        ):
            text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
            assert count == 1, f"{node}.conf: {pattern} not found once"
        path = self.root / f"{node}.conf"
        path.write_text(text)
        return path

    def start(self, node: str) -> None:
        server = EmbeddedNats(
            self.root / node,
            port=self.client_ports[node],
            extra_args=("-c", str(self.config(node))),
            env=self.node_env(),
        )
        server.start()
        self.servers[node] = server

    def kill(self, node: str) -> None:
        self.servers[node].kill()

    async def clients(self, node: str) -> list[str]:
        """Names of the client connections this node holds (its /connz)."""
        url = f"http://127.0.0.1:{self.monitor_ports[node]}/connz?limit=1024"

        def fetch() -> list[str]:
            with urllib.request.urlopen(url, timeout=5) as response:
                found = json.load(response)
            return [str(c.get("name", "")) for c in found.get("connections") or []]

        return await asyncio.to_thread(fetch)

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    found = Cluster(tmp_path)
    try:
        for node in NODES:
            found.start(node)
        yield found
    finally:
        found.stop()


async def _quiet(_: Exception) -> None:
    """Connection errors are expected here: a node is killed on purpose."""


async def connect(urls: list[str], **credentials: str) -> Client:
    return await nats.connect(
        urls,
        **credentials,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
        connect_timeout=2,
        ping_interval=1,
        max_outstanding_pings=2,
        error_cb=_quiet,
    )


async def create_replicated_log(nc: Client, timeout: float = 30.0) -> None:
    """Once the cluster has a meta leader and all three peers: the log with 3 replicas."""
    js = nc.jetstream(timeout=2)
    config = log_stream_config(SUBJECTS, 120.0).evolve(num_replicas=3)
    deadline = time.monotonic() + timeout
    while True:
        try:
            await js.add_stream(config)
            break
        except (APIError, TimeoutError) as error:  # no meta leader or peers yet
            if time.monotonic() > deadline:
                raise AssertionError(f"the cluster never took the stream: {error}") from error
            await asyncio.sleep(0.25)
    while time.monotonic() < deadline:
        info = await js.stream_info(LOG_STREAM)
        replicas = (info.cluster.replicas or []) if info.cluster else []
        led = info.cluster is not None and info.cluster.leader is not None
        if led and len(replicas) == 2 and all(r.current for r in replicas):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the replicated log never became current on all three nodes")


async def leader(nc: Client) -> str:
    for _ in range(100):
        try:
            info = await nc.jetstream(timeout=2).stream_info(LOG_STREAM)
        except (TimeoutError, APIError):
            await asyncio.sleep(0.1)
            continue
        if info.cluster and info.cluster.leader:
            return info.cluster.leader
        await asyncio.sleep(0.1)
    raise AssertionError("the log has no leader")


async def caught_up(nc: Client, node: str, timeout: float = 30.0) -> None:
    """Wait until `node` holds a current replica of the log again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = await nc.jetstream(timeout=2).stream_info(LOG_STREAM)
        except (TimeoutError, APIError):
            info = None
        cluster_info = info.cluster if info else None
        peers = {r.name: r for r in (cluster_info.replicas or [])} if cluster_info else {}
        if node in peers and peers[node].current and not peers[node].lag:
            return
        assert time.monotonic() < deadline, f"{node} never caught up: {cluster_info}"
        await asyncio.sleep(0.2)


async def append(log: EventLog, envelope: EventEnvelope) -> Appended:
    """EventLog.append: it waits out a leader election itself, for its patience (no answer,
    or "no responders" while the stream has no leader, retried with the same message id)."""
    return await log.append(envelope, 0)


@dataclass
class Load:
    """Appends at a steady rate, each to its own aggregate; what the writer was told."""

    acked: dict[str, int] = field(default_factory=dict)  # event id -> position
    failed: list[str] = field(default_factory=list)
    #: (started, acknowledged) moments of each acknowledged append.
    timeline: list[tuple[float, float]] = field(default_factory=list)

    def resumed_after(self, killed_at: float) -> float:
        """Seconds from the kill to the first acknowledgement of an append started after it."""
        after = [acked for started, acked in self.timeline if started > killed_at]
        assert after, "no append started after the kill was acknowledged"
        return min(after) - killed_at


async def steady_appends(
    log: EventLog,
    load: Load,
    prefix: str,
    seconds: float,
    kill_after: float,
    kill: Callable[[], None],
) -> float:
    """Start one append every 1/RATE s for `seconds`; call `kill()` after `kill_after` s.
    Returns the moment of the kill."""

    async def one(n: int) -> None:
        envelope = proposed_envelope(f"{prefix}-{n:04d}")
        began = time.monotonic()
        try:
            appended = await append(log, envelope)
        except Exception as error:  # noqa: BLE001 - counted: not acknowledged to the writer
            load.failed.append(f"{envelope.event_id}: {error!r}")
            return
        load.acked[envelope.event_id] = appended.position
        load.timeline.append((began, time.monotonic()))

    started = time.monotonic()
    killed_at = 0.0
    tasks = []
    for n in range(int(seconds * RATE)):
        await asyncio.sleep(max(0.0, started + n / RATE - time.monotonic()))
        if not killed_at and time.monotonic() - started >= kill_after:
            kill()
            killed_at = time.monotonic()
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.wait_for(asyncio.gather(*tasks), FAILOVER_BUDGET + 10)
    return killed_at


async def check_log(nc: Client, load: Load, expected_appends: int) -> None:
    """Every acknowledged append at the position it was acknowledged with, nothing twice."""
    reader = EventLog(nc.jetstream(timeout=5), SUBJECTS)
    deadline = time.monotonic() + 30
    while True:
        # Reading creates a consumer, which needs the meta leader: the kill may have taken
        # it too, and its election can end after the stream's.
        try:
            stored = [(e.envelope.event_id, e.position) async for e in reader.read()]
            break
        except (TimeoutError, APIError):
            assert time.monotonic() < deadline, "the log could not be read back"
            await asyncio.sleep(0.5)
    counts = Counter(event_id for event_id, _ in stored)
    assert [e for e, c in counts.items() if c > 1] == []
    positions = dict(stored)
    missing = {e: p for e, p in load.acked.items() if positions.get(e) != p}
    assert missing == {}, f"{len(missing)} acknowledged appends not in the log"
    assert len(load.acked) + len(load.failed) == expected_appends
    # Whatever was not acknowledged may or may not have landed, but only once.
    assert len(load.acked) <= len(stored) <= expected_appends


async def test_killing_a_node_under_load_loses_nothing(cluster: Cluster) -> None:
    # As intake, the user that may write every aggregate's events.
    nc = await connect(cluster.urls, **cluster.credentials("intake"))
    try:
        await create_replicated_log(nc)
        log = EventLog(nc.jetstream(timeout=5), SUBJECTS, patience=FAILOVER_BUDGET)

        # 1. SIGKILL the log's leader 2 s into 6 s of appends.
        first = await leader(nc)
        load = Load()
        killed_at = await steady_appends(
            log, load, "A", seconds=6, kill_after=2, kill=lambda: cluster.kill(first)
        )
        assert load.failed == [], load.failed[:5]
        # Appends started after the kill were acknowledged once a new leader was elected
        # (4 to 8 s on nats-server 2.15.1 on this machine).
        assert load.resumed_after(killed_at) < FAILOVER_BUDGET
        await check_log(nc, load, 6 * RATE)
        assert await leader(nc) != first

        # 2. The killed node comes back and catches up.
        cluster.start(first)
        await caught_up(nc, first)

        # 3. Kill a different node (the new leader) under load: the same holds, now for
        # everything appended in both rounds.
        second = await leader(nc)
        assert second != first
        more = Load()
        killed_at = await steady_appends(
            log, more, "B", seconds=4, kill_after=1, kill=lambda: cluster.kill(second)
        )
        assert more.failed == [], more.failed[:5]
        assert more.resumed_after(killed_at) < FAILOVER_BUDGET
        both = Load(acked=load.acked | more.acked, failed=load.failed + more.failed)
        await check_log(nc, both, 10 * RATE)
    finally:
        await nc.close()


SERVICE_RATE = 20  # commands a second
#: PortfolioClient's budget: every command sent while a node is killed is answered within it.
CLIENT_BUDGET = 30.0


@dataclass
class ClientSender:
    """Sends ProposeProject at a steady rate through PortfolioClient, as the operator (the
    shipped `admin` user, on its own subject, for a person): the client resends with the
    same command id until it is answered, within its budget. Every command must be
    answered accepted (a resend of one that landed: accepted, duplicate)."""

    nc: Client
    prefix: str
    acked: dict[str, CommandAccepted] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    async def one(self, n: int) -> None:
        client = PortfolioClient(
            self.nc, principal="admin", timeout=3.0, attempts=1, budget=CLIENT_BUDGET
        )
        project_id = f"{self.prefix}-{n:04d}"
        command = ProposeProject.model_validate(
            proposal(project_id, command_id=f"cmd-{project_id}")
        )
        try:
            reply = await client.send(command)
        except Exception as error:  # noqa: BLE001 - counted: no answer within the budget
            self.failed.append(f"{command.command_id}: {error!r}")
            return
        if isinstance(reply, CommandAccepted):
            self.acked[command.command_id] = reply
        else:
            self.failed.append(f"{command.command_id}: {reply}")

    async def run(self, rate: float, seconds: float, at: float, action: Callable[[], None]) -> None:
        started = time.monotonic()
        done = False
        tasks = []
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            if not done and time.monotonic() - started >= at:
                action()
                done = True
            tasks.append(asyncio.create_task(self.one(n)))
        await asyncio.wait_for(asyncio.gather(*tasks), CLIENT_BUDGET + 15)


async def converged(nc: Client, services: tuple[str, ...]) -> int:
    """Wait until every service has applied the whole log; returns its last position."""
    reader = EventLog(nc.jetstream(timeout=5), SUBJECTS)
    end = 0
    for _ in range(60):
        try:
            end = await reader.last_position()
            break
        except (TimeoutError, APIError):
            await asyncio.sleep(0.5)
    for service in services:
        await load.wait_for(nc, service, lambda s: load.settled(s, end))
    return end


async def test_services_ride_out_node_kills(cluster: Cluster, tmp_path: Path) -> None:
    """intake and reporting, as `portfolio serve` processes on the cluster, while commands
    come in at a steady rate: SIGKILL the log's leader, then (after it rejoined) the node
    intake is connected to."""
    # As an operator: commands, status, creating the log, reading it back.
    nc = await load.connect(cluster.urls, **cluster.credentials("admin"))
    processes = []
    try:
        await create_replicated_log(nc)
        data = tmp_path / "services"
        for service in SERVICES_UNDER_TEST:
            processes.append(
                load.serve(service, cluster.urls, data / service, **cluster.service_env(service))
            )
        for service in SERVICES_UNDER_TEST:
            await load.wait_for(nc, service, lambda s: s.state == "running")

        # 1. The log's leader dies 1 s into 4 s of commands.
        first = await leader(nc)
        a = ClientSender(nc, "A")
        await a.run(SERVICE_RATE, 4, at=1, action=lambda: cluster.kill(first))
        load.check_log(await load.read_log(nc), [a], 4 * SERVICE_RATE)  # type: ignore[list-item]
        # Both caught up (compared with a rebuild once, at the end, covering both rounds).
        await converged(nc, SERVICES_UNDER_TEST)

        # 2. It comes back and catches up.
        cluster.start(first)
        await caught_up(nc, first)

        # 3. Kill another node: the one intake takes commands from.
        live = [n for n in NODES if n != first]
        holding = [n for n in live if "portfolio-intake" in await cluster.clients(n)]
        assert holding, "intake is connected to no live node"
        second = holding[0]
        b = ClientSender(nc, "B")
        await b.run(SERVICE_RATE, 4, at=1, action=lambda: cluster.kill(second))
        load.check_log(await load.read_log(nc), [a, b], 8 * SERVICE_RATE)  # type: ignore[list-item]
        end = await converged(nc, SERVICES_UNDER_TEST)
        await load.live_equals_rebuild(nc, data, tmp_path / "rebuild", end)
        for process in processes:
            assert process.poll() is None, "a service exited"
    finally:
        load.stop(processes)
        await nc.close()


async def test_a_server_without_the_route_password_cannot_join(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Routes authenticate (deploy/nats/nats-<n>.conf): a server that knows where the
    cluster listens but not the route password (none, or a wrong one) is refused, and the
    cluster's nodes keep routes to each other only."""
    rogues = []
    for n, credentials in enumerate(("", "route:guessed@")):
        port = free_ports(1)[0]
        config = tmp_path / f"rogue-{n}.conf"
        config.write_text(
            f"server_name: rogue-{n}\n"
            "cluster {\n  name: portfolio\n"
            f"  listen: 127.0.0.1:{port}\n"
            f"  routes: [ nats-route://{credentials}127.0.0.1:{cluster.route_ports['nats-1']} ]\n"
            "}\n"
        )
        rogue = EmbeddedNats(tmp_path / f"rogue-{n}", extra_args=("-c", str(config)))
        rogue.start()
        rogues.append(rogue)
    try:
        url = f"http://127.0.0.1:{cluster.monitor_ports['nats-1']}/routez"
        deadline = time.monotonic() + 20
        while True:
            logs = [(r.data_dir / "nats-server.log").read_text() for r in rogues]
            if all("Authorization Violation" in text for text in logs):
                break
            assert time.monotonic() < deadline, logs
            await asyncio.sleep(0.2)

        def peers() -> set[str]:
            with urllib.request.urlopen(url, timeout=5) as response:
                found = json.load(response)
            return {str(r.get("remote_name")) for r in found.get("routes") or []}

        assert await asyncio.to_thread(peers) == {"nats-2", "nats-3"}
    finally:
        for rogue in rogues:
            rogue.stop()
