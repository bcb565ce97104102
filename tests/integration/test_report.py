"""Reports through NATS: the reporting service reads the log itself, and a report at any
point in time equals the fold of the log cut at the same position."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from contracts.base import RecordedEvent
from services.reporting import documents
from services.reporting.facts import Cut
from services.reporting.report import fold
from shared.eventlog import EventLog
from tests.integration.helpers import (
    SUBJECTS,
    accepted,
    budget_pool,
    caught_up,
    project_risk,
    proposal,
    query,
    running,
)

NOW = datetime(2030, 1, 1, tzinfo=UTC)


async def report(nc: Client, body: Any) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(await query(nc, "reporting", "report", body))
    return answer


async def control(nc: Client, name: str, body: Any) -> dict[str, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    msg = await nc.request(SUBJECTS.control("reporting", name), data, timeout=10)
    answer: dict[str, Any] = json.loads(msg.data)
    return answer


async def whole_log(event_log: EventLog) -> list[RecordedEvent]:
    return [e async for e in event_log.read()]


def comparable(found: dict[str, Any]) -> dict[str, Any]:
    """A report without the moment it was generated (the service's clock)."""
    return {k: v for k, v in json.loads(json.dumps(found)).items() if k != "generated_at"}


async def first_batch(nc: Client) -> None:
    await accepted(
        nc,
        "DefineObjective",
        {"objective_id": "OBJ-A", "name": "Growth", "owner": "ceo", "weight": "60"},
    )
    serving = {"objectives": [{"objective_id": "OBJ-A", "contribution": 3}]}
    await accepted(nc, "ProposeProject", proposal("P-1", **serving))
    await accepted(nc, "ProposeProject", proposal("P-2"))
    await accepted(nc, "SubmitProjectForReview", {"project_id": "P-1"})
    await accepted(nc, "ApproveProject", {"project_id": "P-1", "rationale": "board, March"})


async def second_batch(nc: Client) -> None:
    await accepted(nc, "ProposeProject", proposal("P-3"))
    await accepted(nc, "StartProject", {"project_id": "P-1"})
    await accepted(nc, "DefineBudgetPool", budget_pool())
    await accepted(
        nc,
        "AllocateBudget",
        {"pool_id": "CAPEX-27", "project_id": "P-1", "amount": "250000", "rationale": "tranche"},
    )
    await accepted(nc, "IdentifyRisk", project_risk("R-1", "P-1"))
    # A late-arriving fact: recorded now, it happened (business time) last year.
    await accepted(nc, "ProposeProject", proposal("P-OLD", occurred_at="2026-01-15T10:00:00Z"))


async def test_time_travel_equals_the_fold_cut_at_the_same_position(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "reporting", nats_url, tmp_path),
    ):
        await first_batch(nc)
        await asyncio.sleep(0.05)
        between = datetime.now(UTC)
        await asyncio.sleep(0.05)
        await second_batch(nc)
        events = await whole_log(event_log)

        # As recorded by `between`: the first batch only, as a fold cut there computes it.
        then = await report(nc, {"as_of": between.isoformat()})
        position = then["cut"]["position"]
        assert position == max(e.position for e in events if e.envelope.recorded_at <= between)
        assert position == 5
        expected = documents.portfolio(fold(events[:position], Cut(as_of=between)), NOW)
        assert comparable(then) == comparable(expected)
        assert then["projects"]["total"] == 2 and then["budget"]["pools"] == []
        assert then["changes"]["since"] == {"kind": "start"}

        # Now: everything, the same as folding the whole log.
        now = await report(nc, {})
        assert comparable(now) == comparable(documents.portfolio(fold(events), NOW))
        assert now["projects"]["by_status"]["in_progress"] == 1
        assert now["budget"]["pools"][0]["allocated"] == "250000.00"
        assert now["risks"]["heat_map"][3][3] == 1
        assert now["ranking"]["source"] == "computed"  # prioritization is not running

        # By business time: only what had occurred by mid-2026, the late fact.
        moment = datetime(2026, 6, 1, tzinfo=UTC)
        late = await report(nc, {"occurred_as_of": moment.isoformat()})
        assert late["cut"]["events"] == 1 and late["projects"]["total"] == 1
        local = fold(events, Cut(occurred_as_of=moment))
        assert {k: v for k, v in comparable(late).items() if k != "changes"} == {
            k: v for k, v in comparable(documents.portfolio(local, NOW)).items() if k != "changes"
        }

        # What changed between the two points.
        diff = await report(nc, {"diff_from": between.isoformat(), "diff_to": _now()})
        changed = diff["changes"]
        assert changed["new_proposals"] == ["P-3", "P-OLD"]
        assert changed["status_changes"] == [
            {"project_id": "P-1", "from": "approved", "to": "in_progress"}
        ]
        assert changed["new_risks"] == ["R-1"]
        assert {x["figure"] for x in changed["budget_changes"]} >= {"amount", "allocated"}
        # Every status step in between, in log order, from the events themselves.
        expected_steps = [
            (e.envelope.aggregate_id, e.position)
            for e in events
            if e.position > position
            and e.envelope.aggregate_type == "project"
            and e.envelope.event_type != "ProjectEstimateUpdated"
            and e.envelope.event_type.startswith("Project")
        ]
        assert [(x["project_id"], x["position"]) for x in changed["transitions"]] == expected_steps
        assert changed["counts"]["transitions"] == len(expected_steps)

        # A project's scorecard, as of then and now.
        card = await report(nc, {"project_id": "P-1", "as_of": between.isoformat()})
        assert card["project"]["status"] == "approved" and card["risks"]["items"] == []
        card = await report(nc, {"project_id": "P-1"})
        assert card["project"]["status"] == "in_progress"
        assert [x["risk_id"] for x in card["risks"]["items"]] == ["R-1"]
        assert "ProjectApproved: board, March" in [h["what"] for h in card["audit"]]


