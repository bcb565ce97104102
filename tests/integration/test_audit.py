"""A project's audit trail through NATS: everything that concerns it, on whichever
aggregate it was recorded (its lifecycle, its allocations and costs on a pool, its risks),
and nothing about other projects."""

from __future__ import annotations

from pathlib import Path

from nats.aio.client import Client

from contracts.queries import AuditAnswer
from shared.eventlog import EventLog
from tests.integration.helpers import (
    accepted,
    budget_pool,
    caught_up,
    project_risk,
    proposal,
    query,
    running,
)


async def test_a_projects_trail_spans_every_aggregate(
    nc: Client, nats_url: str, event_log: EventLog, tmp_path: Path
) -> None:
    async with (
        running(nc, "intake", nats_url, tmp_path / "intake"),
        running(nc, "reporting", nats_url, tmp_path / "reporting"),
    ):
        for project_id in ("P-1", "P-2"):
            await accepted(nc, "ProposeProject", proposal(project_id))
            await accepted(nc, "SubmitProjectForReview", {"project_id": project_id})
            await accepted(nc, "ApproveProject", {"project_id": project_id, "rationale": "board"})
        await accepted(nc, "DefineBudgetPool", budget_pool())
        for project_id, amount in (("P-1", "600000"), ("P-2", "100000")):
            await accepted(
                nc,
                "AllocateBudget",
                {
                    "pool_id": "CAPEX-27",
                    "project_id": project_id,
                    "amount": amount,
                    "rationale": "approved business case",
                },
            )
        risk = project_risk("R-1", "P-1", probability=3, monetary_impact="0")
        await accepted(nc, "IdentifyRisk", risk)
        await caught_up(nc, "reporting", await event_log.last_position())

        raw = await query(nc, "reporting", "audit", {"project_id": "P-1"})
        trail = AuditAnswer.model_validate_json(raw).entries
        assert [(e.aggregate_type, e.event_type) for e in trail] == [
            ("project", "ProjectProposed"),
            ("project", "ProjectSubmittedForReview"),
            ("project", "ProjectApproved"),
            ("pool", "BudgetAllocated"),
            ("risk", "RiskIdentified"),
        ]
        assert trail[3].payload["amount"] in ("600000", "600000.00")
        assert [e.position for e in trail] == sorted(e.position for e in trail)

        # The aggregate filter still means that aggregate alone.
        raw = await query(
            nc, "reporting", "audit", {"aggregate_type": "pool", "aggregate_id": "CAPEX-27"}
        )
        pool = AuditAnswer.model_validate_json(raw).entries
        assert [e.event_type for e in pool] == [
            "BudgetPoolDefined",
            "BudgetAllocated",
            "BudgetAllocated",
        ]
        nobody = AuditAnswer.model_validate_json(
            await query(nc, "reporting", "audit", {"project_id": "P-404"})
        )
        assert nobody.entries == () and nobody.next_after_position is None
