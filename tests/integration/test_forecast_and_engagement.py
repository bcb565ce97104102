"""The portfolio forecast and stakeholder engagement end to end, on a real nats-server with
intake, reporting and notify (and the database of the run): the forecast query from the
facts in the log (reproducible by seed, filtered, refusing bad questions), the report's
forecast and stakeholder sections, and a published report sent to the communication
plans' recipients (signed webhook, Slack, Teams, SMTP) with every delivery recorded, a
dead letter with its reason, frequencies honoured, and nothing sent twice across a
restart of notify; an alert digest plan gets the alerts open at each publication, with
those raised and cleared since its previous digest, and none for a report the previous
version of notify kept (a data folder upgraded)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from email import message_from_bytes
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nats.aio.client import Client

from contracts import risks as r
from contracts.base import CommandRejected
from shared.decisions import append_decision
from shared.eventlog import EventLog
from tests.integration.gateway_support import TOKEN, bearer, gateway, tokens
from tests.integration.helpers import (
    SUBJECTS,
    accepted,
    budget_pool,
    proposal,
    query,
    running,
    send,
)
from tests.integration.test_notify import Mailbox, Receiver, receiver, smtp, until
from tests.previous_notify import notify_as_the_previous_version

__all__ = ["receiver", "smtp"]  # the fixtures, used by name

SECRET = "report-secret"
BASE = "https://portfolio.example/dash"


async def forecast(nc: Client, body: Any) -> dict[str, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    msg = await nc.request(SUBJECTS.query("reporting", "forecast"), data, timeout=60)
    found: dict[str, Any] = json.loads(msg.data)
    return found


async def publish(nc: Client, rationale: str) -> dict[str, Any]:
    body = json.dumps({"rationale": rationale, "actor": "pmo"}).encode()
    msg = await nc.request(SUBJECTS.control("reporting", "publish"), body, timeout=60)
    found: dict[str, Any] = json.loads(msg.data)
    assert "error" not in found, found
    return found


async def alert(event_log: EventLog, alert_id: str, project_id: str, open_: bool) -> None:
    """An alert on a project raised (or cleared) as the risk service records it."""
    common = {
        "alert_id": alert_id,
        "rule_id": "cpi-low",
        "metric": r.Metric.CPI,
        "severity": r.Severity.CRITICAL,
        "subject_id": project_id,
        "clear_at": 0.95,
    }
    event: r.AlertRaised | r.AlertCleared = (
        r.AlertRaised(
            **common,
            comparison=r.Comparison.LT,
            scope=r.Scope.PROJECT,
            project_id=project_id,
            value=0.7,
            threshold=0.9,
            audit_link="",
        )
        if open_
        else r.AlertCleared(**common, rule_revision=1, value=0.99, reason="value passed")
    )
    identity = f"{alert_id}/{'raised' if open_ else 'cleared'}"
    await append_decision(
        event_log, (r.ALERT, alert_id), event, identity, None, actor="risk", source="risk"
    )


async def portfolio(nc: Client) -> None:
    """Two committed projects of programme PRG-1 (one with progress), one in the pipeline,
    a pool funding both, an objective, and risks with a range and a delay."""
    await accepted(
        nc,
        "DefineObjective",
        {"objective_id": "OBJ-1", "name": "Grow", "owner": "ceo", "weight": "10"},
    )
    served = {"objectives": [{"objective_id": "OBJ-1", "contribution": 3}]}
    for pid in ("P-1", "P-2"):
        await accepted(nc, "ProposeProject", proposal(pid, programme="PRG-1", **served))
        await accepted(nc, "SubmitProjectForReview", {"project_id": pid})
        await accepted(nc, "ApproveProject", {"project_id": pid, "rationale": "board"})
    await accepted(nc, "ProposeProject", proposal("P-3"))
    await accepted(nc, "StartProject", {"project_id": "P-1", "started_on": "2027-01-04"})
    await accepted(nc, "DefineBudgetPool", budget_pool("CAPEX-27", amount="400000"))
    for pid in ("P-1", "P-2"):
        await accepted(
            nc,
            "AllocateBudget",
            {"pool_id": "CAPEX-27", "project_id": pid, "amount": "125000", "rationale": "tranche"},
        )
    await accepted(
        nc,
        "SetProjectBaseline",
        {
            "project_id": "P-1",
            "budget_at_completion": "125000",
            "planned_value_by_period": [
                {"period": "2027-01", "planned_value": "40000"},
                {"period": "2027-02", "planned_value": "80000"},
                {"period": "2027-06", "planned_value": "125000"},
            ],
        },
    )
    await accepted(
        nc, "ReportProgress", {"project_id": "P-1", "period": "2027-02", "percent_complete": "50"}
    )
    await accepted(
        nc,
        "RecordActualCost",
        {
            "pool_id": "CAPEX-27",
            "project_id": "P-1",
            "amount": "70000",
            "external_ref": "INV-1",
            "period": "2027-02",
        },
    )
    await accepted(
        nc,
        "IdentifyRisk",
        {
            "risk_id": "R-1",
            "project_id": "P-1",
            "title": "Vendor late",
            "owner": "pmo",
            "probability": 3,
            "impact": 4,
            "impact_range": {"minimum": "10000", "most_likely": "20000", "maximum": "60000"},
            "delay_days": 30,
        },
    )
    await accepted(
        nc,
        "IdentifyRisk",
        {
            "risk_id": "R-2",
            "project_id": "P-2",
            "title": "Licence discount",
            "kind": "opportunity",
            "owner": "pmo",
            "probability": 2,
            "impact": 2,
            "monetary_impact": "5000",
        },
    )


async def test_the_forecast_query_answers_from_the_log_reproducibly(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "reporting", nats_url, tmp_path),
    ):
        # An empty log: a forecast of nothing, not a failure.
        empty = await forecast(nc, {"iterations": 100})
        assert empty["scope"]["projects"] == 0 and empty["total_cost"]["p50"] == "0.00"
        await portfolio(nc)

        first = await forecast(nc, {"seed": 5, "iterations": 4000})
        again = await forecast(nc, {"seed": 5, "iterations": 4000})
        assert first.pop("generated_at") != again.pop("generated_at")
        assert first == again
        other = await forecast(nc, {"seed": 6, "iterations": 4000})
        assert other["total_cost"] != first["total_cost"]
        assert (first["seed"], first["iterations"]) == (5, 4000)
        assert first["scope"]["projects"] == 2 and first["scope"]["risks"] == 2
        total = [float(first["total_cost"][k]) for k in ("p10", "p50", "p80", "p90")]
        assert total == sorted(total) and total[0] < total[-1]
        # 50% x the range's mean 30,000 = 15,000 (the opportunity is not in it).
        assert first["emv_reserve"] == "15000.00"
        by_project = {x["project_id"]: x for x in first["projects"]}
        assert by_project["P-1"]["basis"] == "earned_value"
        assert by_project["P-2"]["basis"] == "default"
        # R-1 can delay P-1 by 30 days: its P90 finish lies after its planned end.
        assert by_project["P-1"]["finish_p90"] > by_project["P-1"]["planned_end"]
        budgets = {x["id"]: x for x in first["budgets"]}
        assert (
            budgets["CAPEX-27"]["kind"] == "pool" and budgets["CAPEX-27"]["amount"] == "400000.00"
        )
        assert 0 <= budgets["CAPEX-27"]["probability_within"] <= 1
        assert budgets["OBJ-1"]["amount"] == "250000.00"  # both allocations serve it
        assert [x["programme_id"] for x in first["programmes"]] == ["PRG-1"]

        wider = await forecast(nc, {"iterations": 500, "include_pipeline": True})
        assert wider["scope"]["projects"] == 3
        one = await forecast(nc, {"iterations": 500, "project_id": "P-2"})
        assert [x["project_id"] for x in one["projects"]] == ["P-2"]
        assert one["budgets"][0]["amount"] == "125000.00"  # what the pool gave P-2
        programme = await forecast(nc, {"iterations": 500, "programme_id": "PRG-1"})
        assert programme["scope"]["projects"] == 2

        # Bad questions: answered with a code, nothing breaks.
        for body, code in (
            (b"{not json", "invalid_query"),
            (b"\xff\xfe", "invalid_query"),
            ({"iterations": 5}, "invalid_query"),
            ({"iterations": "many"}, "invalid_query"),
            ({"seed": -1}, "invalid_query"),
            ({"seed": 10**40}, "invalid_query"),
            ({"project_id": "P-1", "programme_id": "PRG-1"}, "invalid_query"),
            ({"project_id": "bad id>"}, "invalid_query"),
            ({"project_id": "NOPE"}, "not_found"),
            ({"programme_id": "NOPE"}, "not_found"),
            ({"as_of": "2999-01-01T00:00:00Z"}, "bad_time"),
            ({"unknown": 1}, "invalid_query"),
        ):
            refused = await forecast(nc, body)
            assert refused.get("code") == code, (body, refused)
        assert (await forecast(nc, {"iterations": 100}))["scope"]["projects"] == 2

        # A range that is not one, or a delay out of bounds: refused with the field.
        base: dict[str, Any] = {"risk_id": "R-9", "project_id": "P-1", "title": "x"}
        base |= {"owner": "pmo", "probability": 2, "impact": 2}
        for bad, where in (
            (
                {"impact_range": {"minimum": "9", "most_likely": "5", "maximum": "1"}},
                "impact_range",
            ),
            (
                {"impact_range": {"minimum": "1", "most_likely": "2", "maximum": "NaN"}},
                "impact_range",
            ),
            (
                {
                    "impact_range": {"minimum": "1", "most_likely": "2", "maximum": "3"},
                    "monetary_impact": "9",
                },
                "",
            ),
            ({"delay_days": -3}, "delay_days"),
            ({"delay_days": "30"}, "delay_days"),
        ):
            answer = await send(nc, "IdentifyRisk", base | bad)
            assert isinstance(answer, CommandRejected), bad
            assert any(where in f.field for f in answer.error.details), answer

        report = json.loads(await query(nc, "reporting", "report", {}))
        assert report["forecast"]["seed"] == 0 and report["forecast"]["iterations"] == 1000
        assert report["forecast"]["scope"]["projects"] == 2


async def test_published_reports_reach_the_plans_recipients_once_each(
    nc: Client,
    nats_url: str,
    tmp_path: Path,
    event_log: EventLog,
    receiver: Receiver,
    smtp: tuple[Mailbox, int],
) -> None:
    box, smtp_port = smtp
    notify = {
        "dashboard_base_url": BASE,
        "notify_webhook_secrets": {"reports": SECRET},
        "notify_max_attempts": 3,
        "notify_backoff_seconds": 0.05,
        "notify_backoff_max_seconds": 0.1,
        "smtp_port": smtp_port,
    }
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "reporting", nats_url, tmp_path),
    ):
        async with running(nc, "notify", nats_url, tmp_path, **notify):
            await portfolio(nc)
            await accepted(
                nc, "RegisterStakeholder", {"stakeholder_id": "S-1", "name": "Ana", "role": "CFO"}
            )
            await accepted(
                nc, "RegisterStakeholder", {"stakeholder_id": "S-2", "name": "Bo", "role": "ops"}
            )
            await accepted(
                nc,
                "AssessStakeholder",
                {
                    "stakeholder_id": "S-1",
                    "influence": 5,
                    "interest": 5,
                    "current_engagement": "neutral",
                    "desired_engagement": "supportive",
                    "cares_about": [{"kind": "project", "id": "P-1"}],
                },
            )
            await accepted(
                nc,
                "GiveFeedback",
                {
                    "stakeholder_id": "S-1",
                    "feedback_id": "F-1",
                    "concerns": {"kind": "project", "id": "P-1"},
                    "text": "Why is P-1 late?",
                },
            )
            plans = {
                ("S-1", "mail"): {"channel": "email", "target": "ana@example.org"},
                ("S-1", "hook"): {"channel": "webhook", "target": f"{receiver.url}/hook"},
                ("S-1", "slack"): {"channel": "slack", "target": f"{receiver.url}/slack"},
                ("S-2", "teams"): {
                    "channel": "teams",
                    "target": f"{receiver.url}/teams",
                    "frequency": "daily",
                },
                ("S-2", "gone"): {"channel": "slack", "target": f"{receiver.url}/gone"},
                ("S-2", "digest"): {
                    "channel": "slack",
                    "target": f"{receiver.url}/digest",
                    "content": "alert_digest",
                },
            }
            receiver.status["/gone"] = 410
            await alert(event_log, "AL-1", "P-1", open_=True)
            for (sid, plan_id), body in plans.items():
                await accepted(
                    nc,
                    "PlanCommunication",
                    {
                        "stakeholder_id": sid,
                        "plan_id": plan_id,
                        "content": "report",
                        "frequency": "on_publish",
                        **body,
                    },
                )
            await publish(nc, "March board pack")
            await until(
                lambda: (
                    len(receiver.on("/hook")) == 1
                    and len(receiver.on("/slack")) == 1
                    and len(receiver.on("/teams")) == 1
                    and len(receiver.on("/digest")) == 1
                    and len(box.messages) == 1
                )
            )
            found: list[dict[str, Any]] = []

            async def settled(count: int) -> bool:
                nonlocal found
                found = (await outcomes_all(nc))["report_deliveries"]
                return len(found) >= count

            await wait_async(lambda: settled(6))
            by_plan = {(x["stakeholder_id"], x["plan_id"]): x for x in found}
            assert set(by_plan) == set(plans)
            assert by_plan[("S-2", "gone")]["outcome"] == "dead_letter"
            assert "410" in by_plan[("S-2", "gone")]["reason"]
            assert by_plan[("S-1", "mail")]["status"] == 250
            digest = json.loads(receiver.on("/digest")[0][1])  # the alerts, not the report
            assert digest["text"].startswith("Alert digest (") and "1 open alerts" in digest["text"]
            assert "AL-1 (critical, P-1)" in json.dumps(digest["blocks"])
            assert "March board pack" not in json.dumps(digest)

            headers, raw = receiver.on("/hook")[0]
            expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
            assert hmac.compare_digest(headers["X-Hub-Signature-256"], expected)
            body = json.loads(raw)
            assert body["event"] == "PortfolioReportPublished"
            assert body["report"]["rationale"] == "March board pack"
            assert body["delivery_id"] == headers["X-Portfolio-Delivery"]
            assert body["link"] == f"{BASE}/overview"
            card = json.loads(receiver.on("/teams")[0][1])
            assert card["attachments"][0]["content"]["type"] == "AdaptiveCard"
            assert "March board pack" in json.loads(receiver.on("/slack")[0][1])["text"]
            mail = message_from_bytes(box.messages[0])
            assert "Portfolio report" in mail["Subject"] and mail["To"] == "ana@example.org"

            # The outcomes are in the log, under delivery/report-<stakeholder>.
            recorded = [
                e.envelope
                async for e in event_log.read(1)
                if e.envelope.event_type in ("ReportDelivered", "ReportDeadLettered")
            ]
            assert [e.aggregate_type for e in recorded] == ["delivery"] * 6
            assert (
                sorted(e.aggregate_id for e in recorded) == ["report-S-1"] * 3 + ["report-S-2"] * 3
            )

            # A second publication: on_publish plans get it, the daily one does not.
            await accepted(
                nc,
                "RespondToFeedback",
                {"stakeholder_id": "S-1", "feedback_id": "F-1", "response": "Vendor"},
            )
            await alert(event_log, "AL-1", "P-1", open_=False)
            await alert(event_log, "AL-2", "P-2", open_=True)
            await publish(nc, "Extra board pack")
            await until(lambda: len(receiver.on("/hook")) == 2 and len(box.messages) == 2)
            await wait_async(lambda: settled(11))
            assert len(receiver.on("/teams")) == 1
            second = json.dumps(json.loads(receiver.on("/digest")[1][1])["blocks"])
            assert "raised since (1)*\\nAL-2 (critical, P-2)" in second
            assert "cleared since (1)*\\nAL-1 (critical, P-1)" in second

        # notify restarts: nothing is sent again; the next report goes out once.
        async with running(nc, "notify", nats_url, tmp_path, **notify):
            await asyncio.sleep(1.0)
            assert len(receiver.on("/hook")) == 2 and len(box.messages) == 2
            await accepted(nc, "StopCommunication", {"stakeholder_id": "S-1", "plan_id": "slack"})
            await publish(nc, "April board pack")
            await until(lambda: len(receiver.on("/hook")) == 3 and len(box.messages) == 3)
            await wait_async(lambda: settled(15))
            assert len(receiver.on("/slack")) == 2  # stopped before the third report
            assert (await outcomes_all(nc))["reports_owed"] == 0

        report = json.loads(await query(nc, "reporting", "report", {}))
        people = report["stakeholders"]
        assert people["total"] == 2 and people["open_feedback"] == 0
        assert people["items"][0]["quadrant"] == "manage closely"


async def outcomes_all(nc: Client) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(await query(nc, "notify", "deliveries", {"limit": 1000}))
    return found


async def wait_async(check: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition never held")
        await asyncio.sleep(0.1)


async def test_the_dashboard_and_the_gateway_show_the_forecast_and_the_stakeholders(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "reporting", nats_url, tmp_path, dashboard_port=0),
        gateway(nats_url, http_tokens=tokens(tracker=TOKEN)) as api,
        aiohttp.ClientSession() as http,
    ):
        await portfolio(nc)
        name = "<script>x()</script> & co"
        await accepted(
            nc, "RegisterStakeholder", {"stakeholder_id": "S-1", "name": name, "role": "CFO"}
        )
        await accepted(
            nc,
            "AssessStakeholder",
            {
                "stakeholder_id": "S-1",
                "influence": 2,
                "interest": 5,
                "current_engagement": "resistant",
                "desired_engagement": "supportive",
            },
        )
        await accepted(
            nc,
            "GiveFeedback",
            {
                "stakeholder_id": "S-1",
                "feedback_id": "F-1",
                "concerns": {"kind": "programme", "id": "PRG-1"},
                "text": "Too slow <b>really</b>",
            },
        )
        base = json.loads(await query(nc, "reporting", "dashboard"))["url"].rstrip("/")
        async with http.get(f"{base}/forecast") as response:
            assert response.status == 200
            page = await response.text()
        assert 'id="forecast-s-curve"' in page and page.count('class="p-line"') == 4
        assert "CAPEX-27" in page and "reserve needed at P80" in page and "P-1" in page
        async with http.get(f"{base}/stakeholders") as response:
            assert response.status == 200
            page = await response.text()
        assert 'id="stakeholder-grid"' in page and page.count('class="stakeholder"') == 1
        assert "keep informed" in page and "Too slow &lt;b&gt;really&lt;/b&gt;" in page
        assert "<script>x()" not in page and "<b>really" not in page
        async with http.get(f"{base}/fragment/stakeholders") as response:
            assert response.status == 200 and "<html" not in await response.text()

        # The gateway: the same answer as the query, rendered on request; bad input is a 400.
        headers = bearer(TOKEN)
        async with http.get(f"{api}/v1/forecast?seed=3&iterations=500", headers=headers) as got:
            assert got.status == 200
            answer = await got.json()
        assert (answer["seed"], answer["iterations"]) == (3, 500)
        direct = await forecast(nc, {"seed": 3, "iterations": 500})
        assert answer["total_cost"] == direct["total_cost"]
        async with http.get(f"{api}/v1/forecast?format=md&project=P-1", headers=headers) as got:
            assert got.status == 200 and "Portfolio forecast" in await got.text()
        for bad, status in (
            ("iterations=abc", 400),
            ("iterations=5", 400),
            ("seed=-1", 400),
            ("format=pdf", 400),
            ("project=NOPE", 404),
            ("project=P-1&programme=PRG-1", 400),
        ):
            async with http.get(f"{api}/v1/forecast?{bad}", headers=headers) as got:
                assert got.status == status, (bad, await got.text())
        async with http.get(f"{api}/v1/forecast") as got:
            assert got.status == 401


async def test_reports_kept_by_the_previous_notify_bring_no_digest_after_the_upgrade(
    nc: Client,
    nats_url: str,
    tmp_path: Path,
    event_log: EventLog,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A data folder where notify, as the version before alert digests were sent, kept a
    report (its digest naming no alerts) for an alert digest plan: the upgraded notify
    sends that plan nothing for it, and the report plan nothing again; the next
    publication brings the plan its first digest, which names the open alert and claims
    nothing raised since."""
    settings = {"dashboard_base_url": BASE}
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "reporting", nats_url, tmp_path),
    ):
        await accepted(
            nc, "RegisterStakeholder", {"stakeholder_id": "S-1", "name": "Ana", "role": "CFO"}
        )
        for plan_id, content in (("board", "report"), ("digest", "alert_digest")):
            await accepted(
                nc,
                "PlanCommunication",
                {
                    "stakeholder_id": "S-1",
                    "plan_id": plan_id,
                    "content": content,
                    "frequency": "on_publish",
                    "channel": "slack",
                    "target": f"{receiver.url}/{plan_id}",
                },
            )
        await alert(event_log, "AL-1", "P-1", open_=True)
        with monkeypatch.context() as previous:
            notify_as_the_previous_version(previous)
            async with running(nc, "notify", nats_url, tmp_path, **settings):
                await publish(nc, "January board pack")
                await until(lambda: len(receiver.on("/board")) == 1)
                await wait_async(lambda: delivered(nc, 1))
        assert receiver.on("/digest") == []

        async with running(nc, "notify", nats_url, tmp_path, **settings):
            await asyncio.sleep(1.0)  # what it loaded is folded, anything owed is sent
            assert len(receiver.on("/board")) == 1 and receiver.on("/digest") == []
            await publish(nc, "February board pack")
            await until(lambda: len(receiver.on("/board")) == 2)
            await until(lambda: len(receiver.on("/digest")) == 1)
            await wait_async(lambda: delivered(nc, 3))
        first = json.dumps(json.loads(receiver.on("/digest")[0][1]))
        assert "AL-1 (critical, P-1)" in first and "since" not in first
        assert "February" not in first


async def delivered(nc: Client, count: int) -> bool:
    return len((await outcomes_all(nc))["report_deliveries"]) >= count
