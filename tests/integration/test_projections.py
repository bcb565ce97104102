"""Projections of every service, built from the log into SQLite, rebuilt byte for byte."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from pathlib import Path

from nats.aio.client import Client
from sqlalchemy import text

from contracts.base import CommandAccepted
from contracts.queries import AuditAnswer, ProjectsAnswer, ServiceStatus
from contracts.subjects import SERVICES
from shared.db import Database
from shared.eventlog import EventLog
from shared.settings import ReportingSettings
from tests.integration.helpers import (
    SUBJECTS,
    caught_up,
    proposal,
    query,
    running,
    send,
    wait_for_status,
)

#: What each service answers from its projection: the projects it knows, or (notify keeps
#: no project view) its deliveries.
VIEWS = {name: "deliveries" if name == "notify" else "projects" for name in SERVICES}


async def test_every_service_projects_the_log_and_rebuilds_identically(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        for name in SERVICES:
            await stack.enter_async_context(running(nc, name, nats_url, tmp_path))
        for n in range(12):
            reply = await send(nc, "ProposeProject", proposal(f"P-{n}"))
            assert isinstance(reply, CommandAccepted)
        await send(nc, "SubmitProjectForReview", {"project_id": "P-3"})
        await send(nc, "ApproveProject", {"project_id": "P-3", "rationale": "best value"})
        await send(nc, "CancelProject", {"project_id": "P-5", "reason": "duplicate of P-4"})
        end = 15
        for name in SERVICES:
            await caught_up(nc, name, end)

        before = {name: await query(nc, name, VIEWS[name]) for name in SERVICES}
        audit_before = await query(nc, "reporting", "audit", {})
        for name in SERVICES:
            if VIEWS[name] != "projects":
                continue
            listed = ProjectsAnswer.model_validate_json(before[name]).projects
            assert len(listed) == 12
            by_id = {p.project_id: p for p in listed}
            assert by_id["P-3"].status == "approved" and by_id["P-3"].version == 3
            assert by_id["P-5"].status == "cancelled"
            assert by_id["P-0"].opex == "25000.50"
        audit = AuditAnswer.model_validate_json(audit_before).entries
        assert [e.position for e in audit] == list(range(1, end + 1))
        assert audit[13].payload["rationale"] == "best value"

        for name in SERVICES:
            started = await nc.request(SUBJECTS.control(name, "replay"), b"", timeout=10)
            assert json.loads(started.data)["target_position"] == end
        for name in SERVICES:
            await wait_for_status(
                nc,
                name,
                lambda s: (
                    s.rebuilds_since_start == 1 and s.state == "running" and s.position == end
                ),
            )
            assert await query(nc, name, VIEWS[name]) == before[name]
        assert await query(nc, "reporting", "audit", {}) == audit_before


async def test_audit_filters(nc: Client, nats_url: str, tmp_path: Path) -> None:
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "reporting", nats_url, tmp_path),
    ):
        await send(nc, "ProposeProject", proposal("P-1", actor="alice", correlation_id="batch-7"))
        await send(nc, "ProposeProject", proposal("P-2", actor="bob"))
        await send(nc, "SubmitProjectForReview", {"project_id": "P-1", "actor": "carol"})
        # A late-arriving fact: recorded now, but it happened in 2020.
        await send(nc, "ProposeProject", proposal("P-OLD", occurred_at="2020-05-01T00:00:00Z"))
        await caught_up(nc, "reporting", 4)

        async def positions(**filters: object) -> list[int]:
            raw = await query(nc, "reporting", "audit", filters)
            return [e.position for e in AuditAnswer.model_validate_json(raw).entries]

        assert await positions(aggregate_type="project", aggregate_id="P-1") == [1, 3]
        assert await positions(actor="bob") == [2]
        assert await positions(event_type="ProjectSubmittedForReview") == [3]
        assert await positions(correlation_id="batch-7") == [1]
        assert await positions(limit=2) == [1, 2]
        assert await positions(occurred_until="2021-01-01T00:00:00Z") == [4]
        assert await positions(until="2021-01-01T00:00:00Z") == []
        assert await positions(since="2999-01-01T00:00:00Z") == []
        assert await positions(until="2000-01-01T00:00:00Z") == []
        assert await positions(occurred_until="2999-01-01T00:00:00Z") == [1, 2, 3, 4]
        bad = json.loads(await query(nc, "reporting", "audit", {"limit": -1}))
        assert bad["error"] == "invalid audit query" and bad["details"][0]["field"] == "limit"


async def test_unusable_events_are_recorded_and_passed_over(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    """Another tool writing garbage, or an event for an unknown aggregate, never stalls."""
    js = nc.jetstream()
    async with running(nc, "ledger", nats_url, tmp_path):
        await js.publish("portfolio.events.project.X-1", b"not an event")
        await js.publish(
            "portfolio.events.project.X-2",
            json.dumps(
                {
                    "event_id": "e-1",
                    "event_type": "ProjectApproved",
                    "schema_version": 1,
                    "aggregate_type": "project",
                    "aggregate_id": "X-2",
                    "actor": "rogue",
                    "source": "elsewhere",
                    "occurred_at": "2026-01-01T00:00:00Z",
                    "recorded_at": "2026-01-01T00:00:00Z",
                    "correlation_id": "c",
                    "causation_id": "c",
                    "payload": {"project_id": "X-2", "rationale": "approve a ghost"},
                }
            ).encode(),
        )
        async with running(nc, "intake", nats_url, tmp_path):
            await send(nc, "ProposeProject", proposal("P-1"))
        status: ServiceStatus = await caught_up(nc, "ledger", 3)
        assert status.skipped_events == 2 and status.state == "running"
        listed = ProjectsAnswer.model_validate_json(await query(nc, "ledger", "projects"))
        assert [p.project_id for p in listed.projects] == ["P-1"]


async def test_projection_resumes_after_restart(nc: Client, nats_url: str, tmp_path: Path) -> None:
    async with running(nc, "intake", nats_url, tmp_path):
        for n in range(3):
            await send(nc, "ProposeProject", proposal(f"P-{n}"))
        async with running(nc, "risk", nats_url, tmp_path):
            await caught_up(nc, "risk", 3)
        for n in range(3, 5):
            await send(nc, "ProposeProject", proposal(f"P-{n}"))
        async with running(nc, "risk", nats_url, tmp_path):
            status = await caught_up(nc, "risk", 5)
            assert status.applied_since_start == 2  # resumed, not replayed
            listed = ProjectsAnswer.model_validate_json(await query(nc, "risk", "projects"))
            assert len(listed.projects) == 5
    await asyncio.sleep(0)


async def test_tables_of_an_older_version_are_rebuilt_from_the_log(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    """A new version adds a column: the projection notices at start and replays the log."""
    async with running(nc, "intake", nats_url, tmp_path):
        for n in range(3):
            await send(nc, "ProposeProject", proposal(f"P-{n}"))
        async with running(nc, "reporting", nats_url, tmp_path):
            await caught_up(nc, "reporting", 3)
        url = ReportingSettings(nats_url=nats_url, data_dir=tmp_path).database_url_for("reporting")
        db = Database(url)
        try:
            # The table as an older version made it: without the project column.
            await db.write(
                lambda conn: [
                    conn.execute(text(sql))
                    for sql in (
                        "DROP INDEX ix_reporting_audit_project",
                        "ALTER TABLE reporting_audit DROP COLUMN project_id",
                    )
                ]
            )
        finally:
            await db.close()
        await send(nc, "ProposeProject", proposal("P-3"))
        async with running(nc, "reporting", nats_url, tmp_path):
            status = await caught_up(nc, "reporting", 4)
            assert status.applied_since_start == 4  # replayed, not resumed
            trail = AuditAnswer.model_validate_json(
                await query(nc, "reporting", "audit", {"project_id": "P-1"})
            ).entries
            assert [e.event_type for e in trail] == ["ProjectProposed"]
