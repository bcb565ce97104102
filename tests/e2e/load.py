"""Real services under a steady stream of commands, and what must hold afterwards.

Shared by the node-failure tests: services run as `portfolio serve NAME` processes (what a
container runs), a sender submits commands at a steady rate and retries each with the same
command id until intake answers it, and the checks compare the log with what the sender
was told and each live projection's tables with a from-zero rebuild.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client
from nats.js.errors import APIError
from sqlalchemy import create_engine, select

from contracts.base import CommandAccepted
from contracts.queries import ServiceStatus
from services.intake.projection import IntakeProjection
from services.reporting.projection import ReportingProjection
from shared.db import Database
from shared.eventlog import EventLog
from shared.projection import Projection, ProjectionRunner
from tests.integration.helpers import REPLY, SUBJECTS, proposal

#: How long one command may keep being retried: a leader election, a reconnect, a restart.
RETRY_BUDGET = 40.0


async def _quiet(_: Exception) -> None:
    """Connection errors are expected here: servers are killed on purpose."""


async def connect(urls: list[str], **credentials: str) -> Client:
    """A client that knows every node and never gives up reconnecting."""
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


def serve(service: str, urls: list[str], data_dir: Path, **env: str) -> subprocess.Popen[bytes]:
    """`portfolio serve SERVICE` against these NATS URLs, SQLite under `data_dir`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PORTFOLIO_")}
    variables = clean | {
        "PORTFOLIO_NATS_URL": ",".join(urls),
        "PORTFOLIO_DATA_DIR": str(data_dir),
        "PORTFOLIO_PROJECTION_BATCH_SIZE": "50",
        "PORTFOLIO_LOG_LEVEL": "WARNING",
        **env,
    }
    log_file = (data_dir / f"{service}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "serve", service],
        env=variables,
        stdout=log_file,
        stderr=log_file,
    )


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def status(nc: Client, service: str) -> ServiceStatus | None:
    try:
        msg = await nc.request(SUBJECTS.query(service, "status"), b"", timeout=2)
        return ServiceStatus.model_validate_json(msg.data)
    except (TimeoutError, nats.errors.Error):
        return None


