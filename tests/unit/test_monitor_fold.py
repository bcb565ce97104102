"""The alert monitor's fold on the invoices path: a reading is evaluated from its value
first, its figures made only when shown; inputs earned value refuses are refused as before."""

from __future__ import annotations

from decimal import Decimal

import pytest

from contracts import ledger as lg
from contracts import registry
from contracts import risks as r
from domain.risk.alerts import LazyFigures, health_figures
from domain.risk.monitor import AlertMonitor
from tests.unit.test_alert_batching import facts

D = Decimal


def folded() -> AlertMonitor:
    """The batching story's facts up to its first invoice (P2's 310 on POOL)."""
    monitor = AlertMonitor()
    for envelope in facts():
        event = registry.parse_payload(
            envelope.event_type, envelope.payload, envelope.schema_version
        )
        monitor.fold(event, envelope.event_id)
        if isinstance(event, lg.ActualCostRecorded):
            break
    return monitor


def invoice(project_id: str, amount: str) -> lg.ActualCostRecorded:
    return lg.ActualCostRecorded(
        pool_id="POOL",
        project_id=project_id,
        amount=D(amount),
        currency="EUR",
        external_ref=f"INV-{project_id}-{amount}",
        period="2027-01",
        source="finance",
    )


def test_an_actual_cost_below_zero_is_refused_as_earned_value_refuses_it() -> None:
    monitor = folded()
    monitor.fold(invoice("P1", "900"), "evt-1")  # its CPI alert open: a move would stay open
    with pytest.raises(ValueError, match="AC must be a finite amount ≥ 0"):
        monitor.fold(invoice("P1", "-1000"), "evt-credit")


def test_an_open_alert_takes_the_figures_of_each_invoice_made_when_shown() -> None:
    monitor = folded()
    monitor.fold(invoice("P1", "900"), "evt-1")  # CPI far below 0.9: raised
    [alert] = [
        a
        for a in monitor.open_alerts()
        if (a.raised.rule_id, a.raised.subject_id) == ("default-cpi", "P1")
    ]
    assert alert.raised.figures["ac"] == "900"
    monitor.fold(invoice("P1", "100"), "evt-2")
    assert isinstance(alert.figures, LazyFigures)
    health = monitor.health("P1")
    assert health is not None
    assert dict(alert.figures) == health_figures(health)
    assert alert.figures["ac"] == "1000"
    assert alert.view()["current_figures"]["ac"] == "1000"


def test_lazy_figures_are_made_once_and_equal_their_mapping() -> None:
    made: list[int] = []

    def make(value: int) -> dict[str, r.Figure]:
        made.append(value)
        return {"value": value}

    figures = LazyFigures(make, 7)
    assert made == []
    assert figures == {"value": 7}
    assert dict(figures.items()) == {"value": 7}
    assert dict(figures) == {"value": 7} and len(figures) == 1
    assert made == [7]
