"""The risk monitor's decisions and queries. After each batch: the alert rules evaluated
on what changed, alerts appended to the log and published on `portfolio.alerts.*`; on
request: open alerts, the risk register, project health, and a rule's backtest."""

from __future__ import annotations

import json
from typing import Any

import structlog
from nats.js import JetStreamContext
from pydantic import ValidationError

from contracts import risks as r
from contracts.base import FrozenModel
from contracts.queries import QueryError
from contracts.registry import parse_payload
from contracts.subjects import Subjects
from domain.risk import DEFAULT_ZONES, alerts, contingency
from services.risk.projection import LEDGER_FACTS, RiskProjection, open_alerts
from shared.decisions import append_decision
from shared.eventlog import EventLog
from shared.service import answer, invalid_query

log = structlog.get_logger(__name__)


async def evaluate_alerts(
    event_log: EventLog, js: JetStreamContext, subjects: Subjects, projection: RiskProjection
) -> int:
    """Raise once when a rule starts to hold, clear once when it stops: the state the rules
    are evaluated against moves with every alert decided, before it is even in the log."""
    readings = projection.take_readings()
    if not readings:
        return 0
    decided, _ = alerts.evaluate(projection.rules_in_force(), projection.alerts, readings)
    for event in decided:
        verb = "raised" if isinstance(event, r.AlertRaised) else "cleared"
        appended = await append_decision(
            event_log,
            (r.ALERT, event.alert_id),
            event,
            f"{event.alert_id}/{verb}",
            None,
            actor="risk",
            source="risk",
        )
        projection.own_alert_events.add(appended.event_id)
        projection.remember_alert(event)
        await js.publish(
            subjects.alert(str(event.severity), str(event.metric)),
            json.dumps({"event": type(event).__name__, **event.model_dump(mode="json")}).encode(),
            headers={
                "Nats-Msg-Id": appended.event_id,
                "Portfolio-Position": str(appended.position),
            },
        )
        log.info(
            "alert." + verb, alert=event.alert_id, rule=event.rule_id, subject=event.subject_id
        )
    return len(decided)


def alerts_query(projection: RiskProjection) -> bytes:
    return json.dumps({"open": open_alerts(projection)}).encode()


def register_query(projection: RiskProjection) -> bytes:
    risks = sorted(projection.risks.values(), key=lambda x: x.risk_id)
    reserve = contingency(risks)
    body: dict[str, Any] = {
        "risks": [
            {
                "risk_id": x.risk_id,
                "project_id": x.project_id,
                "title": x.title,
                "kind": str(x.kind),
                "owner": x.owner,
                "open": x.is_open,
                "score": x.score,
                "current_score": x.current_score,
                "zone": str(DEFAULT_ZONES.zone(x.current_score)),
                "emv": str(x.emv()),
            }
            for x in risks
        ],
        "contingency": {
            "reserve": str(reserve.reserve),
            "opportunities": str(reserve.opportunities),
            "threats_by_project": {
                (k or "portfolio"): str(v) for k, v in reserve.threats_by_project.items()
            },
        },
    }
    return json.dumps(body).encode()


def health_query(projection: RiskProjection) -> bytes:
    found = {}
    for project_id in sorted(projection.baselines):
        health = projection.health(project_id)
        if health is not None:
            found[project_id] = {
                "status": str(health.status),
                "explain": health.explain(),
                "earned_value": health.earned_value.figures() if health.earned_value else None,
            }
    overall = projection.portfolio_health()
    programmes = {
        child.subject_id: {"status": str(child.status), "explain": child.explain()}
        for child in overall.children
        if child.level == "programme"
    }
    body = {
        "portfolio": {"status": str(overall.status), "explain": overall.explain()},
        "programmes": programmes,
        "projects": found,
    }
    return json.dumps(body).encode()


class BacktestQuery(FrozenModel):
    """A rule to try against the whole history: how often would it have fired, and when."""

    metric: r.Metric
    comparison: r.Comparison
    threshold: float
    clear_at: float


async def backtest_query(event_log: EventLog, body: bytes) -> bytes:
    try:
        rule = BacktestQuery.model_validate_json(body or b"{}")
    except ValidationError as error:
        return answer(invalid_query("backtest", error))
    if not alerts.clears(rule, rule.clear_at) or alerts.holds(rule, rule.clear_at):
        return answer(QueryError(error="clear_at must be on the other side of the threshold"))
    history = RiskProjection()
    series: dict[str, list[tuple[str, float | None]]] = {}
    async for recorded in event_log.read():
        e = recorded.envelope
        if e.aggregate_type not in r.EVENT_AGGREGATE.values() and e.event_type not in LEDGER_FACTS:
            continue
        try:
            history.fold_event(parse_payload(e.event_type, e.payload, e.schema_version), e.event_id)
        except (ValueError, KeyError, AttributeError):
            continue
        at = e.recorded_at.isoformat()
        for reading in history.take_readings():
            if reading.metric == rule.metric:
                value = None if reading.value is None else float(reading.value)
                series.setdefault(reading.subject_id, []).append((at, value))
    episodes = [
        {"subject_id": subject, "raised_at": raised, "cleared_at": cleared}
        for subject, points in sorted(series.items())
        for raised, cleared in alerts.backtest(rule, points)
    ]
    return json.dumps({"fired": len(episodes), "episodes": episodes}).encode()
