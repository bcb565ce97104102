"""The risk monitor's decisions and queries. After each batch: the alert rules evaluated
on what changed, alerts appended to the log and published on `portfolio.alerts.*`; on
request: open alerts, the risk register, project health, and a rule's backtest."""

from __future__ import annotations

import json
from typing import Any

import structlog
from nats.js import JetStreamContext

from contracts import risks as r
from contracts.subjects import Subjects
from services.risk import alerts, domain
from services.risk.projection import RiskProjection, open_alerts
from shared.decisions import append_decision
from shared.eventlog import EventLog

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
    reserve = domain.contingency(risks)
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
                "zone": str(domain.DEFAULT_ZONES.zone(x.current_score)),
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
    return json.dumps({"projects": found}).encode()
