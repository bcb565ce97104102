"""The risk monitor's alert flusher on a real log: a flush's appends are pipelined, yet the
log holds them in the order decided, each alert's events chained one after the other at the
positions they expect, its links never read back; an alert whose aggregate already holds
events (an earlier run's) is appended after them, as `append_decision` appends; and the
alerts stream carries each in order with its position, as the one-at-a-time flusher did."""

from __future__ import annotations

import json
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts import risks as r
from contracts.subjects import ALERTS_STREAM, Subjects
from domain.risk.alerts import AlertEvent
from services.risk import flusher as flusher_module
from services.risk.flusher import AlertFlusher
from services.risk.projection import RiskProjection, identity
from shared.chain import verify_chain
from shared.decisions import append_decision
from shared.eventlog import EventLog

SUBJECTS = Subjects()


def raised(alert_id: str, value: float = 0.5) -> r.AlertRaised:
    return r.AlertRaised(
        alert_id=alert_id,
        rule_id="cpi-low",
        metric=r.Metric.CPI,
        comparison=r.Comparison.LT,
        severity=r.Severity.WARNING,
        scope=r.Scope.PORTFOLIO,
        subject_id=alert_id,
        project_id=alert_id,
        value=value,
        threshold=0.9,
        clear_at=0.95,
        audit_link="",
    )


def revised(alert_id: str, revision: int) -> r.AlertRevised:
    return r.AlertRevised(
        alert_id=alert_id,
        rule_id="cpi-low",
        rule_revision=revision,
        metric=r.Metric.CPI,
        comparison=r.Comparison.LT,
        severity=r.Severity.CRITICAL,
        subject_id=alert_id,
        value=0.4,
        threshold=0.8,
        clear_at=0.95,
    )


def cleared(alert_id: str) -> r.AlertCleared:
    return r.AlertCleared(
        alert_id=alert_id,
        rule_id="cpi-low",
        rule_revision=1,
        metric=r.Metric.CPI,
        severity=r.Severity.WARNING,
        subject_id=alert_id,
        value=0.99,
        clear_at=0.95,
        reason="value passed the clear level",
    )


async def logged(event_log: EventLog) -> list[tuple[int, str, str, str]]:
    return [
        (e.position, e.envelope.aggregate_id, e.envelope.event_type, e.envelope.event_id)
        async for e in event_log.read()
    ]


async def published(nc: Client) -> list[dict[str, Any]]:
    sub = await nc.jetstream().pull_subscribe(
        SUBJECTS.alerts_all,
        stream=ALERTS_STREAM,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    msgs = await sub.fetch(100, timeout=2)
    return [json.loads(m.data) | {"header": m.headers} for m in msgs]


@pytest.mark.parametrize(
    ("own_acks", "window"), [(True, flusher_module.WINDOW), (True, 2), (False, 2)]
)
async def test_a_flush_appends_in_the_order_decided_chained_without_reading_back(
    nc: Client, own_acks: bool, window: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flusher_module, "WINDOW", window)
    event_log = EventLog(nc.jetstream(), SUBJECTS, nc=nc if own_acks else None)
    await event_log.ensure_streams()
    projection = RiskProjection()
    flusher = AlertFlusher(event_log, nc.jetstream(), SUBJECTS, projection)
    if own_acks:

        async def no_read_back(position: int) -> str:
            raise AssertionError(f"link of {position} read back")

        monkeypatch.setattr(event_log, "link_at", no_read_back)
    decided: list[AlertEvent] = [
        raised("A"),
        raised("B"),
        cleared("A"),
        raised("C"),
        revised("B", 2),
    ]
    queued = [
        projection._queue(event, f"fact-{i}", 10 + i, None) for i, event in enumerate(decided)
    ]
    assert await flusher.flush() == 5
    assert projection.pending == {}
    found = await logged(event_log)
    assert [(a, t, i) for _, a, t, i in found] == [
        (x.event.alert_id, type(x.event).__name__, x.event_id) for x in queued
    ]
    assert [x.position for x in queued] == [1, 2, 3, 4, 5]
    # Later events expect where the flusher put the last ones, without asking the log.
    second: list[AlertEvent] = [revised("C", 2), cleared("B"), cleared("C"), raised("D")]
    queued = [projection._queue(event, f"next-{i}", 20 + i, None) for i, event in enumerate(second)]
    assert await flusher.flush() == 4
    assert [x.position for x in queued] == [6, 7, 8, 9]
    assert flusher.last_appended == {"D": 9}
    monkeypatch.undo()
    assert (await verify_chain(event_log)).broken is None
    alerts = await published(nc)
    assert [(a["event_id"], a["position"]) for a in alerts] == [
        (e, p) for p, _, _, e in await logged(event_log)
    ]
    assert all(a["header"]["Portfolio-Position"] == str(a["position"]) for a in alerts)


async def test_an_alert_with_events_in_the_log_goes_after_them(nc: Client) -> None:
    """A restarted monitor: the raise of A and B are in the log already (an earlier run
    appended them and stopped before reading them back); B's raise is decided again."""
    event_log = EventLog(nc.jetstream(), SUBJECTS, nc=nc)
    await event_log.ensure_streams()
    earlier = [raised("A"), raised("B")]
    for event in earlier:
        await append_decision(
            event_log,
            (r.ALERT, event.alert_id),
            event,
            identity(event, "x"),
            None,
            actor="risk",
            source="risk",
        )
    projection = RiskProjection()
    flusher = AlertFlusher(event_log, nc.jetstream(), SUBJECTS, projection)
    queued = [
        projection._queue(raised("B"), "x", 3, None),
        projection._queue(revised("A", 2), "y", 4, None),
        projection._queue(raised("E"), "z", 5, None),
        projection._queue(cleared("A"), "w", 6, None),
        projection._queue(cleared("B"), "v", 7, None),
    ]
    assert await flusher.flush() == 5
    # B's raise is stored once (the same event id within the duplicate window).
    assert [x.position for x in queued] == [2, 3, 4, 5, 6]
    assert [(p, a, t) for p, a, t, _ in await logged(event_log)] == [
        (1, "A", "AlertRaised"),
        (2, "B", "AlertRaised"),
        (3, "A", "AlertRevised"),
        (4, "E", "AlertRaised"),
        (5, "A", "AlertCleared"),
        (6, "B", "AlertCleared"),
    ]
    assert (await verify_chain(event_log)).broken is None
