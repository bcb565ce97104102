"""Closure through NATS: realised benefits and lessons learned go through intake (bad ones
refused, nothing appended), the report shows the improvement figures as the fold of the
log computes them, and the lessons query searches the lessons."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from contracts.base import CommandRejected
from services.reporting.improvement import figures as improvement_of
from services.reporting.report import fold
from shared.eventlog import EventLog
from tests.integration.helpers import accepted, proposal, query, running, send

NOW = datetime(2030, 1, 1, tzinfo=UTC)


async def deliver(nc: Client) -> None:
    """W: proposed (100,000; benefits 40,000 in 2027 and 2028), started, three months of
    actual costs (120,000), progress in February and March, completed."""
    benefits = [{"year": 2027, "amount": "40000"}, {"year": 2028, "amount": "40000"}]
    await accepted(
        nc,
        "ProposeProject",
        proposal(
            "W",
            capex="80000",
            opex="20000",
            planned_start="2027-01-01",
            planned_end="2027-03-31",
            expected_benefits=benefits,
        ),
    )
    await accepted(nc, "SubmitProjectForReview", {"project_id": "W"})
    await accepted(nc, "ApproveProject", {"project_id": "W", "rationale": "pays back"})
    await accepted(nc, "StartProject", {"project_id": "W", "started_on": "2027-01-01"})
    pool = {
        "pool_id": "IT-27",
        "name": "IT 2027",
        "fiscal_year": 2027,
        "category": "capex",
        "amount": "1000000",
        "currency": "EUR",
        "owner": "cfo",
    }
    await accepted(nc, "DefineBudgetPool", pool)
    allocation = {"pool_id": "IT-27", "project_id": "W", "amount": "100000", "rationale": "case"}
    await accepted(nc, "AllocateBudget", allocation)
    baseline = {
        "project_id": "W",
        "budget_at_completion": "100000",
        "planned_value_by_period": [
            {"period": "2027-01", "planned_value": "30000"},
            {"period": "2027-02", "planned_value": "60000"},
            {"period": "2027-03", "planned_value": "100000"},
        ],
    }
    await accepted(nc, "SetProjectBaseline", baseline)
    for period, amount, percent in (("2027-01", 40000, None), ("2027-02", 40000, 50)):
        actual = {"pool_id": "IT-27", "project_id": "W", "amount": str(amount)}
        await accepted(nc, "RecordActualCost", actual | {"external_ref": period, "period": period})
        if percent is not None:
            progress = {"project_id": "W", "period": period, "percent_complete": percent}
            await accepted(nc, "ReportProgress", progress)
    actual = {"pool_id": "IT-27", "project_id": "W", "amount": "40000", "external_ref": "M3"}
    await accepted(nc, "RecordActualCost", actual | {"period": "2027-03"})
    await accepted(nc, "CompleteProject", {"project_id": "W", "completed_on": "2027-03-31"})


async def refused(nc: Client, command: str, body: dict[str, Any]) -> CommandRejected:
    reply = await send(nc, command, body)
    assert isinstance(reply, CommandRejected), (command, body, reply)
    return reply


async def test_closure_records_and_what_the_report_makes_of_them(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "reporting", nats_url, tmp_path),
    ):
        await accepted(nc, "ProposeProject", proposal("OPEN"))
        early = await refused(
            nc, "RecordLessonLearned", {"project_id": "OPEN", "title": "t", "description": "d"}
        )
        assert early.error.code == "illegal_transition"
        await deliver(nc)

        benefit = {"project_id": "W", "year": 2027, "amount": "30000", "external_ref": "FIN-1"}
        await accepted(nc, "RecordRealisedBenefit", benefit)
        lesson = {
            "project_id": "W",
            "title": "Order the hardware early",
            "description": "Switches took ten weeks to arrive.",
            "recommendation": "Order long-lead items at approval.",
            "category": "procurement",
            "actor": "w-lead",
        }
        await accepted(nc, "RecordLessonLearned", lesson)
        before = await event_log.last_position()

        # Bad input: each a clear error, nothing appended.
        bad: list[tuple[str, dict[str, Any], str, str]] = [
            ("RecordRealisedBenefit", benefit | {"project_id": "NOPE"}, "not_found", "project_id"),
            ("RecordRealisedBenefit", benefit | {"project_id": "OPEN"}, "illegal_transition", ""),
            ("RecordRealisedBenefit", benefit | {"amount": "-5"}, "validation_failed", "amount"),
            ("RecordRealisedBenefit", benefit | {"external_ref": "X"}, "already_exists", "year"),
            ("RecordRealisedBenefit", benefit | {"year": 2028}, "already_exists", "external_ref"),
            (
                "RecordRealisedBenefit",
                benefit | {"year": 2028, "external_ref": "Y", "replace": True},
                "not_found",
                "replace",
            ),
            ("RecordLessonLearned", lesson | {"title": "x" * 201}, "validation_failed", "title"),
            ("RecordLessonLearned", lesson | {"lesson_id": "L1"}, "already_exists", "lesson_id"),
            ("RecordLessonLearned", lesson | {"project_id": "NOPE"}, "not_found", "project_id"),
        ]
        for command, body, code, field in bad:
            reply = await refused(nc, command, body)
            assert reply.error.code == code, (command, body, reply.error)
            if field:
                assert field in [d.field for d in reply.error.details], reply.error
        assert await event_log.last_position() == before

        # Replacing the year's figure explicitly is accepted.
        replaced = benefit | {"amount": "35000", "external_ref": "FIN-2", "replace": True}
        await accepted(nc, "RecordRealisedBenefit", replaced)

        events = [e async for e in event_log.read()]
        answer = json.loads(await query(nc, "reporting", "report", {}))
        assert answer["improvement"] == improvement_of(fold(events))
        improvement = answer["improvement"]
        [row] = improvement["estimate_accuracy"]["projects"]
        assert (row["planned_cost"], row["actual_cost"], row["cost_variance_percent"]) == (
            "100000.00",
            "120000.00",
            "20.0",
        )
        assert (row["planned_days"], row["actual_days"]) == (90, 90)
        [w] = improvement["benefits"]["projects"]
        assert (w["realised_total"], w["expected_to_date"], w["realisation_percent"]) == (
            "35000.00",
            "40000.00",
            "87.5",
        )
        [series] = improvement["eac_convergence"]["projects"]
        # February: EV 50,000, AC 80,000: EAC 160,000, 33.3% above the final 120,000.
        assert [(p["period"], p["eac"]) for p in series["series"]] == [("2027-02", "160000.00")]
        assert [e["error_percent"] for e in series["errors"]] == [None, None, "33.3"]

        card = json.loads(await query(nc, "reporting", "report", {"project_id": "W"}))
        assert card["improvement"]["lessons"]["items"][0]["title"] == lesson["title"]

        # The lessons query.
        async def lessons(body: Any) -> dict[str, Any]:
            found: dict[str, Any] = json.loads(await query(nc, "reporting", "lessons", body))
            return found

        found = await lessons({"search": "hardware WEEKS"})
        assert found["total"] == 1
        [entry] = found["lessons"]
        assert (entry["project_id"], entry["lesson_id"], entry["actor"]) == ("W", "L1", "w-lead")
        assert (await lessons({"search": "hardware budget"}))["total"] == 0
        assert (await lessons({"category": "PROCUREMENT", "project_id": "W"}))["total"] == 1
        assert (await lessons({"project_id": "OPEN"}))["total"] == 0
        assert (await lessons(None))["total"] == 1
        unknown = await lessons({"project_id": "NOPE"})
        assert unknown["code"] == "not_found" and "unknown project NOPE" in unknown["error"]
        for body in ({"limit": 0}, {"search": "x" * 201}, {"colour": "red"}):
            assert (await lessons(body))["code"] == "invalid_query", body
