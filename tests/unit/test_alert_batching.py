"""Derived events are a function of the log: one command sequence, read by the ledger and
the risk monitor in batches of 1, 7 and 500 (their derived events appended to the same log
after each batch, as the services do), gives the same threshold events, the same alert
events and the same open alerts. And old alert events (schema version 1, without the new
fields) still fold: upcast on read, never rewritten."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from contracts import ledger as lg
from contracts import registry
from contracts import risks as r
from contracts.base import Command, EventEnvelope, RecordedEvent
from domain.deciders import decide, evolve
from domain.kernel import Rejected
from services.ledger.projection import LedgerProjection
from services.risk.projection import RiskProjection
from shared.commands import envelope_for
from tests.unit.test_alert_model import setup_commands

D = Decimal
NOW = datetime(2027, 1, 15, tzinfo=UTC)


def story() -> list[Command]:
    """The issue's case: a budget rises past 80 % and falls back in two steps (78.7 %, then
    56.7 %); a role over-allocated and relieved; a project cancelled with a low CPI."""
    found = setup_commands()
    found += [
        lg.RecordCommitment(
            pool_id="POOL", project_id="P1", amount=D(500), external_ref="PO-1", period="2027-01"
        ),
        lg.RecordActualCost(
            pool_id="POOL",
            project_id="P2",
            amount=D(310),
            external_ref="INV-1",
            period="2027-01",
            source="finance",
        ),
        # 81 % -> 78.7 % (the PO partly invoiced, less open) -> 56.7 %.
        lg.AdjustBudgetPool(pool_id="POOL", amount=D("1029.22"), rationale="top-up"),
        lg.AdjustBudgetPool(pool_id="POOL", amount=D("1428.57"), rationale="top-up again"),
        lg.AssignDemand(role="dev", project_id="P1", period="2027-01", amount=D(8)),
        lg.AssignDemand(role="dev", project_id="P2", period="2027-01", amount=D(8)),
        lg.SetCapacity(role="dev", period="2027-01", amount=D(20), unit="fte"),
        lg.AssignDemand(role="dev", project_id="P3", period="2027-01", amount=D(8)),
        r.ReportProgress(project_id="P3", period="2027-01", percent_complete=D(5)),
        lg.RecordActualCost(
            pool_id="POOL",
            project_id="P3",
            amount=D(200),
            external_ref="INV-2",
            period="2027-01",
            source="finance",
        ),
    ]
    from contracts import projects as p

    found.append(p.CancelProject(project_id="P3", reason="stopped"))
    return found


@functools.cache
def _facts() -> tuple[EventEnvelope, ...]:
    """Built once: the same command ids (hence event ids) in every run."""
    states: dict[tuple[str, str], Any] = {}
    found: list[EventEnvelope] = []
    for command in story():
        key = command.aggregate_key()
        refs = {k: states[k] for k in states if k[0] == "project"}
        try:
            events = decide(command, states.get(key), NOW, refs)
        except Rejected as error:
            raise AssertionError(f"{command}: {error.message}") from error
        for index, event in enumerate(events):
            states[key] = evolve(states.get(key), event)
            found.append(envelope_for(command, event, key, index, NOW))
    return tuple(found)


def facts() -> list[EventEnvelope]:
    return list(_facts())


def run(batch: int) -> tuple[list[Any], list[Any], list[str]]:
    """The facts appended in order; the ledger and the monitor each read the log in batches
    of `batch`, appending what they decided after each batch."""
    log: list[RecordedEvent] = []
    pending_facts = facts()
    ledger, risk = LedgerProjection(), RiskProjection()
    read = {"ledger": 0, "risk": 0}

    def append(envelope: EventEnvelope) -> None:
        log.append(RecordedEvent(position=len(log) + 1, envelope=envelope))

    def derived(event: Any, aggregate: tuple[str, str], event_id: str) -> EventEnvelope:
        name = type(event).__name__
        return EventEnvelope(
            event_id=event_id,
            event_type=name,
            schema_version=registry.CURRENT_VERSION[name],
            aggregate_type=aggregate[0],
            aggregate_id=aggregate[1],
            actor="svc",
            source="svc",
            occurred_at=NOW,
            recorded_at=NOW,
            correlation_id="c",
            causation_id="c",
            payload=event.model_dump(mode="json"),
        )

    while pending_facts or read["ledger"] < len(log) or read["risk"] < len(log):
        # Commands keep arriving while the services read: a few facts per round.
        for _ in range(3):
            if pending_facts:
                append(pending_facts.pop(0))
        for name in ("ledger", "risk"):
            chunk = log[read[name] : read[name] + batch]
            read[name] += len(chunk)
            for recorded in chunk:
                if name == "ledger" and recorded.envelope.aggregate_type in (lg.POOL, lg.CAPACITY):
                    ledger.fold_recorded(recorded)
                if name == "risk":
                    risk.fold_recorded(recorded)
            if name == "ledger":
                for item in list(ledger.pending.values()):
                    append(derived(item.event, item.aggregate, item.event_id))
                    ledger.pending.pop(item.event_id)
            else:
                for key, alert in list(risk.pending.items()):
                    append(derived(alert.event, (r.ALERT, alert.event.alert_id), key))
                    risk.pending.pop(key)
    thresholds = [
        (e.envelope.aggregate_id, e.envelope.event_type, e.envelope.payload)
        for e in log
        if e.envelope.event_type in {t.__name__ for t in lg.THRESHOLD_EVENTS}
    ]
    alert_events = [
        (
            e.envelope.event_type,
            {k: v for k, v in e.envelope.payload.items() if k != "cause_position"},
        )
        for e in log
        if e.envelope.aggregate_type == r.ALERT
    ]
    open_now = [f"{a.raised.rule_id}/{a.raised.subject_id}" for a in risk.monitor.open_alerts()]
    return sorted(thresholds, key=str), sorted(alert_events, key=str), open_now


def test_the_same_facts_give_the_same_derived_events_at_any_batch_size() -> None:
    one = run(1)
    assert one == run(7) == run(500)
    thresholds, alert_events, open_now = one
    crossings = [(t, p["threshold_percent"]) for _, t, p in thresholds if "Pool" in t]
    # Up past 80 % and down again in two steps: crossed once, cleared once.
    assert crossings == [("PoolThresholdCleared", 80), ("PoolThresholdCrossed", 80)]
    budget = [
        (t, p.get("reason", "")) for t, p in alert_events if p["rule_id"] == "default-budget-80"
    ]
    assert sorted(budget) == [("AlertCleared", "value passed the clear level"), ("AlertRaised", "")]
    closed = [p for t, p in alert_events if t == "AlertCleared" and p["reason"] == "project closed"]
    assert closed and {p["project_id"] for p in closed} == {"P3"}
    assert not [x for x in open_now if x.endswith("/P3")]
    over = [p for t, p in alert_events if t == "AlertRaised" and p["metric"] == "over_allocation"]
    # 160 % raised, relieved to 80 % (cleared), then 120 %: a second episode.
    assert [p["subject_id"] for p in over] == ["dev/2027-01", "dev/2027-01"]
    assert "default-over-allocation/dev/2027-01" in open_now


def test_old_alert_events_still_fold_upcast_never_rewritten() -> None:
    """Payloads exactly as version 1 wrote them (no subject_kind, pool, cause position)."""
    raised_v1 = {
        "alert_id": "alert-1",
        "rule_id": "default-budget-80",
        "rule_revision": 1,
        "metric": "budget_consumption",
        "comparison": "ge",
        "severity": "warning",
        "scope": "portfolio",
        "scope_id": None,
        "subject_id": "POOL",
        "project_id": None,
        "value": 80.97,
        "threshold": 80.0,
        "clear_at": 75.0,
        "figures": {"threshold_percent": "80"},
        "caused_by": ["e1"],
        "audit_link": "portfolio audit --aggregate-type pool --aggregate-id POOL",
        "message": "budget_consumption 80.97 ≥ 80 for POOL",
    }
    cleared_v1 = {
        "alert_id": "alert-1",
        "rule_id": "default-budget-80",
        "metric": "budget_consumption",
        "severity": "warning",
        "subject_id": "POOL",
        "project_id": None,
        "value": 70.0,
        "clear_at": 75.0,
        "reason": "value passed the clear level",
        "caused_by": ["e2"],
        "audit_link": "",
        "message": "",
    }
    raised = registry.parse_payload("AlertRaised", dict(raised_v1), 1)
    assert isinstance(raised, r.AlertRaised)
    assert raised.subject_kind == "pool" and raised.pool_id == "POOL"
    assert raised.cause_position is None
    cleared = registry.parse_payload("AlertCleared", dict(cleared_v1), 1)
    assert isinstance(cleared, r.AlertCleared) and cleared.rule_revision is None
    assert registry.CURRENT_VERSION["AlertRaised"] == 2

    # A monitor reading a log with them (legacy) folds, re-announces nothing from before
    # them, and clears what they left open that does not hold on the figures.
    risk = RiskProjection()
    for index, envelope in enumerate(facts()[:5], start=1):
        risk.fold_recorded(RecordedEvent(position=index, envelope=envelope))
    legacy = EventEnvelope(
        event_id="legacy-1",
        event_type="AlertRaised",
        schema_version=1,
        aggregate_type=r.ALERT,
        aggregate_id="alert-1",
        actor="risk",
        source="risk",
        occurred_at=NOW,
        recorded_at=NOW,
        correlation_id="c",
        causation_id="c",
        payload=raised_v1,
    )
    risk.fold_recorded(RecordedEvent(position=6, envelope=legacy))
    risk._reconcile(6, [raised])
    [fix] = risk.pending.values()
    assert isinstance(fix.event, r.AlertCleared) and fix.event.alert_id == "alert-1"
    assert "re-evaluated" in fix.event.reason
    assert raised_v1["value"] == 80.97  # the stored payload is untouched
