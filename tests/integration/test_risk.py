"""The risk monitor through NATS: the register, earned value from baselines, progress and
the ledger's actuals, alerts raised once and cleared once, kept for offline subscribers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts.base import CommandRejected
from contracts.subjects import ALERTS_STREAM
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


async def alert_events(event_log: EventLog) -> list[tuple[str, str]]:
    return [
        (e.envelope.event_type, e.envelope.payload["rule_id"])
        async for e in event_log.read()
        if e.envelope.aggregate_type == "alert"
    ]


async def settle(nc: Client, event_log: EventLog) -> list[tuple[str, str]]:
    """Wait until the risk service is done reacting, then what it appended."""
    await quiet(nc, event_log, "risk")
    return await alert_events(event_log)


async def published(nc: Client) -> list[dict[str, Any]]:
    """What a subscriber that was offline all along receives when it comes."""
    js = nc.jetstream()
    sub = await js.pull_subscribe(
        SUBJECTS.alerts_all,
        stream=ALERTS_STREAM,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        msgs = await sub.fetch(100, timeout=2)
    except TimeoutError:
        return []
    return [json.loads(m.data) | {"subject": m.subject} for m in msgs]


async def test_risk_alerts_raise_once_clear_once_and_wait_for_subscribers(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "risk", nats_url, tmp_path),
    ):
        await accepted(nc, "ProposeProject", proposal("P-1"))
        refused = await send(
            nc,
            "IdentifyRisk",
            {
                "risk_id": "R-1",
                "project_id": "P-1",
                "title": "Vendor insolvency",
                "owner": "cpo",
                "probability": 6,
                "impact": 4,
            },
        )
        assert isinstance(refused, CommandRejected)
        ghost = await send(
            nc,
            "IdentifyRisk",
            {
                "risk_id": "R-9",
                "project_id": "P-404",
                "title": "Ghost",
                "owner": "x",
                "probability": 1,
                "impact": 1,
            },
        )
        assert isinstance(ghost, CommandRejected) and ghost.error.code == "not_found"
        await accepted(
            nc,
            "IdentifyRisk",
            {
                "risk_id": "R-1",
                "project_id": "P-1",
                "title": "Vendor insolvency",
                "owner": "cpo",
                "probability": 4,
                "impact": 4,
                "monetary_impact": "200000",
            },
        )
        assert await settle(nc, event_log) == [("AlertRaised", "default-risk-score")]
        # More facts while it still holds: no storm.
        await accepted(
            nc,
            "AssessRisk",
            {
                "risk_id": "R-1",
                "probability": 5,
                "impact": 4,
                "rationale": "news from the market",
            },
        )
        assert len(await settle(nc, event_log)) == 1
        no_plan = await send(
            nc,
            "ChooseRiskResponse",
            {
                "risk_id": "R-1",
                "strategy": "mitigate",
                "plan": " ",
                "due": "2027-05-01",
            },
        )
        assert isinstance(no_plan, CommandRejected)
        await accepted(
            nc,
            "ChooseRiskResponse",
            {
                "risk_id": "R-1",
                "strategy": "mitigate",
                "plan": "second supplier",
                "due": "2027-05-01",
            },
        )
        await accepted(
            nc,
            "ReassessRisk",
            {
                "risk_id": "R-1",
                "residual_probability": 2,
                "residual_impact": 3,
                "rationale": "second supplier signed",
            },
        )
        assert await settle(nc, event_log) == [
            ("AlertRaised", "default-risk-score"),
            ("AlertCleared", "default-risk-score"),
        ]
        assert json.loads(await query(nc, "risk", "alerts", {}))["open"] == []
        # Backtest: the default rule would have fired once; a stricter one never.
        rule = {"metric": "risk_score", "comparison": "ge", "threshold": 15, "clear_at": 12}
        tried = json.loads(await query(nc, "risk", "backtest", rule))
        assert tried["fired"] == 1 and tried["episodes"][0]["subject_id"] == "R-1"
        (episode,) = tried["episodes"]
        assert episode["cleared_at"] is not None and episode["recorded_cleared_at"] is not None
        # Business time by default (the facts' occurred_at), recorded time beside it.
        assert episode["raised_at"] <= episode["cleared_at"]
        assert episode["recorded_raised_at"] <= episode["recorded_cleared_at"]
        stricter = json.loads(
            await query(nc, "risk", "backtest", rule | {"threshold": 21, "clear_at": 18})
        )
        assert stricter["fired"] == 0
        wrong_side = json.loads(await query(nc, "risk", "backtest", rule | {"clear_at": 16}))
        assert "other side" in wrong_side["error"]
        register = json.loads(await query(nc, "risk", "register", {}))
        assert register["risks"][0]["zone"] == "medium"

    delivered = await published(nc)
    assert [(d["event"], d["subject"]) for d in delivered] == [
        ("AlertRaised", "portfolio.alerts.warning.risk_score"),
        ("AlertCleared", "portfolio.alerts.warning.risk_score"),
    ]
    assert delivered[0]["audit_link"] and delivered[0]["caused_by"]


async def test_earned_value_alerts_from_the_ledgers_actuals(
    nc: Client, nats_url: str, tmp_path: Path, event_log: EventLog
) -> None:
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "risk", nats_url, tmp_path),
    ):
        await accepted(nc, "ProposeProject", proposal("P-1", programme="PRG-CX"))
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
            "SetProjectBaseline",
            {
                "project_id": "P-1",
                "budget_at_completion": "100000",
                "planned_value_by_period": [
                    {"period": "2027-02", "planned_value": "20000"},
                    {"period": "2027-03", "planned_value": "50000"},
                ],
            },
        )
        await accepted(
            nc,
            "ReportProgress",
            {
                "project_id": "P-1",
                "period": "2027-03",
                "percent_complete": 40,
            },
        )
        await accepted(
            nc,
            "RecordActualCost",
            {
                "pool_id": "CAPEX-27",
                "project_id": "P-1",
                "amount": "45000",
                "external_ref": "INV-1",
                "period": "2027-03",
                "source": "finance",
            },
        )
        # The REFERENCE example: CPI 0.889 and SPI 0.80, both under 0.9.
        raised = await settle(nc, event_log)
        assert sorted(raised) == [("AlertRaised", "default-cpi"), ("AlertRaised", "default-spi")]
        answered = json.loads(await query(nc, "risk", "health", {}))
        health = answered["projects"]["P-1"]
        assert health["status"] == "red"
        # Worst wins, and every level names what set it.
        assert answered["programmes"]["PRG-CX"]["status"] == "red"
        assert answered["portfolio"]["status"] == "red"
        assert "programme PRG-CX red" in answered["portfolio"]["explain"]
        assert health["earned_value"]["cpi"].startswith("0.888")

    # A restart folds its facts again: nothing is raised twice.
    async with (
        running(nc, "intake", nats_url, tmp_path),
        running(nc, "risk", nats_url, tmp_path),
    ):
        await accepted(
            nc,
            "ReportProgress",
            {
                "project_id": "P-1",
                "period": "2027-03",
                "percent_complete": 42,
            },
        )
        assert len(await settle(nc, event_log)) == 2
        await accepted(
            nc,
            "ReportProgress",
            {
                "project_id": "P-1",
                "period": "2027-03",
                "percent_complete": 48,
            },
        )
        after = await settle(nc, event_log)
    # EV 48,000: CPI 1.07 and SPI 0.96 pass their clear levels (0.95): cleared once each.
    assert sorted(after) == [
        ("AlertCleared", "default-cpi"),
        ("AlertCleared", "default-spi"),
        ("AlertRaised", "default-cpi"),
        ("AlertRaised", "default-spi"),
    ]
