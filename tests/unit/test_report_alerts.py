"""The report evolves its alert state one (rule, subject) at a time, in place: the same
open alerts, in the same order, and the same episodes as `evolve_alerts` on the whole."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from contracts import risks as r
from contracts.base import EventEnvelope, FrozenModel, RecordedEvent
from contracts.registry import CURRENT_VERSION
from domain.risk import alerts as risk_alerts
from services.reporting.report import fold

T0 = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


def raised(alert_id: str, rule_id: str, subject_id: str) -> r.AlertRaised:
    return r.AlertRaised(
        alert_id=alert_id,
        rule_id=rule_id,
        metric=r.Metric.CPI,
        comparison=r.Comparison.LT,
        severity=r.Severity.WARNING,
        scope=r.Scope.PORTFOLIO,
        subject_id=subject_id,
        project_id=subject_id,
        value=0.5,
        threshold=0.9,
        clear_at=0.95,
        audit_link=f"portfolio audit --project {subject_id}",
    )


def revised(alert_id: str, rule_id: str, subject_id: str) -> r.AlertRevised:
    return r.AlertRevised(
        alert_id=alert_id,
        rule_id=rule_id,
        rule_revision=2,
        metric=r.Metric.CPI,
        comparison=r.Comparison.LT,
        severity=r.Severity.CRITICAL,
        subject_id=subject_id,
        value=0.4,
        threshold=0.8,
        clear_at=0.85,
    )


def cleared(alert_id: str, rule_id: str, subject_id: str) -> r.AlertCleared:
    return r.AlertCleared(
        alert_id=alert_id,
        rule_id=rule_id,
        metric=r.Metric.CPI,
        severity=r.Severity.WARNING,
        subject_id=subject_id,
        value=1.0,
        clear_at=0.95,
    )


def recorded(position: int, event: FrozenModel) -> RecordedEvent:
    at = T0 + timedelta(minutes=position)
    envelope = EventEnvelope(
        event_id=f"e-{position}",
        event_type=type(event).__name__,
        schema_version=CURRENT_VERSION[type(event).__name__],
        aggregate_type="alert",
        aggregate_id="portfolio",
        actor="risk",
        source="tests",
        occurred_at=at,
        recorded_at=at,
        correlation_id=f"c-{position}",
        causation_id=f"c-{position}",
        payload=event.model_dump(mode="json"),
    )
    return RecordedEvent(position=position, envelope=envelope)


def test_alerts_folded_in_place_equal_the_whole_state_evolved() -> None:
    pick = random.Random(5)
    events: list[FrozenModel] = []
    ids: dict[tuple[str, str], str] = {}
    for n in range(600):
        key = (pick.choice(("cpi", "spi", "burn")), f"P-{pick.randrange(25)}")
        kind = pick.random()
        if kind < 0.45:
            ids[key] = f"alert-{n}"
            events.append(raised(ids[key], *key))
        elif kind < 0.65:  # its own alert, another one's, or one never raised
            alert_id = ids.get(key, "alert-none") if pick.random() < 0.8 else f"alert-{n}"
            events.append(revised(alert_id, *key))
        else:
            events.append(cleared(ids.get(key, "alert-none"), *key))
    report = fold(recorded(n, e) for n, e in enumerate(events, start=1))
    assert report.skipped == 0, report.skipped_reasons
    whole = risk_alerts.AlertState()
    for event in events:
        whole = risk_alerts.evolve_alerts(whole, event)
    assert list(report.alerts.open.items()) == list(whole.open.items())
    assert list(report.alerts.episodes.items()) == list(whole.episodes.items())
    assert len(whole.open) > 5 and max(whole.episodes.values()) > 2
