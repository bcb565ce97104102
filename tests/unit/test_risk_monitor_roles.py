"""The role the monitor keeps is the ledger's `evolve_capacity` fold of the same facts, field
by field, and its demand is what was assigned last to each cell (a dict of the facts, the
oracle); a closed project clears exactly its own alerts, in the order of their keys."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal

from contracts import ledger as lg
from contracts import risks as r
from domain.ledger.capacity import CapacityState, evolve_capacity
from domain.risk.alerts import Reading, default_rules
from domain.risk.decision import Decision
from domain.risk.monitor import AlertMonitor

D = Decimal


def _facts(seed: int) -> list[lg.CapacitySet | lg.DemandAssigned]:
    rng = random.Random(seed)
    periods = [f"2027-{m:02d}" for m in range(1, 7)]
    projects = [f"P{i}" for i in range(8)]
    current: dict[tuple[str, str], Decimal] = {}
    found: list[lg.CapacitySet | lg.DemandAssigned] = [
        lg.CapacitySet(role="dev", period=periods[0], amount=D(10), unit="fte", time_off=D(0))
    ]
    for _ in range(300):
        period = rng.choice(periods)
        if rng.random() < 0.1:
            found.append(
                lg.CapacitySet(
                    role="dev",
                    period=period,
                    amount=D(rng.randint(0, 12)),
                    unit="fte",
                    time_off=D(rng.randint(0, 2)),
                )
            )
            continue
        cell = (rng.choice(projects), period)
        amount = D(rng.choice(["0", "0", "1", "2", "3", "0.5"]))
        found.append(
            lg.DemandAssigned(
                role="dev",
                project_id=cell[0],
                period=period,
                amount=amount,
                previous_amount=current.get(cell, D(0)),
                unit="fte",
            )
        )
        current[cell] = amount
    return found


def _fields(state: CapacityState) -> tuple[object, ...]:
    return (
        state.role,
        state.unit,
        state.version,
        dict(state.capacity),
        dict(state.demand),
        dict(state.demand_by_period),
        state.periods(),
        state.over_allocated,
    )


def test_the_monitor_keeps_the_role_evolve_capacity_folds() -> None:
    for seed in range(5):
        monitor = AlertMonitor()
        expected: CapacityState | None = None
        assigned: dict[tuple[str, str], Decimal] = {}
        for index, fact in enumerate(_facts(seed)):
            monitor.fold(fact, f"e{index}", index + 1)
            expected = evolve_capacity(expected, fact)
            assert expected is not None
            assert _fields(monitor.roles["dev"]) == _fields(expected)
            if isinstance(fact, lg.DemandAssigned):
                assigned[(fact.project_id, fact.period)] = fact.amount
            assert dict(expected.demand) == {cell: a for cell, a in assigned.items() if a}
            for period in expected.periods():
                in_period = (a for (_, p), a in assigned.items() if p == period)
                assert expected.demand_in(period) == sum(in_period, D(0))


def test_a_closed_project_clears_its_own_alerts_in_key_order() -> None:
    monitor = AlertMonitor()
    keys = [
        ("rule-b", "P1", "P1"),
        ("rule-a", "P2", "P2"),
        ("rule-c", "R-9", "P1"),
        ("rule-a", "P1", "P1"),
        ("rule-a", "dev/2027-01", None),
    ]
    for rule_id, subject_id, project_id in keys:
        rule = replace(default_rules()[0], rule_id=rule_id)
        reading = Reading(rule.metric, subject_id, 0.5, project_id=project_id)
        Decision(monitor, ("opened",), 1, None).raise_(rule, reading, 0.5)
    assert len(monitor.open) == 5
    # One of P1's alerts cleared before the project closes.
    Decision(monitor, ("moved",), 2, None).clear(monitor.open[("rule-b", "P1")], 0.99, "x", None)
    decision = Decision(monitor, ("closed",), 42, None)
    decision.project_closed("P1")
    assert [(e.rule_id, e.subject_id) for e in decision.events] == [
        ("rule-a", "P1"),
        ("rule-c", "R-9"),
    ]
    assert all(
        isinstance(e, r.AlertCleared) and e.reason == r.PROJECT_CLOSED for e in decision.events
    )
    assert sorted(monitor.open) == [("rule-a", "P2"), ("rule-a", "dev/2027-01")]
