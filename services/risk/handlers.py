"""The risk monitor's queries: open alerts (with their current values), the risk register,
project health, a rule's backtest. (The alerts it decides are appended by flusher.py.)"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import structlog
from pydantic import ValidationError

from contracts import risks as r
from contracts.base import FrozenModel
from contracts.queries import QueryError
from contracts.registry import parse_payload
from domain.risk import DEFAULT_ZONES, alerts, contingency
from domain.risk.monitor import AlertMonitor
from services.risk.projection import INPUT_TYPES, RiskProjection, open_alerts
from shared.eventlog import EventLog
from shared.service import answer, invalid_query

log = structlog.get_logger(__name__)


def alerts_query(projection: RiskProjection) -> bytes:
    return json.dumps({"open": open_alerts(projection)}).encode()


def register_query(projection: RiskProjection) -> bytes:
    risks = sorted(projection.monitor.risks.values(), key=lambda x: x.risk_id)
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
    monitor = projection.monitor
    overall, closed = monitor.portfolio_health()

    def one(project_id: str) -> dict[str, Any] | None:
        health = monitor.health(project_id)
        if health is None:
            return None
        return {
            "status": str(health.status),
            "explain": health.explain(),
            "earned_value": health.earned_value.figures() if health.earned_value else None,
        }

    closed_ids = {h.subject_id for h in closed}
    found = {
        pid: body
        for pid in sorted(monitor.baselines)
        if pid not in closed_ids and (body := one(pid)) is not None
    }
    programmes = {
        child.subject_id: {"status": str(child.status), "explain": child.explain()}
        for child in overall.children
        if child.level == "programme"
    }
    body = {
        "portfolio": {"status": str(overall.status), "explain": overall.explain()},
        "programmes": programmes,
        "projects": found,
        #: Completed and cancelled projects: reported, never rolled up.
        "closed_projects": {
            h.subject_id: (one(h.subject_id) or {})
            | {"project_status": str(monitor.projects[h.subject_id].status)}
            for h in closed
        },
    }
    return json.dumps(body).encode()


class BacktestQuery(FrozenModel):
    """A rule to try against the whole history: how often would it have fired, and when."""

    metric: r.Metric
    comparison: r.Comparison
    threshold: float
    clear_at: float


async def backtest_query(event_log: EventLog, body: bytes) -> bytes:
    """The candidate rule run over the whole history by the same monitor as the live one
    (every other rule left out): when it would have raised and cleared, per subject."""
    try:
        rule = BacktestQuery.model_validate_json(body or b"{}")
    except ValidationError as error:
        return answer(invalid_query("backtest", error))
    if not alerts.clears(rule, rule.clear_at) or alerts.holds(rule, rule.clear_at):
        return answer(QueryError(error="clear_at must be on the other side of the threshold"))
    monitor = AlertMonitor()
    candidate = replace(
        alerts.default_rules()[0],
        rule_id="backtest",
        metric=rule.metric,
        comparison=rule.comparison,
        threshold=rule.threshold,
        clear_at=rule.clear_at,
        severity=r.Severity.INFO,
    )
    monitor.rules = {"backtest": candidate}
    # When it would have fired by business time (the facts' occurred_at, which is what a
    # portfolio manager asks about) and by recorded time (when the backend learned them).
    opened: dict[str, tuple[str, str]] = {}
    episodes: list[dict[str, Any]] = []
    async for recorded in event_log.read():
        e = recorded.envelope
        if e.event_type not in INPUT_TYPES or e.aggregate_type == r.ALERT_RULE:
            continue
        try:
            event = parse_payload(e.event_type, e.payload, e.schema_version)
            decided = monitor.fold(event, e.event_id, recorded.position)
        except (ValueError, KeyError, AttributeError):
            continue
        at = (e.occurred_at.isoformat(), e.recorded_at.isoformat())
        for found in decided:
            if isinstance(found, r.AlertRaised):
                opened[found.subject_id] = at
            elif isinstance(found, r.AlertCleared):
                episodes.append(_episode(found.subject_id, opened.pop(found.subject_id), at))
    episodes += [_episode(s, at, None) for s, at in opened.items()]
    episodes.sort(key=lambda x: (x["subject_id"], x["raised_at"], x["recorded_raised_at"]))
    return json.dumps({"fired": len(episodes), "episodes": episodes}).encode()


def _episode(
    subject_id: str, raised: tuple[str, str], cleared: tuple[str, str] | None
) -> dict[str, Any]:
    return {
        "subject_id": subject_id,
        "raised_at": raised[0],
        "cleared_at": None if cleared is None else cleared[0],
        "recorded_raised_at": raised[1],
        "recorded_cleared_at": None if cleared is None else cleared[1],
    }