async def test_bad_questions_get_an_error_never_a_trace(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "reporting", nats_url, tmp_path),
    ):
        empty = await report(nc, {"as_of": _now()})
        assert empty["code"] == "bad_time" and "empty" in empty["error"]
        assert "error" not in await report(nc, {})  # an empty portfolio is still a report

        await first_batch(nc)
        future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        cases = {
            "future": {"as_of": future},
            "before the first event": {"as_of": "2000-01-01T00:00:00Z"},
            "nothing had occurred": {"occurred_as_of": "2000-01-01T00:00:00Z"},
            "is after TO": {"diff_from": _now(), "diff_to": "2020-01-01T00:00:00Z"},
            "unknown project NOPE": {"project_id": "NOPE"},
            "invalid report query": {"as_of": "last tuesday"},
            "diff_to": {"diff_from": _now()},
        }
        for expected, body in cases.items():
            answer = await report(nc, body)
            assert expected in json.dumps(answer), (expected, answer)
            assert answer["code"] in {"bad_time", "not_found", "invalid_query"}
        malformed = json.loads(await query(nc, "reporting", "report", None) or b"{}")
        assert "error" not in malformed  # an empty body asks for the report now
        broken = await nc.request(SUBJECTS.query("reporting", "report"), b"{oops", timeout=10)
        assert json.loads(broken.data)["code"] == "invalid_query"

        # The audit query keeps working beside the reports.
        await caught_up(nc, "reporting", await event_log.last_position())
        audit = json.loads(await query(nc, "reporting", "audit", {"aggregate_id": "P-1"}))
        assert [e["event_type"] for e in audit["entries"]][-1] == "ProjectApproved"


async def test_publish_puts_the_report_on_the_record(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "reporting", nats_url, tmp_path),
    ):
        nothing = await control(nc, "publish", {"rationale": "board pack"})
        assert nothing["code"] == "empty"
        await first_batch(nc)
        refused = await control(nc, "publish", {"rationale": "x"})
        assert refused["code"] == "invalid_query"

        done = await control(nc, "publish", {"rationale": "March board pack", "actor": "cfo"})
        position = done["appended"]["position"]
        assert done["report"]["changes"]["since"]["kind"] == "start"  # the log is a day old
        recorded = await event_log.get(position)
        assert recorded.envelope.event_type == "PortfolioReportPublished"
        assert recorded.envelope.actor == "cfo"
        summary = recorded.envelope.payload["summary"]
        assert summary["projects"] == {"P-1": "approved", "P-2": "proposed"}
        again = await control(nc, "publish", {"rationale": "March board pack", "actor": "cfo"})
        assert again["appended"]["position"] == position  # the same publication, once

        await accepted(nc, "ProposeProject", proposal("P-4"))
        after = await report(nc, {})
        assert after["changes"]["since"]["kind"] == "published"
        assert after["changes"]["since"]["position"] == position
        assert after["changes"]["new_proposals"] == ["P-4"]
        await caught_up(nc, "reporting", await event_log.last_position())
        audit = json.loads(
            await query(nc, "reporting", "audit", {"event_type": "PortfolioReportPublished"})
        )
        assert [e["position"] for e in audit["entries"]] == [position]


async def test_scheduled_publication_only_when_something_changed(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "reporting", nats_url, tmp_path, report_publish_every_seconds=0.2),
    ):
        await accepted(nc, "ProposeProject", proposal("P-1"))
        first = await _publications(event_log, 1)
        await asyncio.sleep(0.7)  # three ticks with nothing new: nothing published
        assert len(await _publications(event_log, 1)) == 1
        await accepted(nc, "ProposeProject", proposal("P-2"))
        found = await _publications(event_log, 2)
        assert found[0] == first[0]
        payload = (await event_log.get(found[1])).envelope.payload
        assert payload["scheduled"] is True and set(payload["summary"]["projects"]) == {
            "P-1",
            "P-2",
        }


async def _publications(event_log: EventLog, count: int) -> list[int]:
    for _ in range(100):
        found = [
            e.position
            for e in await whole_log(event_log)
            if e.envelope.event_type == "PortfolioReportPublished"
        ]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} publications")


def _now() -> str:
    return datetime.now(UTC).isoformat()
