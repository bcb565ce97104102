"""The risk monitor's decisions and queries. After each batch: the alerts decided while it
was applied, appended to the log and published on `portfolio.alerts.*`; on request: open
alerts (with their current values), the risk register, project health, a rule's backtest."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
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
from domain.risk.monitor import AlertMonitor
from services.risk.projection import INPUT_TYPES, Pending, RiskProjection, open_alerts
from shared.decisions import append_decision
from shared.eventlog import EventLog
from shared.service import answer, invalid_query

log = structlog.get_logger(__name__)


class AlertFlusher:
    """Appends the alert events the monitor decided, in order, then publishes each on
    `<prefix>.alerts.<severity>.<metric>` (stream PORTFOLIO_ALERTS, for subscribers that
    were offline). One flush at a time: after every batch, and once at start (what a
    crash left decided but not appended)."""

    def __init__(
        self,
        event_log: EventLog,
        js: JetStreamContext,
        subjects: Subjects,
        projection: RiskProjection,
    ) -> None:
        self.event_log = event_log
        self.js = js
        self.subjects = subjects
        self.projection = projection
        self.lock = asyncio.Lock()
        #: Where this flusher appended the last event of each open alert's aggregate: the
        #: position its next event (a revision, the clear) expects, without asking the log.
        self.last_appended: dict[str, int] = {}

    async def flush(self) -> int:
        async with self.lock:
            done = 0
            for item in list(self.projection.pending.values()):
                await self._one(item)
                self.projection.pending.pop(item.event_id, None)
                done += 1
            return done

    async def _one(self, item: Pending) -> None:
        event = item.event
        if not item.appended:
            appended = await append_decision(
                self.event_log,
                (r.ALERT, event.alert_id),
                event,
                item.identity,
                item.cause,
                actor="risk",
                source="risk",
                expected_position=self.last_appended.get(event.alert_id),
            )
            item.appended, item.position = True, appended.position
            if isinstance(event, r.AlertCleared):
                self.last_appended.pop(event.alert_id, None)
            else:
                self.last_appended[event.alert_id] = appended.position
        body = {
            "event": type(event).__name__,
            "event_id": item.event_id,
            "position": item.position,
            **event.model_dump(mode="json"),
        }
        await self.js.publish(
            self.subjects.alert(str(event.severity), str(event.metric)),
            json.dumps(body).encode(),
            headers={"Nats-Msg-Id": item.event_id, "Portfolio-Position": str(item.position)},
        )
        log.info("alert." + type(event).__name__, alert=event.alert_id, subject=event.subject_id)

    async def start(self) -> None:
        await self.flush()

    async def stop(self) -> None:
        return None


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
