"""The resource ledger through NATS: budgets and capacity by command, threshold events
appended once per crossing and cleared when the figure falls back, reports on request."""

from __future__ import annotations

import json
from pathlib import Path

from nats.aio.client import Client

from contracts.base import CommandRejected, ErrorCode
from shared.eventlog import EventLog
from tests.integration.helpers import (
    SUBJECTS,
    accepted,
    proposal,
    query,
    quiet,
    running,
    send,
)


async def thresholds(event_log: EventLog) -> list[str]:
    found = [e async for e in event_log.read() if e.envelope.source == "ledger"]
    return [e.envelope.event_type for e in found]


async def settle(nc: Client, event_log: EventLog) -> list[str]:
    """Wait until the ledger service is done reacting, then what it appended."""
    await quiet(nc, event_log, "ledger")
    return await thresholds(event_log)


async def test_budget_thresholds_and_reports(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "ledger", nats_url, tmp_path),
    ):
        await accepted(nc, "ProposeProject", proposal("P-1"))
        await accepted(nc, "ProposeProject", proposal("P-2"))
        await accepted(
            nc,
            "DefineBudgetPool",
            {
                "pool_id": "CAPEX-27",
                "name": "Capex 2027",
                "fiscal_year": 2027,
                "category": "capex",
                "amount": "1000000",
                "currency": "EUR",
                "owner": "cfo",
            },
        )
        await accepted(
            nc,
            "AllocateBudget",
            {
                "pool_id": "CAPEX-27",
                "project_id": "P-1",
                "amount": "600000",
                "rationale": "approved business case",
            },
        )
        # Bad input: answered, nothing appended.
        overdraw = await send(
            nc,
            "AllocateBudget",
            {
                "pool_id": "CAPEX-27",
                "project_id": "P-2",
                "amount": "500000",
                "rationale": "too much",
            },
        )
        assert (
            isinstance(overdraw, CommandRejected)
            and overdraw.error.code == ErrorCode.VALIDATION_FAILED
        )
        unknown = await send(
            nc,
            "AllocateBudget",
            {
                "pool_id": "NOPE",
                "project_id": "P-2",
                "amount": "5",
                "rationale": "no pool",
            },
        )
        assert isinstance(unknown, CommandRejected) and unknown.error.code == ErrorCode.NOT_FOUND
        negative = await send(
            nc,
            "RecordActualCost",
            {
                "pool_id": "CAPEX-27",
                "project_id": "P-1",
                "amount": "-5",
                "external_ref": "INV-0",
                "period": "2027-02",
            },
        )
        assert isinstance(negative, CommandRejected)

        for n, amount in enumerate(("500000", "200000", "150000")):
            await accepted(
                nc,
                "RecordActualCost",
                {
                    "pool_id": "CAPEX-27",
                    "project_id": "P-1",
                    "amount": amount,
                    "external_ref": f"INV-{n}",
                    "period": "2027-03",
                    "source": "finance",
                },
            )
        duplicate = await send(
            nc,
            "RecordActualCost",
            {
                "pool_id": "CAPEX-27",
                "project_id": "P-1",
                "amount": "1",
                "external_ref": "INV-1",
                "period": "2027-03",
            },
        )
        assert isinstance(duplicate, CommandRejected)
        assert duplicate.error.code == ErrorCode.ALREADY_EXISTS
        # 850k of 1M consumed: the 80% threshold once, and P-1 is beyond its allocation.
        assert sorted(await settle(nc, event_log)) == ["PoolThresholdCrossed", "ProjectOverspent"]

        await accepted(
            nc,
            "AdjustBudgetPool",
            {
                "pool_id": "CAPEX-27",
                "amount": "2000000",
                "rationale": "mid-year top-up",
            },
        )
        appended = await settle(nc, event_log)
        assert appended.count("PoolThresholdCleared") == 1
        assert appended.count("PoolThresholdCrossed") == 1

        report = json.loads(await query(nc, "ledger", "budget", {"by": "pool"}))
        pool = report["CAPEX-27"]
        assert (pool["allocated"], pool["actual"], pool["amount"]) == (
            "600000",
            "850000",
            "2000000",
        )
        by_project = json.loads(await query(nc, "ledger", "budget", {"by": "project"}))
        assert by_project["P-1/EUR"]["actual"] == "850000"
        bad = json.loads(await query(nc, "ledger", "budget", {"by": "planet"}))
        assert bad["error"] == "invalid BudgetQuery query"


async def test_capacity_over_allocation(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "ledger", nats_url, tmp_path),
    ):
        for project in ("P-1", "P-2"):
            await accepted(nc, "ProposeProject", proposal(project))
        await accepted(
            nc,
            "SetCapacity",
            {
                "role": "developer",
                "period": "2027-03",
                "amount": "10",
                "unit": "fte",
                "time_off": "1",
            },
        )
        await accepted(
            nc,
            "AssignDemand",
            {
                "role": "developer",
                "project_id": "P-1",
                "period": "2027-03",
                "amount": "6",
            },
        )
        assert await settle(nc, event_log) == []
        await accepted(
            nc,
            "AssignDemand",
            {
                "role": "developer",
                "project_id": "P-2",
                "period": "2027-03",
                "amount": "4",
            },
        )
        assert await settle(nc, event_log) == ["RoleOverAllocated"]
        await accepted(
            nc,
            "AssignDemand",
            {
                "role": "developer",
                "project_id": "P-2",
                "period": "2027-03",
                "amount": "2",
            },
        )
        assert await settle(nc, event_log) == ["RoleOverAllocated", "RoleOverAllocationCleared"]
        cells = json.loads(await query(nc, "ledger", "capacity", {}))
        assert cells[0]["net_capacity"] == "9" and cells[0]["demand"] == "8"
        plan = json.loads(await query(nc, "ledger", "staffing", {"priority": ["P-2", "P-1"]}))
        assert plan["staffed"] == ["P-2", "P-1"]
    assert SUBJECTS.events("capacity", "developer") == "portfolio.events.capacity.developer"
