"""Running services in-process against the test's nats-server, and talking to them."""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import nats.errors
from faststream import FastStream
from nats.aio.client import Client
from pydantic import TypeAdapter

from contracts.base import CommandAccepted, CommandRejected, CommandReply, EventEnvelope
from contracts.projects import ProposeProject
from contracts.queries import ServiceStatus
from contracts.subjects import Subjects
from domain.deciders import decide
from shared import settings as settings_module
from shared.commands import envelope_for
from shared.eventlog import EventLog

REPLY = TypeAdapter[CommandAccepted | CommandRejected](CommandReply)
SUBJECTS = Subjects()
SETTINGS_CLASS = {
    "intake": settings_module.IntakeSettings,
    "prioritization": settings_module.PrioritizationSettings,
    "ledger": settings_module.LedgerSettings,
    "risk": settings_module.RiskSettings,
    "reporting": settings_module.ReportingSettings,
    "notify": settings_module.NotifySettings,
}


@asynccontextmanager
async def running(
    nc: Client, name: str, nats_url: str, data_dir: Path, **overrides: Any
) -> AsyncIterator[FastStream]:
    """One service's FastStream app, started in this event loop, ready when it answers."""
    if name == "reporting":
        overrides.setdefault("dashboard_port", 0)  # never a fixed port in a test
    settings = SETTINGS_CLASS[name](nats_url=nats_url, data_dir=data_dir, **overrides)
    module = importlib.import_module(f"services.{name}.app")
    app: FastStream = module.create_app(settings)
    task = asyncio.create_task(app.run())
    try:
        await wait_for_status(nc, name, lambda s: s.state == "running")
        yield app
    finally:
        app.exit()
        await asyncio.wait_for(task, 20)


async def status(nc: Client, name: str) -> ServiceStatus | None:
    try:
        msg = await nc.request(SUBJECTS.query(name, "status"), b"", timeout=2)
    except (nats.errors.NoRespondersError, TimeoutError):
        return None
    return ServiceStatus.model_validate_json(msg.data)


async def wait_for_status(
    nc: Client, name: str, predicate: Any, timeout: float = 30.0
) -> ServiceStatus:
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while asyncio.get_running_loop().time() < deadline:
        last = await status(nc, name)
        if last is not None and predicate(last):
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never reached the expected status; last: {last}")


async def caught_up(nc: Client, name: str, position: int) -> ServiceStatus:
    return await wait_for_status(nc, name, lambda s: s.position >= position)


async def send(nc: Client, command: str, body: Any) -> CommandAccepted | CommandRejected:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    msg = await nc.request(SUBJECTS.command(command), data, timeout=10)
    return REPLY.validate_json(msg.data)


async def query(nc: Client, service: str, name: str, body: Any = None) -> bytes:
    data = b"" if body is None else json.dumps(body).encode()
    msg = await nc.request(SUBJECTS.query(service, name), data, timeout=10)
    return bytes(msg.data)


def proposal(project_id: str, **overrides: Any) -> dict[str, Any]:
    start = date(2027, 1, 1)
    body = {
        "project_id": project_id,
        "name": f"Project {project_id}",
        "sponsor": "cio",
        "category": "infrastructure",
        "capex": "100000.00",
        "opex": "25000.50",
        "planned_start": start.isoformat(),
        "planned_end": (start + timedelta(days=180)).isoformat(),
        "actor": "alice",
        "source": "tests",
    }
    return body | overrides


def budget_pool(pool_id: str = "CAPEX-27", **overrides: Any) -> dict[str, Any]:
    """DefineBudgetPool data: a 2027 capex pool of one million euros."""
    body = {
        "pool_id": pool_id,
        "name": "IT capex 2027",
        "fiscal_year": 2027,
        "category": "capex",
        "amount": "1000000",
        "currency": "EUR",
        "owner": "cfo",
    }
    return body | overrides


def project_risk(risk_id: str, project_id: str, **overrides: Any) -> dict[str, Any]:
    """IdentifyRisk data: a threat to the project, probability 4 x impact 4."""
    body = {
        "risk_id": risk_id,
        "project_id": project_id,
        "title": "Vendor late",
        "owner": "pmo",
        "probability": 4,
        "impact": 4,
        "monetary_impact": "100000",
    }
    return body | overrides


def proposed_envelope(project_id: str) -> EventEnvelope:
    """A ProjectProposed event exactly as intake would write it, for filling the log fast."""
    command = ProposeProject.model_validate(proposal(project_id))
    now = datetime.now(UTC)
    (event,) = decide(command, None, now)
    return envelope_for(command, event, ("project", project_id), 0, now)


async def fill_log(log: EventLog, count: int, concurrency: int = 64, start: int = 0) -> int:
    """Append `count` proposals, many in flight at once; returns the last position."""
    ids = [f"P-{n:05d}" for n in range(start, start + count)]
    for start in range(0, count, concurrency):
        chunk = ids[start : start + concurrency]
        await asyncio.gather(*(log.append(proposed_envelope(i), 0) for i in chunk))
    return await log.last_position()


async def all_pages(nc: Client, service: str, name: str) -> list[bytes]:
    """Every page of a paged query, raw, in order."""
    cursor_field = {"audit": ("after_position", "next_after_position")}.get(
        name, ("after_project_id", "next_after_project_id")
    )
    pages: list[bytes] = []
    body: dict[str, Any] = {}
    while True:
        raw = await query(nc, service, name, body)
        pages.append(raw)
        cursor = json.loads(raw)[cursor_field[1]]
        if cursor is None:
            return pages
        body = {cursor_field[0]: cursor}


async def accepted(nc: Client, command: str, body: dict[str, Any]) -> CommandAccepted:
    reply = await send(nc, command, body)
    assert isinstance(reply, CommandAccepted), reply
    return reply


async def quiet(nc: Client, log: EventLog, service: str) -> None:
    """Wait until `service` has seen the whole log and appends nothing more in reaction."""
    for _ in range(100):
        last = await log.last_position()
        await caught_up(nc, service, last)
        await asyncio.sleep(0.2)
        if await log.last_position() == last:
            return
    raise AssertionError(f"{service} kept appending")