async def wait_for(
    nc: Client, service: str, predicate: Callable[[ServiceStatus], bool], timeout: float = 60
) -> ServiceStatus:
    """Poll the service's status until `predicate` holds (generous: the machine is shared)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await status(nc, service)
        if last is not None and predicate(last):
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"{service} never reached the expected status; last: {last}")


def settled(status: ServiceStatus, end: int) -> bool:
    """Applied the whole log. "stalled" counts too: ProjectionRunner stays "stalled" after
    any error of its loop (a fetch during an election, an empty fetch's IndexError) until
    it applies the next batch, so on an idle log it keeps saying so although it has
    applied everything (reported to the owner of shared/projection.py)."""
    return status.state in ("running", "stalled") and status.position == end


@dataclass
class Sender:
    """Sends ProposeProject at a steady rate; records what intake acknowledged."""

    nc: Client
    prefix: str
    acked: dict[str, CommandAccepted] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    retries: int = 0

    async def one(self, n: int) -> None:
        project_id = f"{self.prefix}-{n:04d}"
        command_id = f"cmd-{project_id}"
        data = json.dumps(proposal(project_id) | {"command_id": command_id}).encode()
        deadline = time.monotonic() + RETRY_BUDGET
        while True:
            try:
                msg = await self.nc.request(SUBJECTS.command("ProposeProject"), data, timeout=3)
                reply = REPLY.validate_json(msg.data)
                break
            except (TimeoutError, nats.errors.Error) as error:
                # Not acknowledged: send the same command (same id) again.
                if time.monotonic() > deadline:
                    self.failed.append(f"{command_id}: {error!r}")
                    return
                self.retries += 1
                await asyncio.sleep(0.3)
        if isinstance(reply, CommandAccepted):
            self.acked[command_id] = reply
        else:
            self.failed.append(f"{command_id}: {reply}")

    async def run(self, rate: float, seconds: float, at: float, action: Callable[[], None]) -> None:
        """One command every 1/rate s for `seconds`; `action()` `at` s in."""
        started = time.monotonic()
        done = False
        tasks = []
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
            if not done and time.monotonic() - started >= at:
                action()
                done = True
            tasks.append(asyncio.create_task(self.one(n)))
        await asyncio.gather(*tasks)


async def read_log(nc: Client) -> list[tuple[str, str, int]]:
    """(event id, command id, position) of every event, retried while the cluster settles."""
    reader = EventLog(nc.jetstream(timeout=5), SUBJECTS)
    deadline = time.monotonic() + 30
    while True:
        try:
            return [
                (e.envelope.event_id, e.envelope.causation_id, e.position)
                async for e in reader.read()
            ]
        except (TimeoutError, APIError, nats.errors.Error):
            assert time.monotonic() < deadline, "the log could not be read back"
            await asyncio.sleep(0.5)


def check_log(stored: list[tuple[str, str, int]], senders: list[Sender], sent: int) -> None:
    """Every acknowledged command's events at their acknowledged positions; nothing twice."""
    twice = [e for e, n in Counter(e for e, _, _ in stored).items() if n > 1]
    assert twice == [], f"events stored twice: {twice[:5]}"
    commands = Counter(c for _, c, _ in stored)
    assert [c for c, n in commands.items() if n > 1] == [], "a command applied twice"
    positions = {e: p for e, _, p in stored}
    acked = {c: r for s in senders for c, r in s.acked.items()}
    missing = [
        c
        for c, reply in acked.items()
        if any(positions.get(e.event_id) != e.position for e in reply.events)
    ]
    assert missing == [], f"{len(missing)} acknowledged commands not in the log: {missing[:5]}"
    assert [f for s in senders for f in s.failed] == []
    assert len(acked) == sent == len(stored)


class _Rebuild(ProjectionRunner):
    """The service's own runner code, under another consumer name, into another database."""

    @property
    def consumer_name(self) -> str:
        return f"rebuild-check-{self.projection.name}"


def tables(url: str, projection: Projection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the projection's tables, in primary-key order."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table.name: [
                    tuple(row)
                    for row in conn.execute(select(table).order_by(*table.primary_key.columns))
                ]
                for table in projection.metadata.sorted_tables
            }
    finally:
        engine.dispose()


async def rebuilt_tables(
    nc: Client, projection: Projection, folder: Path, end: int
) -> dict[str, list[tuple[Any, ...]]]:
    """The projection replayed from position zero into a fresh SQLite file."""
    url = f"sqlite:///{folder / (projection.name + '.db')}"
    db = Database(url)
    runner = _Rebuild(nc.jetstream(timeout=5), db, projection, SUBJECTS, batch_size=500)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                # Creating its consumer needs the cluster's meta leader, which a kill may
                # have taken too: its election can end after the log's.
                await runner.start()
                break
            except (TimeoutError, APIError, nats.errors.Error):
                assert time.monotonic() < deadline, "the rebuild could not start"
                await asyncio.sleep(0.5)
        while runner.position < end:
            assert time.monotonic() < deadline, f"rebuild stuck at {runner.position} of {end}"
            await asyncio.sleep(0.1)
    finally:
        await runner.stop()
        await db.close()
    return tables(url, projection)


async def live_equals_rebuild(nc: Client, data_dir: Path, folder: Path, end: int) -> None:
    """Each live projection's tables (the service's own SQLite file under
    `data_dir/<service>/`) equal a replay from zero of the same log into a fresh database."""
    for service, projection in (
        ("intake", IntakeProjection()),
        ("reporting", ReportingProjection()),
    ):
        live = tables(f"sqlite:///{data_dir / service / f'{service}.db'}", projection)
        (folder / service).mkdir(parents=True)
        rebuilt = await rebuilt_tables(nc, projection, folder / service, end)
        assert sum(map(len, live.values())) > 0
        assert live == rebuilt, f"{service}: the live projection differs from a rebuild"
